"""AnimateNet: the denoiser. A diffusers `UNetMotionModel` (SD-1.5 spatial layers + AnimateDiff temporal
layers) with PortraitTalk's processors and a structure encoder.

Per spatial transformer block: identity attention (self-attention that also sees the IdentityNet
features of the same block), decoupled text/identity/audio cross-attention, then the block's temporal
attention across frames. The structure encoder's output is added right after `conv_in`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .attention import AttentionContext, install_processors
from .structure import StructureEncoder


class AnimateNet(nn.Module):
    def __init__(self, unet: nn.Module, structure: StructureEncoder, identity_tokens: int, audio_tokens: int):
        super().__init__()
        install_processors(unet, "animate", streams=("identity", "audio"), num_tokens=(identity_tokens, audio_tokens))
        self.unet = unet
        self.structure = structure
        self._structure_residual: torch.Tensor | None = None
        # The structure residual enters through a hook rather than a forked UNet forward.
        unet.conv_in.register_forward_hook(self._add_structure)

    def _add_structure(self, module, inputs, output):
        residual = self._structure_residual
        if residual is None:
            return output
        residual = residual.to(output.dtype)
        if residual.shape[0] == output.shape[0]:
            return output + residual
        frames = residual.shape[0]  # one map per frame, shared by every batch row
        return (output.view(-1, frames, *output.shape[1:]) + residual).view(output.shape)

    @contextmanager
    def _with_structure(self, residual: torch.Tensor | None):
        self._structure_residual = residual
        try:
            yield
        finally:
            self._structure_residual = None

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, ctx: AttentionContext,
                structure: torch.Tensor | None = None) -> torch.Tensor:
        """Predict noise (or v) for `latents` `[B, F, C, h, w]`.

        `text` is `[B, T, D]` (one prompt embedding per batch row, shared by its frames); `ctx` carries
        identity and per-frame audio tokens for the `B·F` UNet rows; `structure` is `[F, 1, H, W]` (shared
        by the batch), `[B, F, 1, H, W]`, or None.
        """
        frames = latents.shape[1]
        residual = None
        if structure is not None:
            residual = self.structure(structure.flatten(0, structure.ndim - 4).to(latents.dtype))
        sample = latents.permute(0, 2, 1, 3, 4)  # UNetMotionModel takes [B, C, F, h, w]
        context = text.repeat_interleave(frames, dim=0)
        with self._with_structure(residual):
            out = self.unet(sample, timestep, context, cross_attention_kwargs={"portraittalk": ctx}).sample
        return out.permute(0, 2, 1, 3, 4)
