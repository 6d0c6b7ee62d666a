"""The image encoder behind the identity tokens.

Identity tokens are `ImageProjection(image_embeds)` (diffusers' IP-Adapter projection) of a CLIP vision
model's projected image embedding: CLIP ViT-H/14 in the IP-Adapter layout for full-size models (ComfyUI's
`models/clip_vision`, or its CLIP_VISION type), a small `CLIPVisionModelWithProjection` for the tiny
family.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageEncoder(nn.Module):
    """Images `[R, 3, H, W]` in 0..1 → image embeddings `[R, E]`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, config: dict) -> ImageEncoder:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        return cls(CLIPVisionModelWithProjection(CLIPVisionConfig(**config)))

    @property
    def embed_dim(self) -> int:
        return self.model.config.projection_dim

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.image_size
        x = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        x = ((x.clamp(0, 1) - self.mean) / self.std).to(self.model.dtype)
        return self.model(pixel_values=x).image_embeds
