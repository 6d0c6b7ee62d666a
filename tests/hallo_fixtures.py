"""A small model of Hallo's layout (the tiny family with every Hallo option), and Hallo-named checkpoints
written from it, for the Hallo tests. The key names are produced here independently of the converter:
Hallo's part prefixes, and AnimateDiff's original motion-module names as recorded in Hallo's manifest."""

from __future__ import annotations

import gc
import math
import re
from pathlib import Path

import torch

TINY_HALLO = {
    "temporal": {"per_frame_norm": True, "skip": ["down_blocks.2", "up_blocks.0"], "motion_frames": 2},
    "structure": {"in_channels": 3},
    "audio": {"attention": "hallo_module", "weights": {"pose": 1.0, "face": 1.0, "lip": 1.0}},
    "identity": {"embed_dim": 32, "encoder": "arcface"},
    "attention": {"base": "identity", "streams": ["text"]},
    "text": {"stream_weights": "random (tests)"},
    "sampling": {"guidance": "joint", "audio_guidance": 3.5, "window": 4, "overlap": 0, "long_audio": "motion_frames"},
}


def tiny_hallo_config(**overrides):
    from comfyui_portraittalk.models.config import load_config, merge

    return load_config("tiny", merge(TINY_HALLO, overrides))


_MOTION = [(".norm1.", ".norms.0."), (".norm2.", ".norms.1."), (".norm3.", ".ff_norm."),
           (".attn1.", ".attention_blocks.0."), (".attn2.", ".attention_blocks.1.")]


def hallo_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A PortraitTalk state dict of the Hallo layout → the same tensors under Hallo's net.pth names (text K/V,
    which Hallo lacks, are left out; each block's positional encoding appears twice, as in AnimateDiff)."""
    out = {}
    for key, value in state.items():
        if ".processor.to_k_ip." in key or ".processor.to_v_ip." in key:
            continue
        if key.startswith("identity_net.unet."):
            out["reference_unet." + key[len("identity_net.unet."):]] = value
        elif key.startswith("animate_net.unet."):
            rest = key[len("animate_net.unet."):]
            if ".motion_modules." in rest:
                rest = re.sub(r"(\.motion_modules\.\d+)\.", r"\1.temporal_transformer.", rest)
                if rest.endswith(".pos_embed.pe"):
                    for i in (0, 1):
                        out["denoising_unet." + rest.replace(".pos_embed.pe", f".attention_blocks.{i}.pos_encoder.pe")] = value
                    continue
                for ours, theirs in _MOTION:
                    rest = rest.replace(ours, theirs)
            out["denoising_unet." + rest] = value
        elif key.startswith("animate_net.structure."):
            out["face_locator." + key[len("animate_net.structure."):]] = value
        elif key.startswith("image_proj."):
            out["imageproj." + key[len("image_proj."):].replace("image_embeds.", "proj.")] = value
        elif key.startswith("audio_proj."):
            out["audioproj." + key[len("audio_proj."):]] = value
    return out


def random_net_pth(path, dtype=torch.float16) -> int:
    """A random-weights net.pth with exactly the manifest's keys and shapes (the positional encodings are the
    sinusoid a real file holds); returns its size in bytes."""
    from fake_checkpoints import hallo_manifest

    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, info in hallo_manifest()["tensors"].items():
        shape = info["shape"]
        if key.endswith("pos_encoder.pe"):
            length, dim = shape[1], shape[2]
            position = torch.arange(length).unsqueeze(1)
            div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
            pe = torch.zeros(1, length, dim)
            pe[0, :, 0::2], pe[0, :, 1::2] = torch.sin(position * div), torch.cos(position * div)
            state[key] = pe.to(dtype)
        elif key.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight")) or ".norms." in key \
                or key.endswith("ff_norm.weight"):
            state[key] = torch.ones(shape, dtype=dtype)
        else:
            state[key] = (torch.randn(shape, generator=gen) * 0.02).to(dtype)
    torch.save(state, path)
    del state
    gc.collect()
    return Path(path).stat().st_size
