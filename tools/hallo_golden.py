"""Record what Hallo's own code computes, as golden fixtures for `tests/models/test_hallo_golden.py`.

Hallo (github.com/fudan-generative-vision/hallo, MIT) is run from a checkout the user supplies; none of its code
is in this project. Its five networks are built at reduced widths (SD-1.5's layout with 32 channels per block)
with seeded random weights, and its `FaceAnimatePipeline` runs as `scripts/inference.py` runs it: the networks
never in eval mode, with gradient checkpointing on (the branch that prepends motion frames and skips two blocks'
motion modules), DDIM with zero-SNR v-prediction, cfg 3.5. Two things differ, on purpose: the reference bank is
kept in fp32 (Hallo casts it to fp16), and a stand-in VAE hands over latents (the reference and motion frames are
inputs). Written to OUT: `net.pth` (fp16 values, as Hallo's release), `golden.safetensors` (inputs, projection
tokens, the reference bank, v-predictions of the guided and unguided passes at t = 999, 749, 499, 249 for the
first window and a later one, Hallo's noise and three DDIM steps of its 40-step schedule) and `config.json` (the
PortraitTalk config of the same reduced model).

    python tools/hallo_golden.py HALLO_CHECKOUT tests/data/hallo/golden
    python tools/hallo_golden.py HALLO_CHECKOUT tests/data/hallo/golden --time   # also time one 40-step window

`--time` runs one whole window (16 frames, 40 DDIM steps, cfg 3.5) of Hallo's pipeline on these inputs and prints
its seconds; `tools/time_hallo_window.py` times ours on the same inputs.

Run it in its own venv: torch, diffusers==0.27.2, transformers==4.39.2, "huggingface_hub<0.26", einops,
omegaconf, safetensors, pillow; Hallo imports xformers at module level, so put an empty `xformers` package
(`xformers/__init__.py`, `xformers/ops.py`) on PYTHONPATH.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
from functools import partialmethod
from pathlib import Path

import numpy as np
import torch
from PIL import Image

WIDTHS, CROSS, GROUPS = [32, 32, 32, 32], 32, 8  # Hallo's motion modules fix GroupNorm at 32 groups: ≥ 32 channels
EMBED, LAYERS, FEAT, AUDIO_TOKENS, HIDDEN = 32, 3, 16, 8, 32  # face embedding, wav2vec2 layers × dims, audio proj
FRAMES, MOTION, SIZE, LATENT = 16, 2, 128, 16
CFG = 3.5
SD15_UNET = Path(__file__).resolve().parents[1] / "models" / "configs" / "sd15" / "unet.json"

# The same model as a PortraitTalk "hallo" family config (what the test converts net.pth with).
PORTRAITTALK_OVERRIDES = {
    "video": {"size": SIZE},
    "unet": {"block_out_channels": WIDTHS, "cross_attention_dim": CROSS, "norm_num_groups": GROUPS,
             "sample_size": LATENT},
    "identity": {"embed_dim": EMBED},
    "audio": {"tokens": AUDIO_TOKENS, "hidden": HIDDEN, "wav2vec2": {"num_hidden_layers": LAYERS, "hidden_size": FEAT}},
}


def build(src: Path):
    """Hallo's five networks, as its inference script builds them, at reduced widths."""
    from hallo.models.audio_proj import AudioProjModel
    from hallo.models.face_locator import FaceLocator
    from hallo.models.image_proj import ImageProjModel
    from hallo.models.unet_2d_condition import UNet2DConditionModel
    from hallo.models.unet_3d import UNet3DConditionModel
    from omegaconf import OmegaConf

    unet = {**json.loads(SD15_UNET.read_text()), "block_out_channels": WIDTHS, "cross_attention_dim": CROSS,
            "norm_num_groups": GROUPS, "sample_size": LATENT}
    extra = OmegaConf.to_container(OmegaConf.load(src / "configs/unet/unet.yaml"))["unet_additional_kwargs"]
    extra["audio_attention_dim"] = CROSS
    reference_unet = UNet2DConditionModel.from_config(unet)
    denoising_unet = UNet3DConditionModel.from_config({
        **unet, **extra, "mid_block_type": "UNetMidBlock3DCrossAttn",
        "down_block_types": [t.replace("2D", "3D") for t in unet["down_block_types"]],
        "up_block_types": [t.replace("2D", "3D") for t in unet["up_block_types"]]})
    reference_unet.enable_gradient_checkpointing()  # as scripts/inference.py; nothing is put in eval mode
    denoising_unet.enable_gradient_checkpointing()

    class Net(torch.nn.Module):  # the inference script's container: its attribute order gives net.pth's keys
        def __init__(self):
            super().__init__()
            self.reference_unet, self.denoising_unet = reference_unet, denoising_unet
            self.face_locator = FaceLocator(conditioning_embedding_channels=WIDTHS[0])
            self.imageproj = ImageProjModel(cross_attention_dim=CROSS, clip_embeddings_dim=EMBED,
                                            clip_extra_context_tokens=4)
            self.audioproj = AudioProjModel(seq_len=5, blocks=LAYERS, channels=FEAT, intermediate_dim=HIDDEN,
                                            output_dim=CROSS, context_tokens=AUDIO_TOKENS)

    net = Net()
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():  # wake every zero-initialised layer; norms near 1; the positional encodings kept
        for key, value in net.state_dict().items():
            if key.endswith("pos_encoder.pe"):
                pass
            elif "norm" in key.rsplit(".", 2)[-2] and key.endswith(".weight"):
                value.copy_(1 + 0.1 * torch.randn(value.shape, generator=gen))
            elif value.is_floating_point():
                scale = 0.2 / max(1, value[0].numel()) ** 0.5 if value.ndim > 1 else 0.05
                value.copy_(torch.randn(value.shape, generator=gen) * scale)
            value.copy_(value.half().float())  # fp16 values, as Hallo's release; computed in fp32
    return net


