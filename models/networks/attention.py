"""PortraitTalk's attention processors, on diffusers' `Attention` modules.

Three processors, installed by `install_processors`:
- `IdentityRecordingProcessor` (IdentityNet self-attention): plain self-attention that also records its
  input, the per-block identity features.
- `IdentityAttnProcessor` (AnimateNet self-attention): keys and values are the frame's own tokens plus
  the IdentityNet features of the same block ("identity attention").
- `DecoupledCrossAttnProcessor` (cross-attention in both nets): an `IPAdapterAttnProcessor2_0` whose
  extra streams are identity tokens and per-frame audio tokens, plus a scale on the text stream:
  `out = λ_txt·Attn(q, K_txt, V_txt) + λ_id·Attn(q, K_id, V_id) + λ_a·Attn(q, K_a, V_a)`.
  The stream that uses the layer's own K/V (the "base", text by default) is configurable: Hallo's attn2
  context is the face embedding, so there the base is identity and text is an extra stream.

Everything a call needs (scales, tokens, identity features) travels in an `AttentionContext`, passed as
`cross_attention_kwargs={"portraittalk": ctx}`. Processors hold weights but no per-call state, so one
loaded model serves any number of differently conditioned generations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, IPAdapterAttnProcessor2_0

STREAMS = ("identity", "audio")


@dataclass(frozen=True)
class StreamScales:
    """The λs. A scale of 0 removes its stream's influence entirely."""

    text: float = 1.0
    identity: float = 1.0
    audio: float = 1.0

    def __getitem__(self, stream: str) -> float:
        return float(getattr(self, stream))


@dataclass
class IdentityBank:
    """IdentityNet features per self-attention layer, for AnimateNet's identity attention.

    `features[layer]` is `[C, N_ref, ch]`: one row per text condition (the prompt, and the empty prompt when
    text guidance needs it), with all references concatenated along tokens.
    """

    features: dict[str, torch.Tensor]
    _kv: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)

    def keys_values(self, layer: str, attn: Attention) -> tuple[torch.Tensor, torch.Tensor]:
        """Project the layer's features with its K/V weights; cached, because they never change while
        sampling (only when no gradient is being taken)."""
        cached = self._kv.get(layer)
        if cached is not None:
            return cached
        feats = self.features[layer]
        kv = (attn.to_k(feats), attn.to_v(feats))
        if not torch.is_grad_enabled():
            self._kv[layer] = kv
        return kv


@dataclass
class AttentionContext:
    """Per-call inputs of the PortraitTalk processors.

    Row-aligned tensors have one row per UNet batch row (AnimateNet: pass-major, then frame). Identity
    tokens may have a single row, shared by all. `condition_rows[b]` picks the IdentityBank row for UNet row b;
    a negative row attends to its own tokens only (Hallo's unconditional pass).
    """

    scales: StreamScales = StreamScales()
    identity_tokens: torch.Tensor | None = None  # [1 or B, N_id, D]
    audio_tokens: torch.Tensor | None = None  # [B, N_a, D]
    bank: IdentityBank | None = None
    condition_rows: torch.Tensor | None = None  # [B] long
    record: dict[str, torch.Tensor] | None = None  # IdentityNet writes its self-attention inputs here
    text_tokens: torch.Tensor | None = None  # [1 or B, T, D]: text as an extra stream (base = identity)
    regions: object | None = None  # RegionMasks for Hallo's audio modules
    region_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # Hallo's pose, face and lip weights

    def tokens(self, stream: str) -> torch.Tensor | None:
        return {"identity": self.identity_tokens, "audio": self.audio_tokens, "text": self.text_tokens}[stream]


