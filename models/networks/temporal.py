"""Temporal attention: diffusers' AnimateDiff support (`MotionAdapter`, `UNetMotionModel`), reused as is.

AnimateNet is a `UNetMotionModel` built from the backbone's `UNet2DConditionModel` config and a
`MotionAdapter` config; its spatial layers keep the 2D UNet's names, so SD-1.5 weights load unchanged,
and AnimateDiff v2 motion modules load through diffusers' own key conversion. What PortraitTalk adds is
the zero-initialised output (AnimateDiff's `zero_initialize`), which diffusers does not apply to a
freshly built model.
"""

from __future__ import annotations

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel


def build_motion_unet(unet_config: dict, motion_config: dict) -> UNetMotionModel:
    """A randomly initialised UNetMotionModel whose temporal layers output zero."""
    with torch.device("meta"):  # only the configs are needed from these two
        unet2d = UNet2DConditionModel.from_config(unet_config)
        adapter = MotionAdapter.from_config(
            {"block_out_channels": unet2d.config.block_out_channels,
             "motion_layers_per_block": unet2d.config.layers_per_block, **motion_config})
    unet = UNetMotionModel.from_unet2d(unet2d, adapter, load_weights=False)
    groups = motion_config.get("motion_norm_num_groups")
    if groups is not None:  # diffusers gives the motion modules the UNet's group count, not the adapter's
        for _, module in temporal_modules(unet):
            module.norm.num_groups = int(groups)  # the affine parameters are per channel: unchanged
    zero_init_temporal_outputs(unet)
    return unet


def temporal_modules(unet: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(name, module) for name, module in unet.named_modules() if name.split(".")[-2:-1] == ["motion_modules"]]


def zero_init_temporal_outputs(unet: torch.nn.Module) -> None:
    """Zero every motion module's output projection: the module then passes its input through."""
    for _, module in temporal_modules(unet):
        torch.nn.init.zeros_(module.proj_out.weight)
        torch.nn.init.zeros_(module.proj_out.bias)


def is_temporal_key(key: str) -> bool:
    return ".motion_modules." in key


def animatediff_to_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original AnimateDiff v1/v2 motion-module keys → `UNetMotionModel` keys (diffusers' own mapping).

    The sinusoidal `pos_encoder.pe` buffers are dropped; the model recomputes the same values.
    """
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    motion = {k: v for k, v in state_dict.items() if "motion_modules." in k}
    if not motion:
        raise ValueError("no AnimateDiff motion-module keys (…motion_modules.N.temporal_transformer…) found")
    return convert_animatediff_checkpoint_to_diffusers(motion)


class PerFrameGroupNorm(torch.nn.GroupNorm):
    """GroupNorm whose statistics are taken per frame, as in the original AnimateDiff motion module and in
    Hallo (diffusers' `AnimateDiffTransformer3D` normalises its `[b, c, f, h, w]` input across frames).
    Same parameters, so weights load unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            return super().forward(x)
        b, c, f, h, w = x.shape
        y = super().forward(x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w))
        return y.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


def use_per_frame_norm(unet: torch.nn.Module) -> None:
    """Swap every motion module's GroupNorm for a per-frame one, keeping its parameters."""
    for _, module in temporal_modules(unet):
        old = module.norm
        new = PerFrameGroupNorm(old.num_groups, old.num_channels, eps=old.eps, affine=old.affine, device="meta")
        new.weight, new.bias = old.weight, old.bias
        module.norm = new
