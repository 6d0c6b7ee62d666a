"""Hallo's audio modules: audio attention after each spatial transformer, as an option of AnimateNet.

An alternative to the audio stream in attn2 (config `audio.attention = "hallo_module"`). Each module is a
small transformer over a frame's tokens: self-attention, then three cross-attentions over that frame's audio
tokens whose outputs are masked by the background ("full"/pose), face and lip masks at the block's
resolution, passed through zero-initialised 1×1 convolutions and added with the pose, face and lip weights,
then a feed-forward. Parameter names follow Hallo's `audio_modules.N.*` layout, so its weights load as they
are. The modules hang on the UNet's blocks and run from a forward hook on the matching spatial transformer,
so the UNet's own forward is untouched and the order stays resnet → spatial transformer → audio module →
temporal layer.

Hallo sizes each module's inner width by a block's *input* channels (`in_channels // heads` per head), which
differs from the block's width in some layers of down_blocks.1–2 and up_blocks.1–2; `inner_widths`
reproduces that.
"""

from __future__ import annotations

from functools import partial

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn


class AudioBlock(nn.Module):
    """One transformer block: norm1/attn1 (self), norm2/attn2_0..2 (audio, masked), norm3/ff."""

    def __init__(self, dim: int, heads: int, cross_attention_dim: int):
        super().__init__()
        head_dim = dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=head_dim, bias=False)
        self.norm2 = nn.LayerNorm(dim)
        for i in range(3):  # full (pose), face, lip
            setattr(self, f"attn2_{i}", Attention(query_dim=dim, cross_attention_dim=cross_attention_dim, heads=heads,
                                                  dim_head=head_dim, bias=False))
        for region in ("full", "face", "lip"):
            conv = nn.Conv2d(dim, dim, kernel_size=1)
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
            setattr(self, f"zero_conv_{region}", conv)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")

    def forward(self, x: torch.Tensor, size: tuple[int, int], tokens: torch.Tensor | None, masks, weights) -> torch.Tensor:
        """`x` `[N, h·w, dim]`; `tokens` `[N, T, D]` or None (then only self-attention and feed-forward run);
        `masks` three `[1 or N, h·w]`; `weights` three floats."""
        x = self.attn1(self.norm1(x)) + x
        if tokens is not None:
            n, hw, dim = x.shape
            normed = self.norm2(x)
            parts = []
            for i, region in enumerate(("full", "face", "lip")):
                y = getattr(self, f"attn2_{i}")(normed, encoder_hidden_states=tokens) * masks[i].to(x.dtype)[:, :, None]
                y = getattr(self, f"zero_conv_{region}")(y.transpose(1, 2).reshape(n, dim, *size))
                parts.append(weights[i] * y.reshape(n, dim, hw).transpose(1, 2))
            x = parts[0] + parts[1] + parts[2] + x  # Hallo's order of the sum
        return self.ff(self.norm3(x)) + x


class AudioModule(nn.Module):
    """Hallo's `Transformer3DModel` with one `AudioTemporalBasicTransformerBlock`, run frame by frame:
    GroupNorm, 1×1 conv in, the block, 1×1 conv out, plus the input."""

    def __init__(self, channels: int, inner: int, heads: int, cross_attention_dim: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Conv2d(channels, inner, kernel_size=1)
        self.transformer_blocks = nn.ModuleList([AudioBlock(inner, heads, cross_attention_dim)])
        self.proj_out = nn.Conv2d(inner, channels, kernel_size=1)

    def forward(self, hidden: torch.Tensor, tokens: torch.Tensor | None, masks, weights) -> torch.Tensor:
        """`hidden` `[N, C, h, w]` (N = batch × frames), `tokens` `[N, T, D]` or None."""
        n, _, h, w = hidden.shape
        x = self.proj_in(self.norm(hidden))
        inner = x.shape[1]
        x = x.permute(0, 2, 3, 1).reshape(n, h * w, inner)
        for block in self.transformer_blocks:
            x = block(x, (h, w), tokens, masks, weights)
        x = x.reshape(n, h, w, inner).permute(0, 3, 1, 2).contiguous()
        return self.proj_out(x) + hidden


def _heads(head_dim, index: int, reverse: bool = False) -> int:
    if isinstance(head_dim, (list, tuple)):
        return int((list(reversed(head_dim)) if reverse else list(head_dim))[index])
    return int(head_dim)


def inner_widths(unet_config: dict) -> dict[str, tuple[int, list[int], int]]:
    """{block name: (channels, inner width of each of its audio modules, heads)} for every block with
    cross-attention, sized as Hallo sizes them: in a down block the first module takes the block's input
    width and the others its output width; in an up block every module takes the block's `in_channels`."""
    out_ch = list(unet_config["block_out_channels"])
    head_dim = unet_config.get("attention_head_dim", 8)
    layers = int(unet_config.get("layers_per_block", 2))
    n = len(out_ch)
    widths = {}
    for i, kind in enumerate(unet_config["down_block_types"]):
        if "CrossAttn" in kind:
            block_in = out_ch[i - 1] if i > 0 else out_ch[0]
            widths[f"down_blocks.{i}"] = (out_ch[i], [block_in] + [out_ch[i]] * (layers - 1), _heads(head_dim, i))
    widths["mid_block"] = (out_ch[-1], [out_ch[-1]], _heads(head_dim, -1))
    reversed_ch = list(reversed(out_ch))
    for i, kind in enumerate(unet_config["up_block_types"]):
        if "CrossAttn" in kind:
            block_in = reversed_ch[min(i + 1, n - 1)]
            widths[f"up_blocks.{i}"] = (reversed_ch[i], [block_in] * (layers + 1), _heads(head_dim, i, reverse=True))
    return widths


def attach_audio_modules(unet: nn.Module, unet_config: dict, cross_attention_dim: int) -> None:
    """Give each cross-attention block of a `UNetMotionModel` an `audio_modules` list (one per spatial
    transformer) and hook them onto the transformers' outputs."""
    groups = int(unet_config.get("norm_num_groups", 32))
    for name, (channels, inners, heads) in inner_widths(unet_config).items():
        block = unet.get_submodule(name)
        block.audio_modules = nn.ModuleList(
            AudioModule(channels, inner, heads, cross_attention_dim, groups) for inner in inners[:len(block.attentions)])
        for transformer, module in zip(block.attentions, block.audio_modules):
            transformer.register_forward_hook(partial(_run_audio_module, module), with_kwargs=True)


def _run_audio_module(module: AudioModule, transformer, args, kwargs, output):
    hidden = output[0] if isinstance(output, tuple) else output.sample
    ctx = (kwargs.get("cross_attention_kwargs") or {}).get("portraittalk")
    tokens, masks, weights = None, None, (1.0, 1.0, 1.0)
    if ctx is not None:
        scale = ctx.scales.audio
        if ctx.audio_tokens is not None and scale != 0:
            tokens = ctx.audio_tokens.to(hidden.dtype)
            weights = tuple(scale * w for w in ctx.region_weights)
        if tokens is not None:
            masks = region_masks(ctx.regions, hidden.shape[-2:], hidden.device)
    out = module(hidden, tokens, masks, weights)
    return (out,) + tuple(output[1:]) if isinstance(output, tuple) else type(output)(sample=out)


def region_masks(regions, size, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (full, face, lip) masks at a block's resolution, `[1, h·w]` each; all ones without regions."""
    if regions is None:
        ones = torch.ones(1, int(size[0]) * int(size[1]), device=device)
        return ones, ones, ones
    return tuple(m.to(device) for m in regions.at(int(size[0]), int(size[1])))