def _attend(attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
            bias: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head SDPA on projected `[B, N, inner]` tensors; returns `[B, Nq, inner]`."""
    batch, heads = query.shape[0], attn.heads
    head_dim = query.shape[-1] // heads
    q = query.view(batch, -1, heads, head_dim).transpose(1, 2)
    k = key.view(key.shape[0], -1, heads, head_dim).transpose(1, 2)
    v = value.view(value.shape[0], -1, heads, head_dim).transpose(1, 2)
    if k.shape[0] != batch:  # one shared row of tokens for the whole batch
        k, v = k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return out.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)


class _Processor:
    """Shared plumbing of diffusers' attention processors (input reshape, norms, output projection)."""

    def _enter(self, attn: Attention, hidden_states: torch.Tensor, temb: torch.Tensor | None):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        shape = hidden_states.shape
        if hidden_states.ndim == 4:
            hidden_states = hidden_states.view(shape[0], shape[1], -1).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        return hidden_states, residual, shape

    def _leave(self, attn: Attention, out: torch.Tensor, residual: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        out = attn.to_out[1](attn.to_out[0](out))
        if len(shape) == 4:
            out = out.transpose(-1, -2).reshape(shape)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class IdentityRecordingProcessor(AttnProcessor2_0):
    """IdentityNet self-attention: unchanged math, but records its input as the layer's identity feature."""

    def __init__(self, layer: str):
        super().__init__()
        self.layer = layer

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, portraittalk: AttentionContext | None = None, **kwargs):
        if portraittalk is not None and portraittalk.record is not None:
            portraittalk.record[self.layer] = hidden_states
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class IdentityAttnProcessor(_Processor):
    """AnimateNet self-attention over the frame's own tokens and the IdentityNet tokens of the same block.

    λ_identity multiplies the attention mass that the identity tokens receive (a log-λ bias on their
    logits): 1 is plain concatenation, 0 removes them exactly.
    """

    def __init__(self, layer: str):
        self.layer = layer

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, portraittalk: AttentionContext | None = None, **kwargs):
        hidden_states, residual, shape = self._enter(attn, hidden_states, temb)
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        bias = None
        ctx = portraittalk
        scale = ctx.scales.identity if ctx is not None else 0.0
        if ctx is not None and ctx.bank is not None and scale > 0 and self.layer in ctx.bank.features:
            ref_k, ref_v = ctx.bank.keys_values(self.layer, attn)
            rows = ctx.condition_rows
            if rows is None:
                rows = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
            n_self = key.shape[1]
            key = torch.cat([key, ref_k[rows.clamp(min=0)]], dim=1)
            value = torch.cat([value, ref_v[rows.clamp(min=0)]], dim=1)
            if scale != 1.0:
                bias = torch.zeros(key.shape[1], dtype=query.dtype, device=query.device)
                bias[n_self:] = math.log(scale)
            off = rows < 0
            if off.any():  # those rows see their own tokens only: the bank's logits are -inf
                row_bias = torch.zeros(query.shape[0], 1, 1, key.shape[1], dtype=query.dtype, device=query.device)
                if bias is not None:
                    row_bias = row_bias + bias
                row_bias[off, :, :, n_self:] = float("-inf")
                bias = row_bias
        out = _attend(attn, query, key, value, bias)
        return self._leave(attn, out, residual, shape)


class DecoupledCrossAttnProcessor(IPAdapterAttnProcessor2_0, _Processor):
    """Decoupled cross-attention: the base stream (`encoder_hidden_states`; text unless `base` says otherwise)
    through the layer's own K/V, each extra stream through its own.

    It keeps IP-Adapter's parameter layout (`to_k_ip[i]`, `to_v_ip[i]`, one pair per stream, no bias), so
    IP-Adapter weights can initialise the identity stream. New streams start with a zero V projection, so
    a fresh stream leaves the base UNet's output unchanged.
    """

    def __init__(self, hidden_size: int, cross_attention_dim: int, streams: tuple[str, ...] = STREAMS,
                 num_tokens: tuple[int, ...] | None = None, base: str = "text"):
        num_tokens = tuple(num_tokens or (4,) * len(streams))
        super().__init__(hidden_size, cross_attention_dim, num_tokens=num_tokens, scale=1.0)
        self.streams = tuple(streams)
        self.base = base
        for to_v in self.to_v_ip:
            torch.nn.init.zeros_(to_v.weight)

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, portraittalk: AttentionContext | None = None, **kwargs):
        hidden_states, residual, shape = self._enter(attn, hidden_states, temb)
        query = attn.to_q(hidden_states)
        ctx = portraittalk
        scales = ctx.scales if ctx is not None else StreamScales()
        out = torch.zeros_like(query)
        if encoder_hidden_states is not None and scales[self.base] != 0:
            context = encoder_hidden_states
            if attn.norm_cross:
                context = attn.norm_encoder_hidden_states(context)
            out = out + scales[self.base] * _attend(attn, query, attn.to_k(context), attn.to_v(context))
        if ctx is not None:
            for to_k, to_v, stream in zip(self.to_k_ip, self.to_v_ip, self.streams):
                tokens, scale = ctx.tokens(stream), scales[stream]
                if tokens is None or scale == 0:
                    continue
                tokens = tokens.to(query.dtype)
                out = out + scale * _attend(attn, query, to_k(tokens), to_v(tokens))
        return self._leave(attn, out, residual, shape)


def install_processors(unet: torch.nn.Module, role: str, streams: tuple[str, ...], num_tokens: tuple[int, ...],
                       base: str = "text") -> None:
    """Install PortraitTalk processors on a diffusers UNet's spatial transformer blocks.

    `role` is "identity" (IdentityNet: recording self-attention) or "animate" (AnimateNet: identity
    attention). Temporal (motion-module) attention keeps its stock processor.
    """
    if role not in ("identity", "animate"):
        raise ValueError(f"role must be 'identity' or 'animate', not {role!r}")
    processors = {}
    for name, processor in unet.attn_processors.items():
        layer = name[: -len(".processor")]
        module = unet.get_submodule(layer)
        if ".motion_modules." in name:
            processors[name] = processor
        elif layer.endswith("attn1"):
            processors[name] = IdentityRecordingProcessor(layer) if role == "identity" else IdentityAttnProcessor(layer)
        elif layer.endswith("attn2"):
            processors[name] = DecoupledCrossAttnProcessor(module.inner_dim, module.cross_attention_dim, streams, num_tokens,
                                                           base)
        else:
            processors[name] = processor
    unet.set_attn_processor(processors)


def self_attention_layers(unet: torch.nn.Module) -> list[str]:
    """Names of the spatial self-attention layers, which carry identity features (same in both nets)."""
    return [name[: -len(".processor")] for name in unet.attn_processors
            if name.endswith("attn1.processor") and ".motion_modules." not in name]
