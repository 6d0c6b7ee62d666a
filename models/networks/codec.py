"""Latent codecs: images ↔ the latents the UNets denoise.

- `VaeCodec`: diffusers' `AutoencoderKL` (SD-1.5 layout, factor 8, 4 channels, scale 0.18215); encodes
  to the posterior mean.
- `SpaceToDepthCodec`: the tiny family's codec (decision). A lossless pixel-unshuffle by a factor f
  (3·f² channels), so the tiny demo needs no trained VAE and reproduces colours exactly; the model still
  denoises a latent grid f times smaller than the image.

Both take and return images `[N, 3, H, W]` in -1..1 and decode in chunks, so memory does not grow with
the number of frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LatentCodec(nn.Module):
    factor: int
    latent_channels: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def preview(self, latents: torch.Tensor) -> torch.Tensor:
        """A cheap look at latents `[N, C, h, w]` for progress previews: images `[N, 3, H', W']` in -1..1."""
        return self._decode(latents)

    @torch.no_grad()
    def decode_chunks(self, latents: torch.Tensor, chunk: int = 8, on_chunk=None, device=None, scale: float = 1.0):
        """Latents `[N, C, h, w]` (times `scale`, on `device`) → (start, images `[n, 3, H, W]` in -1..1 on the
        CPU), `chunk` frames at a time: only one chunk is ever moved or scaled."""
        for start in range(0, latents.shape[0], chunk):
            part = latents[start: start + chunk].to(device if device is not None else latents.device)
            yield start, self._decode(part * scale if scale != 1.0 else part).float().cpu()
            if on_chunk is not None:
                on_chunk(min(start + chunk, latents.shape[0]), latents.shape[0])

    def decode(self, latents: torch.Tensor, chunk: int = 8, on_chunk=None) -> torch.Tensor:
        """Latents `[N, C, h, w]` → images `[N, 3, H, W]` in -1..1 on the CPU, decoded `chunk` frames at a
        time into the output (memory beyond the output is one chunk)."""
        out = None
        for start, images in self.decode_chunks(latents, chunk, on_chunk):
            if out is None:
                out = images.new_empty((latents.shape[0], *images.shape[1:]))
            out[start: start + images.shape[0]] = images
        return out if out is not None else latents.new_zeros((0, 3, 0, 0))


class SpaceToDepthCodec(LatentCodec):
    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = int(factor)
        self.latent_channels = 3 * self.factor**2

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(images, self.factor)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latents, self.factor)


class VaeCodec(LatentCodec):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = vae.config.latent_channels
        self.scale = vae.config.scaling_factor

    @classmethod
    def from_config(cls, config: dict) -> VaeCodec:
        from diffusers import AutoencoderKL

        return cls(AutoencoderKL.from_config(config))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        posterior = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        return posterior.mean * self.scale

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents.to(self.vae.dtype) / self.scale).sample

    # The widely used linear latent→RGB approximation for SD-1.x latents (scaled latents in, RGB out).
    RGB_FACTORS = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))

    def preview(self, latents: torch.Tensor) -> torch.Tensor:
        factors = torch.tensor(self.RGB_FACTORS, dtype=torch.float32, device=latents.device)
        return torch.einsum("nchw,cr->nrhw", latents.float(), factors).clamp(-1, 1)


def build_codec(config: dict) -> LatentCodec:
    kind = config.get("type")
    if kind == "space_to_depth":
        return SpaceToDepthCodec(config.get("factor", 2))
    if kind == "vae":
        return VaeCodec.from_config(config["vae"])
    raise ValueError(f"unknown codec type {kind!r} (expected 'space_to_depth' or 'vae')")
