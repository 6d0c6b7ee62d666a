"""AnimateNet: the denoiser. A diffusers `UNetMotionModel` (SD-1.5 spatial layers + AnimateDiff temporal
layers) with PortraitTalk's processors and a structure encoder.

Per spatial transformer block: identity attention (self-attention that also sees the IdentityNet
features of the same block), decoupled text/identity/audio cross-attention, then the block's temporal
attention across frames. The structure encoder's output is added right after `conv_in`.

Options for Hallo's layout (all off by default): a base stream other than text, audio modules after the
spatial transformers (`audio_module.py`), motion frames (IdentityNet features of earlier frames prepended
along time before each temporal layer, their outputs dropped), per-frame GroupNorm in the temporal layers,
and temporal layers that are loaded but skipped (Hallo's inference never runs those of down_blocks.3 and
up_blocks.0). Everything enters through hooks, never a forked UNet forward.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from functools import partial

from .attention import AttentionContext, install_processors
from .structure import StructureEncoder
from .temporal import temporal_modules, use_per_frame_norm


class AnimateNet(nn.Module):
    def __init__(self, unet: nn.Module, structure: StructureEncoder, identity_tokens: int, audio_tokens: int, *,
                 base: str = "text", streams: tuple[str, ...] = ("identity", "audio"),
                 num_tokens: tuple[int, ...] | None = None, motion_frames: int = 0, per_frame_norm: bool = False,
                 skip_temporal: tuple[str, ...] = ()):
        super().__init__()
        if num_tokens is None:
            num_tokens = (identity_tokens, audio_tokens)
        install_processors(unet, "animate", streams=streams, num_tokens=num_tokens, base=base)
        self.unet = unet
        self.structure = structure
        self.base_stream, self.streams, self.motion_frames = base, tuple(streams), int(motion_frames)
        self._structure_residual: torch.Tensor | None = None
        self._structure_weight: torch.Tensor | None = None
        self._motion: dict[str, torch.Tensor] | None = None
        self._motion_pending: dict[str, int] = {}
        # The structure residual enters through a hook rather than a forked UNet forward.
        unet.conv_in.register_forward_hook(self._add_structure)
        if per_frame_norm:
            use_per_frame_norm(unet)
        self.skip_temporal = tuple(skip_temporal)
        for name, module in temporal_modules(unet):
            if name.startswith(tuple(f"{b}." for b in self.skip_temporal)):
                module.register_forward_hook(_pass_through)
            else:
                module.register_forward_pre_hook(partial(self._prepend_motion, name), with_kwargs=True)
                module.register_forward_hook(partial(self._drop_motion, name))

    def motion_layers(self) -> dict[str, str]:
        """{temporal layer: the spatial self-attention layer whose input feeds its motion frames}: Hallo takes
        the motion-frame features of `X.motion_modules.i` from `X.attentions.i`'s first transformer block."""
        out = {}
        for name, _ in temporal_modules(self.unet):
            block, _, index = name.rpartition(".motion_modules.")
            if name.startswith(tuple(f"{b}." for b in self.skip_temporal)):
                continue
            if hasattr(self.unet.get_submodule(block), "attentions"):
                out[name] = f"{block}.attentions.{index}.transformer_blocks.0.attn1"
        return out

    def _prepend_motion(self, name, module, args, kwargs):
        feats = self._motion.get(name) if self._motion else None
        if feats is None:
            return None
        args, kwargs = list(args), dict(kwargs)
        hidden = args[0] if args else kwargs["hidden_states"]
        # diffusers passes num_frames by keyword in the down/up blocks and positionally (5th) in the mid block
        positional = "num_frames" not in kwargs and len(args) > 4
        frames = int(args[4] if positional else kwargs.get("num_frames", 1))
        batch, channels, h, w = hidden.shape[0] // frames, *hidden.shape[1:]
        count = feats.shape[1]  # feats: [batch, M, h·w, channels], tokens in row-major (h, w) order
        motion = feats.to(hidden.dtype).permute(0, 1, 3, 2).reshape(batch, count, channels, h, w)
        joined = torch.cat([motion, hidden.view(batch, frames, channels, h, w)], dim=1).view(-1, channels, h, w)
        if args:
            args[0] = joined
        else:
            kwargs["hidden_states"] = joined
        if positional:
            args[4] = frames + count
        else:
            kwargs["num_frames"] = frames + count
        self._motion_pending[name] = (batch, count)
        return tuple(args), kwargs

    def _drop_motion(self, name, module, args, output):
        pending = self._motion_pending.pop(name, None)
        if pending is None:
            return None
        batch, count = pending  # the temporal layer's outputs for the motion frames are dropped
        return output.view(batch, -1, *output.shape[1:])[:, count:].reshape(-1, *output.shape[1:])

    def _add_structure(self, module, inputs, output):
        residual = self._structure_residual
        if residual is None:
            return output
        residual = residual.to(output.dtype)
        weight = self._structure_weight
        if weight is None:
            if residual.shape[0] == output.shape[0]:
                return output + residual
            frames = residual.shape[0]  # one map per frame, shared by every batch row
            return (output.view(-1, frames, *output.shape[1:]) + residual).view(output.shape)
        batch = len(weight)  # per batch row: 0 drops the structure (Hallo's unconditional pass)
        frames = output.shape[0] // batch
        residual = residual.view(-1, frames, *residual.shape[1:]) * weight.to(output.dtype).view(-1, 1, 1, 1, 1)
        return (output.view(batch, frames, *output.shape[1:]) + residual).view(output.shape)

    @contextmanager
    def _inputs(self, residual: torch.Tensor | None, weight: torch.Tensor | None, motion: dict | None):
        self._structure_residual, self._structure_weight, self._motion = residual, weight, motion
        try:
            yield
        finally:
            self._structure_residual = self._structure_weight = self._motion = None
            self._motion_pending.clear()

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, ctx: AttentionContext,
                structure: torch.Tensor | None = None, structure_weight: torch.Tensor | None = None,
                motion_frames: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Predict noise (or v) for `latents` `[B, F, C, h, w]`.

        `text` is `[B, T, D]`: the base stream's tokens per batch row (the prompt embedding, or Hallo's identity
        tokens), shared by its frames; `ctx` carries the other streams' tokens for the `B·F` UNet rows;
        `structure` is `[F, 1, H, W]` (shared by the batch), `[B, F, 1, H, W]`, or None, and `structure_weight`
        `[B]` scales it per batch row; `motion_frames` maps temporal layers (see `motion_layers`) to features
        `[B, M, h·w, C]` prepended before them.
        """
        frames = latents.shape[1]
        residual = None
        if structure is not None:
            residual = self.structure(structure.flatten(0, structure.ndim - 4).to(latents.dtype))
        sample = latents.permute(0, 2, 1, 3, 4)  # UNetMotionModel takes [B, C, F, h, w]
        context = text.repeat_interleave(frames, dim=0)
        with self._inputs(residual, structure_weight, motion_frames):
            out = self.unet(sample, timestep, context, cross_attention_kwargs={"portraittalk": ctx}).sample
        return out.permute(0, 2, 1, 3, 4)


def _pass_through(module, args, output):
    """Hallo's inference never runs this temporal layer (its blocks take the checkpointing branch, which skips
    it): its input goes on unchanged."""
    return args[0]
