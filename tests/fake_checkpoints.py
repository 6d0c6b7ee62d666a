"""Random-weight files with the real key layouts of the files users bring (tests only).

Key layouts come from sources independent of the code under test:
- SD-1.5 single-file checkpoints: diffusers' module names mapped to the original (LDM) names with
  ComfyUI's own maps (`comfy.utils.unet_to_diffusers`, `comfy.diffusers_convert`), so our loader, which
  uses diffusers' LDM→diffusers maps, is checked against a second implementation;
- AnimateDiff v2 motion modules: the original key names recorded in Hallo's manifest (its denoising UNet
  carries AnimateDiff's layout as is).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

DATA = Path(__file__).parent / "data"


def _random(shape, gen, dtype) -> torch.Tensor:
    return (torch.randn(tuple(shape), generator=gen) * 0.02).to(dtype)


def _meta_state(module_factory) -> dict[str, torch.Size]:
    with torch.device("meta"):
        module = module_factory()
    return {k: v.shape for k, v in module.state_dict().items()}


def _comfy(comfy_root: Path):
    if str(comfy_root) not in sys.path:
        sys.path.insert(0, str(comfy_root))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before anything imports comfy.model_management
    import comfy.diffusers_convert
    import comfy.model_detection
    import comfy.utils

    return comfy


def sd15_checkpoint(comfy_root: Path, seed: int = 0, dtype=torch.float16):
    """(LDM-format state dict, {"unet", "vae", "text_encoder"} diffusers-format state dicts) with random
    values; the two hold the very same tensors."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from comfyui_portraittalk.models.config import load_config

    comfy = _comfy(comfy_root)
    config = load_config("sd15")
    gen = torch.Generator().manual_seed(seed)
    unet = {k: _random(s, gen, dtype) for k, s in _meta_state(lambda: UNet2DConditionModel.from_config(config["unet"])).items()}
    vae = {k: _random(s, gen, dtype) for k, s in _meta_state(lambda: AutoencoderKL.from_config(config["codec"]["vae"])).items()}
    text_cfg = {k: v for k, v in config["text"]["model"].items()}
    text = {k: _random(s, gen, dtype) for k, s in _meta_state(lambda: CLIPTextModel(CLIPTextConfig(**text_cfg))).items()
            if k != "text_model.embeddings.position_ids"}

    comfy_unet_config = comfy.model_detection.unet_config_from_diffusers_unet(unet)
    to_ldm = comfy.utils.unet_to_diffusers(comfy_unet_config)  # diffusers key → LDM key
    missing = set(unet) - set(to_ldm)
    assert not missing, f"ComfyUI's map lacks {sorted(missing)[:3]}"
    ldm = {f"model.diffusion_model.{to_ldm[k]}": v for k, v in unet.items()}
    ldm.update({f"first_stage_model.{k}": v for k, v in comfy.diffusers_convert.convert_vae_state_dict(vae).items()})
    ldm.update({f"cond_stage_model.transformer.{k}": v for k, v in text.items()})
    return ldm, {"unet": unet, "vae": vae, "text_encoder": text}


def hallo_manifest() -> dict:
    return json.loads((DATA / "hallo" / "net_manifest.json").read_text())


def animatediff_v2_motion_module(seed: int = 0, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """AnimateDiff v2 (mm_sd_v15_v2) keys and shapes, as Hallo's manifest records them."""
    gen = torch.Generator().manual_seed(seed)
    prefix = "denoising_unet."
    return {k[len(prefix):]: _random(info["shape"], gen, dtype) for k, info in hallo_manifest()["tensors"].items()
            if k.startswith(prefix) and ".motion_modules." in k}
