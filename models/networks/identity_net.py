"""IdentityNet: a ReferenceNet-style UNet (decision, as in Animate Anyone, Hallo, EchoMimic) with
IP-Adapter-style identity tokens.

It runs once per generation, at timestep 0, on the VAE latents of the references. Its cross-attention
is decoupled (text through the base K/V, identity tokens through their own), which is where a prompt
edits the identity. Its output, IDENTITY, is the input of every spatial self-attention block plus the
identity tokens. With R references, features and tokens are concatenated along tokens, so adding a
reference adds evidence and the order of references does not matter.

With `base="identity"` (Hallo's ReferenceNet), the UNet's own cross-attention K/V take the identity tokens,
and text, when there is any, is an extra stream; an all-zero text row means no text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import AttentionContext, IdentityBank, install_processors
from ..families import identity_is_base


@dataclass
class IdentityFeatures:
    """The IDENTITY value.

    `features[layer]` is `[C, R·N, ch]` with rows `conditions` — ("text", "null") when a prompt was given,
    ("null",) otherwise — so text guidance and λ_text can reach IdentityNet's text edit. `tokens` is
    `[1, R·N_id, D]`.
    """

    features: dict[str, torch.Tensor]
    tokens: torch.Tensor
    conditions: tuple[str, ...]
    num_references: int
    null_tokens: torch.Tensor | None = None  # tokens of a zero embedding: Hallo's unconditional identity
    latents: torch.Tensor | None = None  # the reference latents `[R, C, h, w]`, for motion frames
    regions: object | None = None  # RegionMasks from the reference (Hallo's audio masks and face box)
    null_identity: dict[str, torch.Tensor] | None = None  # [1, R·N, ch]: the references under `null_tokens`

    def bank(self, text_scale: float, with_null_identity: bool = False) -> IdentityBank:
        """Rows (text, null) for the sampler, with IdentityNet's text edit scaled by λ_text:
        features(λ) = null + λ·(text − null). λ = 1 is the prompt, λ = 0 no text at all.
        `with_null_identity` appends the row of the references under the zero face embedding, as last row
        (Hallo's guided batch reads it, see `sampling.bank_rows`)."""
        if "text" not in self.conditions:
            rows = {k: v[:1] for k, v in self.features.items()}
        else:
            t, n = self.conditions.index("text"), self.conditions.index("null")
            rows = {}
            for layer, feats in self.features.items():
                text, null = feats[t: t + 1], feats[n: n + 1]
                edited = text if text_scale == 1 else null + text_scale * (text - null)
                rows[layer] = torch.cat([edited, null])
        if with_null_identity:
            if self.null_identity is None:
                raise ValueError("these identity features have no zero-embedding row (not a Hallo-layout model)")
            rows = {k: torch.cat([v, self.null_identity[k]]) for k, v in rows.items()}
        return IdentityBank(rows)

    def to(self, device=None, dtype=None) -> IdentityFeatures:
        move = lambda x: None if x is None else x.to(device=device, dtype=dtype)  # noqa: E731
        null_identity = None if self.null_identity is None else {k: move(v) for k, v in self.null_identity.items()}
        return IdentityFeatures({k: move(v) for k, v in self.features.items()}, move(self.tokens),
                                self.conditions, self.num_references, move(self.null_tokens), move(self.latents),
                                self.regions, null_identity)


class IdentityNet(nn.Module):
    def __init__(self, unet: nn.Module, identity_tokens: int, *, base: str = "text",
                 streams: tuple[str, ...] = ("identity",), num_tokens: tuple[int, ...] | None = None):
        super().__init__()
        # Only the self-attention inputs are used: drop the output head, as Hallo's ReferenceNet does.
        unet.conv_norm_out, unet.conv_act, unet.conv_out = None, None, nn.Identity()
        install_processors(unet, "identity", streams=streams, num_tokens=num_tokens or (identity_tokens,), base=base)
        self.unet = unet
        self.base_stream = base
        self.identity_is_base = identity_is_base(base)  # Hallo's ReferenceNet: see the module's docstring

    def forward(self, reference_latents: torch.Tensor, text: torch.Tensor | None,
                identity_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """`reference_latents` `[R, C, h, w]`, `text` `[Ct, T, D]`, tokens `[1, N, D]` → `[Ct, R·hw, ch]` per layer:
        every reference under every text condition, references concatenated along tokens."""
        refs = reference_latents.shape[0]
        if self.identity_is_base:  # one pass per text condition, so "no text" is computed exactly as without
            conds = [None] if text is None else [t[None] if t.any() else None for t in text]
            passes = [self.rows(reference_latents, None if t is None else t.expand(refs, -1, -1), identity_tokens)
                      for t in conds]
            return {layer: torch.stack([f[layer].reshape(refs * f[layer].shape[1], -1) for f in passes])
                    for layer in passes[0]}
        conds = text.shape[0]
        sample = reference_latents.repeat(conds, 1, 1, 1)  # condition-major, then reference
        features = self.rows(sample, text.repeat_interleave(refs, dim=0), identity_tokens)
        return {layer: h.reshape(conds, refs * h.shape[1], h.shape[2]) for layer, h in features.items()}

    def rows(self, latents: torch.Tensor, text: torch.Tensor | None, identity_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """One independent IdentityNet pass per row: `latents` `[B, C, h, w]`, `text` `[B, T, D]`, tokens
        `[1 or B, N, D]` → `[B, hw, ch]` per self-attention layer."""
        record: dict[str, torch.Tensor] = {}
        timestep = torch.zeros(latents.shape[0], device=latents.device)
        if self.identity_is_base:
            ctx = AttentionContext(text_tokens=text, record=record)
            context = identity_tokens.expand(latents.shape[0], -1, -1) if identity_tokens.shape[0] == 1 else identity_tokens
        else:
            ctx = AttentionContext(identity_tokens=identity_tokens, record=record)
            context = text
        self.unet(latents, timestep, context, cross_attention_kwargs={"portraittalk": ctx})
        return record
