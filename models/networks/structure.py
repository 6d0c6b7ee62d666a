"""The structure encoder: per-frame face-region maps to a residual added after AnimateNet's `conv_in`.

This is the "face locator" of Hallo and EchoMimic (the structure row of docs/architecture.md, "Decisions beyond what
the paper states"): 3×3 convolutions with SiLU, halving the resolution once per channel step until it
matches the latent grid, and a zero-initialised last layer, so an untrained encoder leaves the UNet
unchanged. The layer names match Hallo's `face_locator`, so its weights load as they are.
"""

from __future__ import annotations

import torch
from torch import nn


class StructureEncoder(nn.Module):
    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (16, 32, 64, 128), out_channels: int = 320):
        super().__init__()
        self.in_channels = in_channels
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.blocks) // 2)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """`maps` `[N, 1 or in_channels, H, W]` in 0..1 → `[N, out_channels, H / downscale, W / downscale]`."""
        if maps.shape[1] != self.in_channels:
            maps = maps.expand(-1, self.in_channels, -1, -1) if maps.shape[1] == 1 else maps
        x = nn.functional.silu(self.conv_in(maps))
        for block in self.blocks:
            x = nn.functional.silu(block(x))
        return self.conv_out(x)


def with_reference(mask: torch.Tensor | None, reference: torch.Tensor) -> torch.Tensor:
    """The map of a structure encoder that reads the reference: the face mask (zeros where there is none) and
    the reference RGB in 0..1, as channels. `mask` is `[..., F, 1, H, W]` (or None), `reference` `[..., 3, H, W]`,
    one per leading index; the result is `[..., F, 4, H, W]` (F = 1 without a mask)."""
    reference = reference.unsqueeze(-4)
    if mask is None:
        mask = reference.new_zeros((*reference.shape[:-3], 1, *reference.shape[-2:]))
    reference = reference.to(mask.dtype).expand(*mask.shape[:-3], 3, *mask.shape[-2:])
    return torch.cat([mask, reference], dim=-3)


def widen_input(state: dict[str, torch.Tensor], prefix: str, in_channels: int) -> dict[str, torch.Tensor]:
    """`state` with the structure encoder's `conv_in` (under `prefix`) taking `in_channels` maps: the new
    channels start at zero, so a model trained on the face mask alone gives the same output until it learns
    to read them (fine-tuning a mask-only model into one that reads the reference). Any other mismatch is left
    for the loader to report against the file."""
    key = f"{prefix}conv_in.weight"
    weight = state.get(key)
    if weight is None or weight.shape[1] >= in_channels:
        return state
    extra = weight.new_zeros((weight.shape[0], in_channels - weight.shape[1], *weight.shape[2:]))
    return {**state, key: torch.cat([weight, extra], dim=1)}