class LatentsVAE(torch.nn.Module):
    """Stands in for the VAE: 'encoding' returns the given reference and motion latents (÷ Hallo's 0.18215)."""

    config = types.SimpleNamespace(block_out_channels=[1, 1, 1, 1], scaling_factor=0.18215)
    dtype, device = torch.float32, torch.device("cpu")

    def __init__(self):
        super().__init__()
        self.latents = None
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def encode(self, pixels):
        return types.SimpleNamespace(latent_dist=types.SimpleNamespace(mean=self.latents / 0.18215))

    def decode(self, latents):
        return types.SimpleNamespace(sample=torch.zeros(latents.shape[0], 3, 8, 8))


def resized(mask: np.ndarray, side: int) -> torch.Tensor:
    """A uint8 mask at a block's resolution, as `RegionMasks.at` gives it: [1, side²] in 0..1."""
    img = Image.fromarray(mask)
    if mask.shape != (side, side):
        img = img.resize((side, side), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img, np.float32) / 255.0).reshape(1, -1)


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    yy, xx = np.mgrid[0:LATENT, 0:LATENT]
    face = np.clip(255 * np.exp(-((xx - 8) ** 2 + (yy - 7) ** 2) / 30), 0, 255).astype(np.uint8)
    lip = np.clip(255 * np.exp(-((xx - 8) ** 2 / 8 + (yy - 11) ** 2 / 3)), 0, 255).astype(np.uint8)
    box = np.zeros((SIZE, SIZE), np.float32)
    box[24:104, 32:96] = 1.0
    return {"inputs.reference": torch.randn(1, 4, LATENT, LATENT, generator=g),
            "inputs.motion_later": torch.randn(MOTION, 4, LATENT, LATENT, generator=g),
            "inputs.face_emb": torch.randn(1, EMBED, generator=g),
            "inputs.audio_features": torch.randn(FRAMES, 5, LAYERS, FEAT, generator=g),
            "inputs.face_box": torch.from_numpy(box),
            "inputs.mask_background": torch.from_numpy((255 - face.astype(np.int16)).clip(0, 255)),
            "inputs.mask_face": torch.from_numpy((face.astype(np.int16) - lip).clip(0, 255)),
            "inputs.mask_lip": torch.from_numpy(lip.astype(np.int16))}


class Stop(Exception):
    pass


