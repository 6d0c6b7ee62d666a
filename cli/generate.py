"""`portraittalk generate`: a talking-face video from a portrait and speech, with the sampler's progress."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models.dtypes import DTYPE_NAMES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portraittalk generate")
    parser.add_argument("--image", type=Path, required=True, help="reference portrait (face-cropped works best)")
    parser.add_argument("--audio", type=Path, required=True, help="speech (wav, mp3, flac, or a video's audio)")
    parser.add_argument("--prompt", default=None, help="text edit, e.g. 'a face with glasses, smiling'")
    parser.add_argument("--model", default="demo", help="PortraitTalk .safetensors model (default: the bundled demo)")
    parser.add_argument("--out", type=Path, default=Path("portraittalk.mp4"))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scheduler", choices=["ddim", "euler", "dpmpp_2m"], default=None)
    parser.add_argument("--karras", action="store_true",
                        help="Karras sigmas (euler, dpmpp_2m); --scheduler dpmpp_2m --karras --steps 8 is the fast "
                             "setting")
    parser.add_argument("--text-guidance", type=float, default=None)
    parser.add_argument("--audio-guidance", type=float, default=None)
    parser.add_argument("--denoise", type=float, default=None,
                        help="share of the schedule to run (0..1]; below 1 starts from the noised reference "
                             "(default: the model's)")
    parser.add_argument("--upscale", type=int, default=1, help="enlarge frames by this factor (nearest neighbour)")
    parser.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="fp32",
                        help="precision of the networks' weights (fp16/bf16 halve their memory; the codec stays fp32)")
    args = parser.parse_args(argv)
    if args.karras and args.scheduler not in ("euler", "dpmpp_2m"):
        parser.error("--karras needs --scheduler euler or dpmpp_2m")
    generate(args.image, args.audio, args.out, prompt=args.prompt, model=args.model, steps=args.steps, seed=args.seed,
             text_guidance=args.text_guidance, audio_guidance=args.audio_guidance, scheduler=args.scheduler,
             karras=args.karras, upscale=args.upscale, dtype=args.dtype, denoise=args.denoise)
    return 0


def generate(image: Path, audio: Path, out: Path, *, prompt: str | None, model: str, steps: int | None,
             seed: int, text_guidance: float | None, audio_guidance: float | None, scheduler: str | None,
             karras: bool = False, upscale: int = 1, dtype: str = "fp32", denoise: float | None = None) -> Path:
    """Sample `model` on one portrait and speech file and write `out` (mp4 with the audio)."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ..media import read_audio, write_video
    from ..models import PortraitTalkPipeline
    from ..models.dtypes import torch_dtype

    pipeline = PortraitTalkPipeline.from_pretrained(model, dtype=torch_dtype(dtype))
    wav, rate = read_audio(audio)
    bar = tqdm(desc="sampling", unit="window")

    def progress(event):
        bar.total = event.total
        bar.n = event.completed
        bar.refresh()

    result = pipeline([Image.open(image)], wav, rate, prompt, num_inference_steps=steps, seed=seed,
                      text_guidance_scale=text_guidance, audio_guidance_scale=audio_guidance, scheduler=scheduler,
                      karras=karras, denoise=denoise, callback=progress)
    bar.close()
    frames = (result.frames * 255 + 0.5).clip(0, 255).astype("uint8")
    if upscale > 1:  # the demo model draws 64×64 frames: enlarge them for viewing
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    write_video(out, frames, result.fps, result.audio, result.sample_rate)
    print(f"wrote {out} ({result.frames.shape[0]} frames at {result.fps:g} fps, with audio)")
    return out
