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


def small_sd15_config() -> dict:
    """The sd15 family's layout (the same blocks, layers, key names and width ratios, so the same tensors) at
    a tenth of the widths, so that unit tests build, assemble and write a model in seconds."""
    from comfyui_portraittalk.models.config import load_config

    return load_config("sd15", {
        "unet": {"block_out_channels": [32, 64, 128, 128], "cross_attention_dim": 32, "norm_num_groups": 8},
        "codec": {"vae": {"block_out_channels": [16, 32, 64, 64], "norm_num_groups": 8}},
        "motion": {"motion_num_attention_heads": 2, "motion_norm_num_groups": 8},
        "audio": {"hidden": 16, "wav2vec2": {"num_hidden_layers": 2, "hidden_size": 8}},
        "identity": {"image_encoder": {"projection_dim": 16}}})


def _comfy_sd15_unet_config(comfy) -> dict:
    """ComfyUI's description of the SD-1.5 UNet (its key map depends on the layout, not on the widths)."""
    from diffusers import UNet2DConditionModel

    from comfyui_portraittalk.models.config import load_config

    shapes = _meta_state(lambda: UNet2DConditionModel.from_config(load_config("sd15")["unet"]))
    return comfy.model_detection.unet_config_from_diffusers_unet({k: torch.empty(s, device="meta")
                                                                  for k, s in shapes.items()})


def sd15_checkpoint(comfy_root: Path, seed: int = 0, dtype=torch.float16, config: dict | None = None,
                    with_text: bool = True):
    """(LDM-format state dict, {"unet", "vae", "text_encoder"} diffusers-format state dicts) with random
    values; the two hold the very same tensors. `config`: another sd15-layout config (small_sd15_config)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from comfyui_portraittalk.models.config import load_config

    comfy = _comfy(comfy_root)
    config = config or load_config("sd15")
    gen = torch.Generator().manual_seed(seed)
    unet = {k: _random(s, gen, dtype) for k, s in _meta_state(lambda: UNet2DConditionModel.from_config(config["unet"])).items()}
    vae = {k: _random(s, gen, dtype) for k, s in _meta_state(lambda: AutoencoderKL.from_config(config["codec"]["vae"])).items()}
    text_cfg = {k: v for k, v in config["text"]["model"].items()}
    text = {k: _random(s, gen, dtype) for k, s in _meta_state(lambda: CLIPTextModel(CLIPTextConfig(**text_cfg))).items()
            if k != "text_model.embeddings.position_ids"} if with_text else {}

    comfy_unet_config = _comfy_sd15_unet_config(comfy)
    to_ldm = comfy.utils.unet_to_diffusers(comfy_unet_config)  # diffusers key → LDM key
    missing = set(unet) - set(to_ldm)
    assert not missing, f"ComfyUI's map lacks {sorted(missing)[:3]}"
    ldm = {f"model.diffusion_model.{to_ldm[k]}": v for k, v in unet.items()}
    ldm.update({f"first_stage_model.{k}": v for k, v in comfy.diffusers_convert.convert_vae_state_dict(vae).items()})
    ldm.update({f"cond_stage_model.transformer.{k}": v for k, v in text.items()})
    return ldm, {"unet": unet, "vae": vae, "text_encoder": text}


def hallo_manifest() -> dict:
    return json.loads((DATA / "hallo" / "net_manifest.json").read_text())


def animatediff_v2_motion_module(seed: int = 0, dtype=torch.float16,
                                 config: dict | None = None) -> dict[str, torch.Tensor]:
    """AnimateDiff v2 (mm_sd_v15_v2) keys and shapes, as Hallo's manifest records them. With an sd15-layout
    `config` (small_sd15_config), the same original key names with that model's shapes."""
    gen = torch.Generator().manual_seed(seed)
    prefix = "denoising_unet."
    keys = {k: info["shape"] for k, info in hallo_manifest()["tensors"].items()
            if k.startswith(prefix) and ".motion_modules." in k}
    if config is not None:
        from comfyui_portraittalk.models.files.hallo import target_key
        from comfyui_portraittalk.models.networks.temporal import build_motion_unet

        shapes = _meta_state(lambda: build_motion_unet(config["unet"], config["motion"]))
        keys = {k: shapes[target_key(k)[len("animate_net.unet."):]] for k in keys}
    return {k[len(prefix):]: _random(shape, gen, dtype) for k, shape in keys.items()}
