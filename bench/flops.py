"""Analytic FLOP count of PortraitTalk's networks, from the model config alone.

One **denoiser pass** is AnimateNet (a diffusers `UNetMotionModel` with PortraitTalk's processors) on
one context window: `frames` latent frames of `h×w`, for one guidance pass. A sampler call runs all
guidance passes of a window as one batch, so a call costs `passes ×` that.

Convention (the same as `torch.utils.flop_counter.FlopCounterMode`): a multiply-add is 2 FLOPs, and
only matrix products are counted — convolutions, linear layers and attention (`QKᵀ` and `AV`, each
`2·B·Nq·Nk·d`). Normalisations, activations, softmax, additions and the attention bias are left out
(well under 1% here). What the count follows, block by block, as diffusers builds the UNet:

- ResNet blocks: two 3×3 convolutions, the 1×1 shortcut where channels change, the time projection;
  down- and up-sampling convolutions; `conv_in` / `conv_out`; the time-embedding MLP.
- Spatial transformer blocks (per frame): `proj_in`/`proj_out`; **identity attention** — self-attention
  whose keys are the frame's `h·w` tokens plus IdentityNet's tokens of the same block (`R·h_ref·w_ref`,
  R references; their K/V are projected once per generation and not counted per pass); **decoupled
  cross-attention** — text (`T` tokens, K/V projected for every frame row, as the processor does),
  identity tokens (`R·N_id`, one shared row, projected once per call), audio tokens (`N_a` per frame);
  the GEGLU feed-forward (`c → 8c → 4c → c`).
- Temporal (motion) modules: `proj_in`/`proj_out` and two self-attentions across the `frames` of each
  spatial position, plus their feed-forward.
- The structure encoder (when a structure map is given): its convolutions at image resolution.

`denoiser_flops(config, latent_size, frames, passes)` returns a `FlopCount` (total and per part);
`identity_net_flops` counts the one IdentityNet run of a generation. `count_flops` runs a callable under
`FlopCounterMode` (with the CPU flash-attention kernel registered, which PyTorch's table lacks) for
cross-checks; tests/bench/test_benchmark.py checks that the two agree on the tiny config.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

PARTS = ("conv", "time", "spatial_linear", "self_attention", "identity_attention", "cross_text", "cross_identity",
         "cross_audio", "feed_forward", "temporal", "structure")


@dataclass
class FlopCount:
    """FLOPs of one network call, split by part (see `PARTS`)."""

    parts: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    ops: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # conv / linear / attention
    frames: int = 1
    passes: int = 1

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    @property
    def per_frame_pass(self) -> float:
        """FLOPs of one frame in one guidance pass (the unit the sampler's figures use)."""
        return self.total / max(1, self.frames * self.passes)

    def add(self, part: str, flops: float, op: str) -> None:
        self.parts[part] += float(flops)
        self.ops[op] += float(flops)

    def as_dict(self) -> dict:
        return {"total": self.total, "per_frame_pass": self.per_frame_pass, "frames": self.frames,
                "passes": self.passes, "parts": {k: float(v) for k, v in self.parts.items() if v},
                "ops": {k: float(v) for k, v in self.ops.items() if v}}


# ------------------------------------------------------------------------------------------ primitives


def _linear(tokens: float, c_in: int, c_out: int) -> float:
    return 2.0 * tokens * c_in * c_out


def _conv(rows: float, h: int, w: int, c_in: int, c_out: int, k: int) -> float:
    """A k×k convolution whose *output* is `h×w`."""
    return 2.0 * rows * h * w * c_in * c_out * k * k


def _attention(batch: float, n_q: int, n_k: int, inner: int) -> float:
    """`QKᵀ` and `AV` of multi-head attention (the head split does not change the count)."""
    return 4.0 * batch * n_q * n_k * inner


def _per_block(value, blocks: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * blocks


@dataclass(frozen=True)
class _Streams:
    """What a spatial transformer block attends to."""

    text_tokens: int = 0  # T, per row (0: text stream off)
    text_dim: int = 0
    identity_tokens: int = 0  # R·N_id, one shared row per call (0: off)
    audio_tokens: int = 0  # N_a per row (0: off)
    reference_tokens: dict = field(default_factory=dict)  # (h, w) → R·h·w extra self-attention keys
    linear_projection: bool = False  # the config's use_linear_projection


def _transformer(count: FlopCount, c: int, h: int, w: int, rows: float, layers: int, s: _Streams) -> None:
    tokens = rows * h * w
    linear_projection = s.linear_projection
    for _ in range(layers):
        # proj_in, proj_out: 1×1 convolutions in SD-1.5 (use_linear_projection=False), linear otherwise
        count.add("spatial_linear", 2 * _linear(tokens, c, c), "linear" if linear_projection else "conv")
        count.add("spatial_linear", 4 * _linear(tokens, c, c), "linear")  # attn1 q, k, v, out
        count.add("self_attention", _attention(rows, h * w, h * w, c), "attention")
        extra = s.reference_tokens.get((h, w), 0)
        if extra:
            count.add("identity_attention", _attention(rows, h * w, extra, c), "attention")
        count.add("spatial_linear", 2 * _linear(tokens, c, c), "linear")  # attn2 q, out
        if s.text_tokens:
            count.add("cross_text", 2 * _linear(rows * s.text_tokens, s.text_dim, c), "linear")
            count.add("cross_text", _attention(rows, h * w, s.text_tokens, c), "attention")
        if s.identity_tokens:
            count.add("cross_identity", 2 * _linear(s.identity_tokens, s.text_dim, c), "linear")
            count.add("cross_identity", _attention(rows, h * w, s.identity_tokens, c), "attention")
        if s.audio_tokens:
            count.add("cross_audio", 2 * _linear(rows * s.audio_tokens, s.text_dim, c), "linear")
            count.add("cross_audio", _attention(rows, h * w, s.audio_tokens, c), "attention")
        count.add("feed_forward", _linear(tokens, c, 8 * c) + _linear(tokens, 4 * c, c), "linear")


def _temporal(count: FlopCount, c: int, h: int, w: int, rows: float, frames: int, layers: int) -> None:
    """An AnimateDiff motion module: attention across frames at every spatial position."""
    if not frames:
        return
    tokens = rows * h * w
    sequences = rows / frames * h * w
    for _ in range(layers):
        count.add("temporal", 2 * _linear(tokens, c, c), "linear")  # proj_in, proj_out
        for _attn in range(2):  # two temporal self-attentions
            count.add("temporal", 4 * _linear(tokens, c, c), "linear")
            count.add("temporal", _attention(sequences, frames, frames, c), "attention")
        count.add("temporal", _linear(tokens, c, 8 * c) + _linear(tokens, 4 * c, c), "linear")


def _resnet(count: FlopCount, c_in: int, c_out: int, h: int, w: int, rows: float, temb: int) -> None:
    count.add("conv", _conv(rows, h, w, c_in, c_out, 3) + _conv(rows, h, w, c_out, c_out, 3), "conv")
    if c_in != c_out:
        count.add("conv", _conv(rows, h, w, c_in, c_out, 1), "conv")
    count.add("time", _linear(rows, temb, c_out), "linear")


def _unet(count: FlopCount, unet: dict, h: int, w: int, rows: float, batch: float, streams: _Streams, *,
          frames: int = 0, motion: dict | None = None, head: bool = True) -> None:
    """A diffusers SD-style UNet (`UNet2DConditionModel` layout, plus motion modules when `frames`)."""
    channels = list(unet["block_out_channels"])
    blocks = len(channels)
    layers = _per_block(unet.get("layers_per_block", 2), blocks)
    t_layers = _per_block(unet.get("transformer_layers_per_block", 1), blocks)
    down, up = list(unet["down_block_types"]), list(unet["up_block_types"])
    motion = motion or {}
    m_layers = _per_block(motion.get("motion_transformer_layers_per_block", 1), blocks)
    m_mid = int(motion.get("motion_transformer_layers_per_mid_block", 1)) if isinstance(
        motion.get("motion_transformer_layers_per_mid_block", 1), int) else 1
    temb = channels[0] * 4
    c_in = int(unet.get("in_channels", 4))
    count.add("time", _linear(batch, channels[0], temb) + _linear(batch, temb, temb), "linear")
    count.add("conv", _conv(rows, h, w, c_in, channels[0], 3), "conv")
    skips = [channels[0]]
    size, prev = (h, w), channels[0]
    sizes = []
    for i, (kind, c) in enumerate(zip(down, channels)):
        sizes.append(size)
        for j in range(layers[i]):
            _resnet(count, prev if j == 0 else c, c, *size, rows, temb)
            if "CrossAttn" in kind:
                _transformer(count, c, *size, rows, t_layers[i], streams)
            _temporal(count, c, *size, rows, frames, m_layers[i])
            skips.append(c)
        prev = c
        if i < blocks - 1:
            size = ((size[0] + 1) // 2, (size[1] + 1) // 2)
            count.add("conv", _conv(rows, *size, c, c, 3), "conv")
            skips.append(c)
    mid = unet.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid is not None:
        c = channels[-1]
        _resnet(count, c, c, *size, rows, temb)
        _transformer(count, c, *size, rows, t_layers[-1], streams)
        if frames and motion.get("use_motion_mid_block", True):
            _temporal(count, c, *size, rows, frames, m_mid)
        _resnet(count, c, c, *size, rows, temb)
    reversed_channels = channels[::-1]
    reversed_layers, reversed_t = layers[::-1], t_layers[::-1]
    reversed_m = m_layers[::-1]
    prev = reversed_channels[0]
    for i, (kind, c) in enumerate(zip(up, reversed_channels)):
        size = sizes[blocks - 1 - i]
        for j in range(reversed_layers[i] + 1):
            skip = skips.pop()
            _resnet(count, (prev if j == 0 else c) + skip, c, *size, rows, temb)
            if "CrossAttn" in kind:
                _transformer(count, c, *size, rows, reversed_t[i], streams)
            _temporal(count, c, *size, rows, frames, reversed_m[i])
        prev = c
        if i < blocks - 1:
            up_size = sizes[blocks - 2 - i]
            count.add("conv", _conv(rows, *up_size, c, c, 3), "conv")
    if head:
        count.add("conv", _conv(rows, h, w, channels[0], int(unet.get("out_channels", 4)), 3), "conv")


def _latent_hw(config: dict, latent_size) -> tuple[int, int]:
    from ..models.config import codec_factor

    if latent_size is None:
        side = int(config["video"]["size"]) // codec_factor(config)
        return side, side
    if isinstance(latent_size, int):
        return latent_size, latent_size
    return int(latent_size[0]), int(latent_size[1])


def _block_sizes(unet: dict, h: int, w: int) -> list[tuple[int, int]]:
    sizes, size = [], (h, w)
    for _ in unet["block_out_channels"]:
        sizes.append(size)
        size = ((size[0] + 1) // 2, (size[1] + 1) // 2)
    return sizes


def denoiser_flops(config: dict, latent_size=None, frames: int = 16, passes: int = 1, *, references: int = 1,
                   reference_latent_size=None, text: bool = True, identity: bool = True, audio: bool = True,
                   structure: bool = False) -> FlopCount:
    """FLOPs of one AnimateNet call on `frames` frames of latent `latent_size` (int or (h, w); default:
    the config's video size) for `passes` guidance passes batched together.

    `identity` (λ_identity ≠ 0 and an IDENTITY bound) adds identity attention and the identity-token
    stream; `audio` the audio stream (which runs on every pass once any pass has audio); `text` the text
    stream (λ_text ≠ 0); `structure` the structure encoder.
    """
    unet = config["unet"]
    h, w = _latent_hw(config, latent_size)
    rh, rw = _latent_hw(config, reference_latent_size) if reference_latent_size is not None else (h, w)
    dim = int(unet["cross_attention_dim"])
    ref_tokens = {}
    if identity:
        ref_tokens = {size: references * rs[0] * rs[1] for size, rs in zip(_block_sizes(unet, h, w),
                                                                         _block_sizes(unet, rh, rw))}
    streams = _Streams(text_tokens=int(config["text"]["max_length"]) if text else 0, text_dim=dim,
                       identity_tokens=references * int(config["identity"]["tokens"]) if identity else 0,
                       audio_tokens=int(config["audio"]["tokens"]) if audio else 0, reference_tokens=ref_tokens,
                       linear_projection=bool(unet.get("use_linear_projection", False)))
    count = FlopCount(frames=frames, passes=passes)
    rows = passes * frames
    _unet(count, unet, h, w, rows, passes, streams, frames=frames, motion=config["motion"])
    if structure:
        _structure(count, config, h, w, frames)
    return count


def _structure(count: FlopCount, config: dict, h: int, w: int, frames: int) -> None:
    from ..models.config import codec_factor

    s = config["structure"]
    channels = list(s["channels"])
    size = (h * codec_factor(config), w * codec_factor(config))
    count.add("structure", _conv(frames, *size, int(s["in_channels"]), channels[0], 3), "conv")
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        count.add("structure", _conv(frames, *size, c_in, c_in, 3), "conv")
        size = ((size[0] + 1) // 2, (size[1] + 1) // 2)
        count.add("structure", _conv(frames, *size, c_in, c_out, 3), "conv")
    count.add("structure", _conv(frames, *size, channels[-1], int(config["unet"]["block_out_channels"][0]), 3),
              "conv")


def identity_net_flops(config: dict, latent_size=None, *, references: int = 1, conditions: int = 1) -> FlopCount:
    """FLOPs of the one IdentityNet run of a generation: `references × conditions` rows (conditions: 2
    with a prompt, 1 without), without the removed output head."""
    unet = config["unet"]
    h, w = _latent_hw(config, latent_size)
    dim = int(unet["cross_attention_dim"])
    streams = _Streams(text_tokens=int(config["text"]["max_length"]), text_dim=dim,
                       identity_tokens=references * int(config["identity"]["tokens"]),
                       linear_projection=bool(unet.get("use_linear_projection", False)))
    rows = references * conditions
    count = FlopCount(frames=rows, passes=1)
    _unet(count, unet, h, w, rows, rows, streams, head=False)
    return count


def identity_kv_flops(config: dict, latent_size=None, *, references: int = 1, conditions: int = 1) -> float:
    """FLOPs of projecting IdentityNet's features with AnimateNet's self-attention K/V: once per
    generation (per λ_text), cached for every later call."""
    unet = config["unet"]
    h, w = _latent_hw(config, latent_size)
    channels = list(unet["block_out_channels"])
    layers = _per_block(unet.get("layers_per_block", 2), len(channels))
    t_layers = _per_block(unet.get("transformer_layers_per_block", 1), len(channels))
    total = 0.0
    sizes = _block_sizes(unet, h, w)
    for kind, c, (bh, bw), n, t in zip(unet["down_block_types"], channels, sizes, layers, t_layers):
        if "CrossAttn" in kind:
            total += n * t * 2 * _linear(conditions * references * bh * bw, c, c)
    total += t_layers[-1] * 2 * _linear(conditions * references * sizes[-1][0] * sizes[-1][1], channels[-1],
                                        channels[-1])
    for kind, c, (bh, bw), n, t in zip(unet["up_block_types"], channels[::-1], sizes[::-1], layers[::-1],
                                       t_layers[::-1]):
        if "CrossAttn" in kind:
            total += (n + 1) * t * 2 * _linear(conditions * references * bh * bw, c, c)
    return total


# ------------------------------------------------------------------------------------------ measurement


def count_flops(fn, *args, **kwargs) -> tuple[float, object]:
    """Run `fn(*args, **kwargs)` under `FlopCounterMode`; returns (FLOPs, fn's result).

    PyTorch's FLOP table has no entry for the CPU flash-attention kernel that SDPA uses on the CPU; it
    is registered here with the same formula as the GPU kernels, so CPU counts include attention.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def sdpa(query, key, value, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query, key, value)

    aten = torch.ops.aten
    custom = {}
    for name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"):
        op = getattr(aten, name, None)
        if op is not None and op not in FlopCounterMode().flop_registry:
            custom[op] = sdpa
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        result = fn(*args, **kwargs)
    return float(counter.get_total_flops()), result


__all__ = ["FlopCount", "PARTS", "denoiser_flops", "identity_net_flops", "identity_kv_flops", "count_flops"]
