"""The `portraittalk` command.

    portraittalk demo                      the bundled model on a bundled portrait and speech → portraittalk_demo.mp4
    portraittalk generate --image I --audio A [--prompt P] [--model M] [--out video.mp4]
    portraittalk synth OUT                 SynthTalk clips
    portraittalk preprocess IN OUT         real talking-head videos → the same clip layout
    portraittalk caption DATA --clip-model DIR
                                           captions (glasses, hat, smile, background, MEAD emotion) scored by
                                           your CLIP model, into DATA/captions.json for training to use
    portraittalk train --config C --out O  the two training stages
    portraittalk precompute --config C --data D
                                           latents, audio features, masks and embeddings once, in shards
    portraittalk eval --video V --audio A  ADFD and the other metrics (`portraittalk eval synthtalk` for the
                                           SynthTalk protocol that checks a model really works)
    portraittalk assemble sd15 --checkpoint C --motion M OUT
                                           a full-size model from an SD-1.5 checkpoint and AnimateDiff v2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..models.dtypes import DTYPE_NAMES

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _generate(image: Path, audio: Path, out: Path, *, prompt: str | None, model: str, steps: int | None,
              seed: int, text_guidance: float | None, audio_guidance: float | None, scheduler: str | None,
              karras: bool = False, upscale: int = 1, dtype: str = "fp32") -> Path:
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
                      karras=karras, callback=progress)
    bar.close()
    frames = (result.frames * 255 + 0.5).clip(0, 255).astype("uint8")
    if upscale > 1:  # the demo model draws 64×64 frames: enlarge them for viewing
        frames = frames.repeat(upscale, axis=1).repeat(upscale, axis=2)
    write_video(out, frames, result.fps, result.audio, result.sample_rate)
    print(f"wrote {out} ({result.frames.shape[0]} frames at {result.fps:g} fps, with audio)")
    return out


def _generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="a talking-face video from a portrait and speech")
    p.add_argument("--image", type=Path, required=True, help="reference portrait (face-cropped works best)")
    p.add_argument("--audio", type=Path, required=True, help="speech (wav, mp3, flac, or a video's audio)")
    p.add_argument("--prompt", default=None, help="text edit, e.g. 'a face with glasses, smiling'")
    p.add_argument("--model", default="demo", help="PortraitTalk .safetensors model (default: the bundled demo)")
    p.add_argument("--out", type=Path, default=Path("portraittalk.mp4"))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", choices=["ddim", "euler", "dpmpp_2m"], default=None)
    p.add_argument("--karras", action="store_true",
                   help="Karras sigmas (euler, dpmpp_2m); --scheduler dpmpp_2m --karras --steps 8 is the fast setting")
    p.add_argument("--text-guidance", type=float, default=None)
    p.add_argument("--audio-guidance", type=float, default=None)
    p.add_argument("--upscale", type=int, default=1, help="enlarge frames by this factor (nearest neighbour)")
    p.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="fp32",
                   help="precision of the networks' weights (fp16/bf16 halve their memory; the codec stays fp32)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = {"synth": ("training.synthtalk", "synth_main"), "train": ("training.train", "train_main"),
                   "caption": ("training.caption", "caption_main"),
                   "precompute": ("training.precompute", "precompute_main"),
                   "preprocess": ("training.preprocess", "preprocess_main"), "eval": ("evaluation", "eval_main"),
                   "convert": ("cli.convert", "convert_main"), "bench": ("bench.benchmark", "bench_main"),
                   "assemble": ("cli.assemble", "assemble_main")}
    if argv and argv[0] in passthrough:
        if argv[0] == "eval" and argv[1:2] == ["synthtalk"]:
            from ..evaluation.synthtalk_protocol import main as protocol_main

            return protocol_main(argv[2:])
        from importlib import import_module

        module, function = passthrough[argv[0]]
        return int(getattr(import_module(f".{module}", __package__), function)(argv[1:]) or 0)

    parser = argparse.ArgumentParser(prog="portraittalk", description="PortraitTalk: one-shot, audio-driven, "
                                     "text-customisable talking faces.", epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the bundled model on a bundled portrait and speech")
    demo.add_argument("--out", type=Path, default=Path("portraittalk_demo.mp4"))
    demo.add_argument("--prompt", default=None, help="optional text edit, e.g. 'a face with glasses'")
    _generate_parser(sub)
    for name in passthrough:
        sub.add_parser(name, help=f"see `portraittalk {name} --help`", add_help=False)
    args = parser.parse_args(argv)
    if getattr(args, "karras", False) and args.scheduler not in ("euler", "dpmpp_2m"):
        parser.error("--karras needs --scheduler euler or dpmpp_2m")
    if args.command == "demo":
        _generate(ASSETS / "demo_reference.png", ASSETS / "demo_speech.wav", args.out, prompt=args.prompt,
                  model="demo", steps=None, seed=0, text_guidance=None, audio_guidance=None, scheduler=None, upscale=4)
    else:
        _generate(args.image, args.audio, args.out, prompt=args.prompt, model=args.model, steps=args.steps,
                  seed=args.seed, text_guidance=args.text_guidance, audio_guidance=args.audio_guidance,
                  scheduler=args.scheduler, karras=args.karras, upscale=args.upscale, dtype=args.dtype)
    return 0

