"""Random-weight files of the real shapes and key layouts for the full-size `sd15` path (tests only), in fp16
as users have them, written one tensor at a time so the writer never holds more than the checkpoint:

    sd15.safetensors               SD-1.5 single-file checkpoint (UNet, VAE, CLIP text)     ~2.1 GB
    mm_sd_v15_v2.safetensors       AnimateDiff v2 motion module                             ~0.9 GB
    clip_vit_h.safetensors         CLIP ViT-H/14 image encoder, IP-Adapter layout            ~1.3 GB
    wav2vec2.safetensors           wav2vec2-base-960h layout (fp32)                          ~0.4 GB

Run it in a subprocess (`python -c "...write_sd15_files(folder, comfy_root)"`): the test process then never
holds gigabytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

NAMES = {"checkpoint": "sd15.safetensors", "motion": "mm_sd_v15_v2.safetensors",
         "clip_vision": "clip_vit_h.safetensors", "wav2vec2": "wav2vec2.safetensors"}
# CLIP ViT-H/14 as the IP-Adapter image encoder (h94/IP-Adapter models/image_encoder) is configured; ComfyUI's
# CLIPVisionLoader recognises it by its 32 layers (comfy/clip_vision.py → clip_vision_config_h.json).
VIT_H = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
         "projection_dim": 1024, "patch_size": 14, "image_size": 224, "hidden_act": "gelu", "layer_norm_eps": 1e-5}


def _write(path: Path, shapes: dict, dtype: torch.dtype, seed: int, values: dict | None = None) -> None:
    from comfyui_portraittalk.models.files.safetensors_stream import write_streaming

    gen = torch.Generator().manual_seed(seed)
    values = values or {}

    def tensor(name):
        if name in values:
            return values.pop(name)
        return torch.randn(tuple(shapes[name]), generator=gen) * 0.02

    write_streaming(path, [(k, tuple(s), dtype) for k, s in shapes.items()], tensor, {})


def clip_vit_h(path: Path) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_H))
    _write(path, {k: v.shape for k, v in model.state_dict().items() if not k.endswith("position_ids")},
           torch.float16, 1)


def wav2vec2(path: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from comfyui_portraittalk.models.config import CONFIG_DIR

    torch.manual_seed(0)
    model = Wav2Vec2Model(Wav2Vec2Config(**json.loads((CONFIG_DIR / "sd15" / "wav2vec2.json").read_text())))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    _write(path, {k: v.shape for k, v in state.items()}, torch.float32, 2, state)


def write_sd15_files(folder, comfy_root) -> dict[str, Path]:
    from fake_checkpoints import animatediff_v2_motion_module, sd15_checkpoint

    folder = Path(folder)
    paths = {role: folder / name for role, name in NAMES.items()}
    ldm, _ = sd15_checkpoint(Path(comfy_root))
    _write(paths["checkpoint"], {k: v.shape for k, v in ldm.items()}, torch.float16, 0, ldm)
    del ldm
    motion = animatediff_v2_motion_module()
    _write(paths["motion"], {k: v.shape for k, v in motion.items()}, torch.float16, 0, motion)
    del motion
    clip_vit_h(paths["clip_vision"])
    wav2vec2(paths["wav2vec2"])
    return paths