def main(src: Path, out: Path, timed: bool = False) -> None:
    sys.path.insert(0, str(src))
    from diffusers import DDIMScheduler
    from hallo.animate.face_animate import FaceAnimatePipeline
    from hallo.models import mutual_self_attention
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = build(src)
    torch.save({k: v.half() for k, v in net.state_dict().items()}, out / "net.pth")
    (out / "config.json").write_text(json.dumps(PORTRAITTALK_OVERRIDES, indent=1) + "\n")

    record = inputs()
    masks = {name: [resized(record[f"inputs.mask_{name}"].numpy().astype(np.uint8), LATENT >> i).repeat(FRAMES, 1)
                    for i in range(4)] for name in ("background", "face", "lip")}
    region = record["inputs.face_box"][None].repeat(3, 1, 1)[None]  # the face locator's 3-channel image
    ref = record["inputs.reference"]

    # Hallo casts the bank to fp16 when it hands it to the denoising UNet; fp32 here, to compare at 1e-5.
    mutual_self_attention.ReferenceAttentionControl.update = partialmethod(
        mutual_self_attention.ReferenceAttentionControl.update, dtype=torch.float32)
    vae = LatentsVAE()
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
                              steps_offset=1, prediction_type="v_prediction", rescale_betas_zero_snr=True,
                              timestep_spacing="trailing")
    unet = net.denoising_unet
    pipe = FaceAnimatePipeline(vae=vae, reference_unet=net.reference_unet, denoising_unet=unet,
                               face_locator=net.face_locator, scheduler=scheduler, image_proj=net.imageproj)
    calls = []
    unet.register_forward_hook(lambda m, a, o: calls.append((a[0].clone(), a[1], o[0].clone())))

    def run(motion, cfg, steps, generator, stop_after=None):
        calls.clear()
        vae.latents = torch.cat([ref, motion])
        bank, latents = {}, []

        def callback(i, t, x):
            latents.append(x.clone())
            if i == 0:
                bank.update({name: m.bank[0].clone() for name, m in unet.named_modules() if getattr(m, "bank", None)})
            if stop_after is not None and i + 1 >= stop_after:
                raise Stop

        def conditional_audio(module, args, kwargs):  # the pipeline always prepends zero audio; unguided, drop it
            kwargs["audio_embedding"] = kwargs["audio_embedding"][1:]
            return args, kwargs

        hook = unet.register_forward_pre_hook(conditional_audio, with_kwargs=True) if cfg <= 1 else None
        try:
            pipe(ref_image=torch.zeros(1, 1 + MOTION, 3, SIZE, SIZE), face_emb=record["inputs.face_emb"],
                 audio_tensor=net.audioproj(record["inputs.audio_features"][None]), face_mask=region,
                 pixel_values_full_mask=masks["background"], pixel_values_face_mask=masks["face"],
                 pixel_values_lip_mask=masks["lip"], width=SIZE, height=SIZE, video_length=FRAMES,
                 num_inference_steps=steps, guidance_scale=cfg, generator=generator, motion_scale=[1.0, 1.0, 1.0],
                 callback=callback)
        except Stop:
            pass
        finally:
            if hook is not None:
                hook.remove()
        return list(calls), latents, bank

    with torch.no_grad():
        record["projections.audio_tokens"] = net.audioproj(record["inputs.audio_features"][None])[0]
        record["projections.identity_tokens"] = net.imageproj(record["inputs.face_emb"])
        first = ref.repeat(MOTION, 1, 1, 1)  # the first window's motion frames: the reference
        for label, motion, cfg in (("guided_first", first, CFG), ("guided_later", record["inputs.motion_later"], CFG),
                                   ("unguided_first", first, 1.0), ("unguided_later", record["inputs.motion_later"], 1.0)):
            forwards, _, bank = run(motion, cfg, 4, torch.Generator().manual_seed(3))
            for k, (x, t, v) in enumerate(forwards):
                key = f"{label}.step{k}"
                record[f"{key}.t"], record[f"{key}.latents"] = torch.as_tensor(t).reshape(1).long(), x[:1]
                if cfg > 1:
                    record[f"{key}.uncond"], record[f"{key}.cond"] = v.chunk(2)
                else:
                    record[f"{key}.v"] = v
            if label == "guided_later":
                record.update({f"bank.{name}": feats for name, feats in bank.items()})
        # Hallo's sampling: torch.manual_seed(42) once, then one 40-step window after another.
        generator = torch.manual_seed(42)
        forwards, steps, _ = run(first, CFG, 40, generator, stop_after=3)
        record["ddim.noise0"] = forwards[0][0][:1]  # DDIM's init_noise_sigma is 1
        record.update({f"ddim.step{k}": x for k, x in enumerate(steps)})
        record["ddim.noise1"] = torch.randn(1, 4, FRAMES, LATENT, LATENT, generator=generator)  # the next window's

    if timed:
        import time

        with torch.no_grad():
            start = time.perf_counter()
            run(first, CFG, 40, torch.manual_seed(42))
            print(f"hallo: one 40-step window of {FRAMES} frames at {SIZE}², cfg {CFG}: "
                  f"{time.perf_counter() - start:.1f} s ({torch.get_num_threads()} threads)")

    commit = (src / ".git").exists() and subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                                                        capture_output=True, text=True).stdout.strip()
    save_file({k: v.contiguous().float() if v.is_floating_point() else v.contiguous() for k, v in record.items()},
              out / "golden.safetensors", metadata={"hallo_commit": commit or "unknown", "cfg": str(CFG),
                                                    "frames": str(FRAMES), "motion_frames": str(MOTION)})
    print(f"wrote {len(record)} tensors to {out}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--time"]
    if len(args) != 2:
        sys.exit(__doc__)
    main(Path(args[0]), Path(args[1]), timed="--time" in sys.argv)
