"""The files a user brings to the full-size training recipes (`hallo_text`, `sd15`), with random weights of the
real key layouts at reduced widths, laid out as users have them:

    v1-5-pruned.safetensors        SD-1.5 single file (LDM names: UNet, VAE, CLIP text)
    mm_sd_v15_v2.safetensors       AnimateDiff v2 motion module (AnimateDiff's own names)
    clip_vit_h.safetensors         CLIP ViT-H image encoder (transformers names, as IP-Adapter ships it)
    wav2vec2.safetensors           wav2vec2 (transformers names)
    net.pth                        Hallo's checkpoint (Hallo's names, a weights-only pickle as Hallo ships it)
    sd1_tokenizer/                 ComfyUI's CLIP tokenizer folder (the real one)

The widths are cut (`SMALL`), the layouts are not: the same blocks, layers and key names. The training
configs name the same cut as `model_overrides`.
"""

from __future__ import annotations

from pathlib import Path

import torch

# the full-size families' layout at small widths (a training config's model_overrides)
SMALL = {
    "unet": {"block_out_channels": [32, 64, 128, 128], "cross_attention_dim": 32, "norm_num_groups": 8},
    "codec": {"vae": {"block_out_channels": [16, 32, 64, 64], "norm_num_groups": 8}},
    "motion": {"motion_num_attention_heads": 2, "motion_norm_num_groups": 8},
    "audio": {"hidden": 16, "wav2vec2": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 1,
                                         "intermediate_size": 256}},
    "text": {"model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "projection_dim": 32}},
}
SD15_SMALL = {**SMALL, "identity": {"image_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                                      "num_attention_heads": 2, "projection_dim": 16}}}
HALLO_SMALL = SMALL

NAMES = {"checkpoint": "v1-5-pruned.safetensors", "motion": "mm_sd_v15_v2.safetensors",
         "clip_vision": "clip_vit_h.safetensors", "wav2vec2": "wav2vec2.safetensors", "hallo": "net.pth",
         "tokenizer": "sd1_tokenizer"}


def _save(path: Path, state: dict[str, torch.Tensor], dtype=torch.float16) -> None:
    from safetensors.torch import save_file

    save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(path))


def write_user_files(folder, comfy_root) -> dict[str, Path]:
    """Every file of both recipes, in `folder`; returns {role: path}."""
    import shutil

    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Wav2Vec2Config, Wav2Vec2Model

    from comfyui_portraittalk.models.files.components import build_components
    from comfyui_portraittalk.models.config import load_config
    from conftest import wake_zero_branches
    from fake_checkpoints import animatediff_v2_motion_module, sd15_checkpoint
    from hallo_fixtures import hallo_names

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {role: folder / name for role, name in NAMES.items()}
    sd15 = load_config("sd15", SD15_SMALL)
    ldm, _ = sd15_checkpoint(Path(comfy_root), config=sd15)
    _save(paths["checkpoint"], ldm)
    _save(paths["motion"], animatediff_v2_motion_module(config=sd15))
    torch.manual_seed(0)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(**sd15["identity"]["image_encoder"]))
    _save(paths["clip_vision"], {k: v for k, v in vision.state_dict().items() if not k.endswith("position_ids")})
    wav2vec2 = Wav2Vec2Model(Wav2Vec2Config(**sd15["audio"]["wav2vec2"]))
    _save(paths["wav2vec2"], wav2vec2.state_dict(), torch.float32)
    hallo = load_config("hallo", HALLO_SMALL)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        components = build_components(hallo, with_text_encoder=False, with_image_encoder=False, with_codec=False)
    wake_zero_branches(components)  # a trained Hallo has no zero branches: its audio modules and locator act
    torch.save({k: v.half() for k, v in hallo_names(components.state_dict()).items()}, paths["hallo"])
    shutil.copytree(Path(comfy_root) / "comfy" / "sd1_tokenizer", paths["tokenizer"])
    return paths
