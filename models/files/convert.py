"""Initialising full-size models from files users already have, offline, with the shipped configs.

- An SD-1.5 single-file checkpoint (ComfyUI's `models/checkpoints`) gives IdentityNet's and AnimateNet's
  spatial layers, the VAE and the CLIP text encoder, through diffusers' own LDM→diffusers key maps.
- An AnimateDiff v1/v2 motion module (`models/animatediff_models`) gives AnimateNet's temporal layers.

Every step checks that the file covered exactly what it should and reports what it loaded; anything else
raises a `ModelFileError` naming the file and the keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .components import Components
from ..networks.temporal import animatediff_to_diffusers, is_temporal_key
from .weights import ModelFileError, read_state_dict, state_fit

SD15_UNET_PROBE = ("model.diffusion_model.input_blocks.0.0.weight", (320, 4, 3, 3))
SD15_TEXT_PREFIX = "cond_stage_model.transformer."


@dataclass
class LoadReport:
    source: str
    loaded: dict[str, int] = field(default_factory=dict)  # component → tensors loaded
    left_new: dict[str, list[str]] = field(default_factory=dict)  # component → keys the file cannot give

    def summary(self) -> str:
        parts = [f"{name}: {count} tensors" for name, count in self.loaded.items()]
        return f"{self.source}: loaded " + ", ".join(parts)


def _shorten(keys, limit: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def _read_mapped(path) -> dict[str, torch.Tensor]:
    """A source file's tensors; safetensors files memory-mapped, so that loading them into a model copies each
    tensor once and the file's 2-4 GB stay in the page cache instead of the process's own memory."""
    from .safetensors_stream import read_mapped

    path = Path(path)
    if path.suffix != ".safetensors":
        return read_state_dict(path)  # weights-only pickles (Hallo's net.pth, old checkpoints)
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    return read_mapped(path)[0]


def read_sd15_checkpoint(path, unet_config: dict, vae_config: dict | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """An SD-1.5 single-file checkpoint → diffusers-format state dicts {"unet", "vae", "text_encoder"}."""
    from diffusers.loaders.single_file_utils import (convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)

    checkpoint = _read_mapped(path)
    key, _ = SD15_UNET_PROBE
    shape = (unet_config["block_out_channels"][0], unet_config["in_channels"], 3, 3)  # (320, 4, 3, 3) for SD-1.5
    if key not in checkpoint:
        raise ModelFileError(path, f"not an SD-1.5 checkpoint: no '{key}' (found e.g. {_shorten(checkpoint, 3)})")
    if tuple(checkpoint[key].shape) != shape:
        raise ModelFileError(path, f"not an SD-1.5 checkpoint: '{key}' is {tuple(checkpoint[key].shape)}, "
                             f"expected {shape} (SDXL, SD2 and inpainting models have other layouts)")
    parts = {"unet": convert_ldm_unet_checkpoint(checkpoint, unet_config)}
    if vae_config is not None and any(k.startswith("first_stage_model.") for k in checkpoint):
        parts["vae"] = convert_ldm_vae_checkpoint(checkpoint, vae_config)
    if any(k.startswith(SD15_TEXT_PREFIX) for k in checkpoint):
        text = convert_ldm_clip_checkpoint(checkpoint)
        text.pop("text_model.embeddings.position_ids", None)  # a buffer in old checkpoints
        parts["text_encoder"] = text
    return parts


def _load_partial(module: torch.nn.Module, state: dict[str, torch.Tensor], path, name: str,
                  may_stay_new) -> tuple[int, list[str]]:
    """Load `state` into `module`; every key of the file must fit, and only keys for which `may_stay_new`
    is true may be left to their initial values."""
    fit = state_fit(module.state_dict(), state)
    unexpected = fit.unexpected
    wrong = [f"{k} {file_shape}≠{own_shape}" for k, (file_shape, own_shape) in fit.mismatched.items()]
    not_covered = [k for k in fit.missing if not may_stay_new(k)]
    if unexpected or wrong or not_covered:
        problems = [f"unexpected keys {_shorten(unexpected)}" if unexpected else "",
                    f"shape mismatches {_shorten(wrong)}" if wrong else "",
                    f"keys the file lacks {_shorten(not_covered)}" if not_covered else ""]
        raise ModelFileError(path, f"does not fit {name}: " + "; ".join(p for p in problems if p))
    module.load_state_dict(state, strict=False)
    return len(state), fit.missing


def _is_new_stream(key: str) -> bool:
    return ".processor.to_k_ip." in key or ".processor.to_v_ip." in key


def init_from_sd15(components: Components, path) -> LoadReport:
    """IdentityNet, AnimateNet (spatial), VAE and text encoder from an SD-1.5 single-file checkpoint."""
    config = components.config
    vae_config = config["codec"].get("vae") if config["codec"]["type"] == "vae" else None
    parts = read_sd15_checkpoint(path, config["unet"], vae_config)
    report = LoadReport(str(path))
    unet = parts["unet"]
    identity_unet = {k: v for k, v in unet.items() if not k.startswith(("conv_norm_out.", "conv_out."))}
    report.loaded["identity_net"], report.left_new["identity_net"] = _load_partial(
        components.identity_net.unet, identity_unet, path, "IdentityNet", _is_new_stream)
    report.loaded["animate_net"], report.left_new["animate_net"] = _load_partial(
        components.animate_net.unet, unet, path, "AnimateNet", lambda k: _is_new_stream(k) or is_temporal_key(k))
    codec = components.codec
    if "vae" in parts and codec is not None and hasattr(codec, "vae"):
        report.loaded["vae"], _ = _load_partial(codec.vae, parts["vae"], path, "the VAE", lambda k: False)
    if "text_encoder" in parts and components.text_encoder is not None:
        report.loaded["text_encoder"], _ = _load_partial(components.text_encoder.model, parts["text_encoder"], path,
                                                         "the CLIP text encoder", lambda k: False)
    return report


def init_temporal_from_animatediff(components: Components, path) -> LoadReport:
    """AnimateNet's temporal layers from an AnimateDiff motion module (original or diffusers layout)."""
    state = _read_mapped(path)
    if any(".temporal_transformer." in k for k in state):
        state = animatediff_to_diffusers(state)
    state = {k: v for k, v in state.items() if "motion_modules." in k and not k.endswith("pos_embed.pe")}
    if not state:
        raise ModelFileError(path, "not an AnimateDiff motion module: no 'motion_modules' keys")
    unet = components.animate_net.unet
    temporal = {k for k in unet.state_dict() if is_temporal_key(k) and not k.endswith("pos_embed.pe")}
    report = LoadReport(str(path))
    report.loaded["temporal"], _ = _load_partial(unet, state, path, "AnimateNet's temporal layers",
                                                 lambda k: k not in temporal)
    return report
