"""The training objective: what one batch costs, for either stage (the rows loss, stages and dropout of
docs/architecture.md, "Decisions beyond what the paper states").

- Noise (v) prediction MSE, weighted up inside the face and lip masks.
- The mask reconstruction loss (decision, MAE-style): on some rows, a random ~30% of the target latent's
  2×2 patches are replaced by fresh noise at the input, and the prediction there gets its own loss, so the
  network must complete the face from the reference and the rest of the frame.
- Condition dropout: text and audio per row, identity and structure per batch, so guidance has its
  unconditional branches.

Distributed training (DDP) needs every trainable parameter in the graph of every step. A dropped stream
therefore still runs, and its output is multiplied by 0 (audio tokens, identity tokens, the structure
residual) or masked out of attention (IdentityNet features): its parameters get a zero gradient instead of
none, and the forward is the same as without the stream. The few IdentityNet parameters that can never
reach the loss (the last block, after the input of its self-attention: that input is IdentityNet's last
feature) are frozen.

Full-size families keep their pretrained parts (CLIP text and vision, the VAE) frozen. A stage with
`"train": "text_stream"` trains only the text stream's K/V (the `hallo_text` recipe: Hallo stays as it is
and gains PortraitTalk's text control). In Hallo's layout the face embedding is the base stream (the
layers' own K/V), text is an extra stream whose "no text" is zeros, and audio goes through Hallo's audio
modules with its region masks, made here from the batch's face and lip masks.

The loss is a mean over rows of per-row terms, and every random draw is made for the global batch
(`Batch.global_rows`) with this rank's rows taken from it. So the gradient that DDP averages over ranks
equals the one-process gradient of the same global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.networks.attention import AttentionContext, IdentityBank
from ..models.config import attention_streams, structure_reads_reference
from ..models.families import family_of
from ..models.networks.structure import with_reference
from ..models.networks.temporal import is_temporal_key
from .data import Batch

STAGES = (1, 2)
PRETRAINED = ("text_encoder", "image_encoder", "codec")  # frozen where the family's are pretrained (not tiny's own)
TRAINS = ("stage", "text_stream")  # a stage trains what its stage number says, or only the text stream's K/V


@dataclass
class LossConfig:
    face_weight: float = 2.0
    lip_weight: float = 6.0
    mask_ratio: float = 0.3
    mask_probability: float = 0.5
    mask_loss_weight: float = 0.5
    audio_dropout: float = 0.1
    identity_dropout: float = 0.05
    structure_dropout: float = 0.5


def stage_trainable(name: str, stage: int) -> bool:
    """Stage 1 trains everything spatial; stage 2 the temporal layers, the audio projection and the audio
    attention stream (index 1 of the decoupled processors), with the spatial layers frozen."""
    if stage == 1:
        return not is_temporal_key(name)
    audio_stream = name.startswith("animate_net.") and (".to_k_ip.1." in name or ".to_v_ip.1." in name)
    return is_temporal_key(name) or name.startswith("audio_proj.") or audio_stream


class PortraitTalkObjective(nn.Module):
    """Wraps a model's components; `forward(batch)` returns the loss and its parts."""

    def __init__(self, components, loss: LossConfig, stage: int = 1):
        super().__init__()
        from diffusers import DDPMScheduler

        self.config = components.config
        for name, module in components.modules().items():
            setattr(self, name, module)
        self.noise_schedule = DDPMScheduler.from_config(self.config["scheduler"])
        self.loss_config = loss
        self.set_stage(stage)

    def set_stage(self, stage: int, train: str = "stage") -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be 1 or 2, not {stage}")
        if train not in TRAINS:
            raise ValueError(f"a stage's 'train' must be one of {TRAINS}, not {train!r}")
        self.stage = stage
        dead = self.dead_parameter_names()
        frozen = PRETRAINED if family_of(self.config).pretrained_encoders else ()
        text = self.text_stream_names() if train == "text_stream" else set()
        for name, param in self.named_parameters():
            if train == "text_stream":
                wanted = name in text
            else:
                wanted = stage_trainable(name, stage) and name.split(".", 1)[0] not in frozen
            param.requires_grad_(wanted and name not in dead)

    @property
    def hallo_layout(self) -> bool:
        """The face embedding is the base stream (Hallo's attn2 context) and text an extra stream."""
        return family_of(self.config).identity_is_base

    def text_stream_names(self) -> set[str]:
        """The K/V of the text stream, where text is an extra stream (`to_k_ip.i` / `to_v_ip.i`, i its index)."""
        _, streams = attention_streams(self.config)
        if "text" not in streams:
            raise ValueError("'train': 'text_stream' needs a model whose text is an extra attention stream "
                             "(Hallo's layout); in this family text is the layers' own K/V")
        index = {"identity_net.": tuple(s for s in streams if s != "audio").index("text"),
                 "animate_net.": streams.index("text")}
        return {name for name, _ in self.named_parameters()
                for net, i in index.items()
                if name.startswith(net) and (f".to_k_ip.{i}." in name or f".to_v_ip.{i}." in name)}

    def dead_parameter_names(self) -> set[str]:
        """IdentityNet parameters that never reach the loss: IdentityNet's output is the input of each
        self-attention layer, so in the last transformer block everything after that input (the attention
        itself, the cross-attention, the feed-forward, the block's output projection) is unused."""
        from ..models.networks.attention import self_attention_layers

        import re

        def run_order(layer: str) -> tuple:  # down blocks, the mid block, then the up blocks
            part = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}[layer.split(".")[0]]
            return (part, *(int(n) for n in re.findall(r"\.(\d+)(?=\.)", layer)))

        layers = self_attention_layers(self.identity_net.unet)
        if not layers:
            return set()
        block = max(layers, key=run_order).rsplit(".", 1)[0]  # up_blocks.2.attentions.1.transformer_blocks.0
        transformer = block.split(".transformer_blocks.")[0]  # ...attentions.1
        dead = set()
        for name, _ in self.identity_net.unet.named_parameters():
            in_block = name.startswith(block + ".") and not name.startswith(block + ".norm1.")
            if in_block or name.startswith(transformer + ".proj_out."):
                dead.add(f"identity_net.unet.{name}")
        return dead

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def _identity(self, batch: Batch, text: torch.Tensor, keep: float) -> tuple[dict, torch.Tensor]:
        """(IdentityNet features, identity tokens). A dropped identity in Hallo's layout is its unconditional
        face embedding, zeros; elsewhere the tokens are zeroed later, in the stream."""
        with torch.set_grad_enabled(self.stage == 1 and torch.is_grad_enabled()):
            if batch.identity_embeds is not None:  # precomputed (Hallo's ArcFace, or a frozen image encoder's)
                embeds = batch.identity_embeds.float()
            else:
                embeds = self.image_encoder(batch.references)
            tokens = self.image_proj(embeds * keep if self.hallo_layout else embeds)
            latents = batch.reference_latents
            if latents is None:
                latents = self.codec.encode(batch.references * 2 - 1)
            features = self.identity_net.rows(latents.float(), text, tokens)
        return features, tokens

    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        cfg, device = self.loss_config, batch.face.device
        rows, frames = batch.face.shape[:2]
        offset, total = batch.row_offset, batch.global_rows or rows
        mine = slice(offset, offset + rows)
        once = lambda: float(torch.rand((1,), generator=generator))  # noqa: E731  (one draw per global batch)

        def per_row(draw, *shape, **kw):  # a draw for every row of the global batch; this rank's rows of it
            return draw(*kw.pop("args", ()), (total, *shape), generator=generator, **kw)[mine].to(device)

        with torch.set_grad_enabled(self.stage == 1 and torch.is_grad_enabled()):
            text = self.text_encoder(batch.captions)
        if self.hallo_layout:  # Hallo's "no text" is no text stream: zero tokens add exactly 0 (no K/V bias)
            has_text = torch.tensor([bool(c.strip()) for c in batch.captions], device=text.device)
            text = text * has_text.view(-1, 1, 1).to(text.dtype)
        keep_identity = 0.0 if once() < cfg.identity_dropout else 1.0
        features, tokens = self._identity(batch, text, keep_identity)
        per_frame = torch.arange(rows, device=device).repeat_interleave(frames)
        audio = self.audio_proj(batch.audio.flatten(0, 1))
        keep_audio = per_row(torch.rand) >= cfg.audio_dropout
        audio = audio * keep_audio.repeat_interleave(frames).view(-1, 1, 1)
        # a dropped identity: every row attends to its own tokens only (condition row -1), as with
        # λ_identity = 0, but in the graph; its tokens are zeros (no bias in their K/V: the stream adds exactly 0)
        condition_rows = per_frame if keep_identity else torch.full_like(per_frame, -1)
        if self.hallo_layout:
            from ..models.networks.hallo_masks import FrameRegionMasks

            context = tokens  # the base stream: the face embedding's tokens, per row
            ctx = AttentionContext(audio_tokens=audio, bank=IdentityBank(features), condition_rows=condition_rows,
                                   text_tokens=text[per_frame],
                                   regions=FrameRegionMasks(batch.face.flatten(0, 1), batch.lip.flatten(0, 1)))
        else:
            context = text
            ctx = AttentionContext(identity_tokens=tokens[per_frame] * keep_identity, audio_tokens=audio,
                                   bank=IdentityBank(features), condition_rows=condition_rows)

        if batch.target_latents is not None:  # precomputed: the codec never runs in a step
            x0 = batch.target_latents.float()
        else:
            x0 = self.codec.encode(batch.targets.flatten(0, 1) * 2 - 1)
            x0 = x0.view(rows, frames, *x0.shape[1:])
        latent = x0.shape[1:]
        noise = per_row(torch.randn, *latent)
        t = per_row(torch.randint, args=(0, self.noise_schedule.config.num_train_timesteps))
        t_frames = t.repeat_interleave(frames)
        flat = lambda x: x.flatten(0, 1)  # noqa: E731
        noisy = self.noise_schedule.add_noise(flat(x0), flat(noise), t_frames).view_as(x0)
        target = self._target(x0, noise, t_frames)

        hidden = self._patch_mask(latent, per_row) * (per_row(torch.rand) < cfg.mask_probability).view(-1, 1, 1, 1, 1)
        noisy = torch.where(hidden.bool(), per_row(torch.randn, *latent), noisy)
        # a dropped structure map still runs through the encoder, with weight 0
        keep_mask = 0.0 if once() < cfg.structure_dropout else 1.0
        if structure_reads_reference(self.config):
            # the reference's own path: the mask is dropped alone, the whole map with the identity
            structure = with_reference(batch.face * keep_mask, self._reference_pixels(batch))
            keep_structure = torch.full((rows,), keep_identity, device=device)
        else:
            structure, keep_structure = batch.face, torch.full((rows,), keep_mask, device=device)
        pred = self.animate_net(noisy, t, context, ctx, structure, structure_weight=keep_structure)

        factor = batch.face.shape[-1] // x0.shape[-1]
        face = F.avg_pool2d(flat(batch.face), factor).view(rows, frames, 1, *x0.shape[-2:])
        lip = F.avg_pool2d(flat(batch.lip), factor).view(rows, frames, 1, *x0.shape[-2:])
        weight = 1 + cfg.face_weight * face + cfg.lip_weight * lip
        error = (pred.float() - target.float()) ** 2
        dims = (1, 2, 3, 4)
        denoise = ((error * weight).mean(dims) / weight.mean(dims)).mean()  # per row, then the mean of rows
        # the masked region's error per masked row (0 on the others), scaled so that its expectation over
        # rows is that of a masked row
        masked_rows = (error * hidden).sum(dims) / (hidden.sum(dims) * error.shape[2]).clamp(min=1)
        masked = masked_rows.mean() / max(cfg.mask_probability, 1e-6)
        loss = denoise + cfg.mask_loss_weight * masked
        return {"loss": loss, "denoise": denoise.detach(), "mask_reconstruction": masked.detach()}

    def _reference_pixels(self, batch: Batch) -> torch.Tensor:
        """The references `[B, 3, S, S]` in 0..1, decoded from their latents where the batch has none."""
        if batch.references is not None:
            return batch.references
        pixels = self.codec.decode(batch.reference_latents.float()).to(batch.reference_latents.device)
        return ((pixels + 1) / 2).clamp(0, 1)

    def _target(self, x0: torch.Tensor, noise: torch.Tensor, t_frames: torch.Tensor) -> torch.Tensor:
        """What the model predicts, by the schedule's prediction type (v, noise, or the clean sample)."""
        kind = self.noise_schedule.config.prediction_type
        if kind == "v_prediction":
            return self.noise_schedule.get_velocity(x0.flatten(0, 1), noise.flatten(0, 1), t_frames).view_as(x0)
        return x0 if kind == "sample" else noise

    def _patch_mask(self, latent_shape, per_row, patch: int = 2) -> torch.Tensor:
        """1 on a random `mask_ratio` of the latent grid's patch×patch cells, per frame: `[B, F, 1, h, w]`."""
        frames, _, h, w = latent_shape
        cells = (per_row(torch.rand, frames, 1, max(1, h // patch), max(1, w // patch)) < self.loss_config.mask_ratio)
        rows = cells.shape[0]
        return F.interpolate(cells.float().flatten(0, 1), size=(h, w), mode="nearest").view(rows, frames, 1, h, w)
