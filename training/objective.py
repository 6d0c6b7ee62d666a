"""The training objective (DESIGN.md §3): what one batch costs, for either stage.

- Noise (v) prediction MSE, weighted up inside the face and lip masks.
- The mask reconstruction loss (decision, MAE-style): on some rows, a random ~30% of the target latent's
  2×2 patches are replaced by fresh noise at the input, and the prediction there gets its own loss, so the
  network must complete the face from the reference and the rest of the frame.
- Condition dropout: text and audio per row, identity and structure per batch, so guidance has its
  unconditional branches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.attention import AttentionContext, IdentityBank, StreamScales
from ..models.temporal import is_temporal_key
from .data import Batch

STAGES = (1, 2)


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

    def set_stage(self, stage: int) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be 1 or 2, not {stage}")
        self.stage = stage
        for name, param in self.named_parameters():
            param.requires_grad_(stage_trainable(name, stage))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def _identity(self, batch: Batch, text: torch.Tensor) -> tuple[dict, torch.Tensor]:
        references = batch.references * 2 - 1
        with torch.set_grad_enabled(self.stage == 1 and torch.is_grad_enabled()):
            tokens = self.image_proj(self.image_encoder(batch.references))
            features = self.identity_net.rows(self.codec.encode(references), text, tokens)
        return features, tokens

    def forward(self, batch: Batch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        cfg, device = self.loss_config, batch.targets.device
        rows, frames = batch.targets.shape[:2]
        rand = lambda *shape: torch.rand(shape, generator=generator).to(device)  # noqa: E731

        with torch.set_grad_enabled(self.stage == 1 and torch.is_grad_enabled()):
            text = self.text_encoder(batch.captions)
        features, tokens = self._identity(batch, text)
        drop_identity = bool(rand(1) < cfg.identity_dropout)
        per_frame = torch.arange(rows, device=device).repeat_interleave(frames)
        audio = self.audio_proj(batch.audio.flatten(0, 1))
        audio = audio * (rand(rows) >= cfg.audio_dropout).repeat_interleave(frames).view(-1, 1, 1)
        ctx = AttentionContext(scales=StreamScales(identity=0.0 if drop_identity else 1.0),
                               identity_tokens=tokens[per_frame], audio_tokens=audio,
                               bank=IdentityBank(features), condition_rows=per_frame)

        x0 = self.codec.encode(batch.targets.flatten(0, 1) * 2 - 1)
        x0 = x0.view(rows, frames, *x0.shape[1:])
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, self.noise_schedule.config.num_train_timesteps, (rows,), generator=generator).to(device)
        t_frames = t.repeat_interleave(frames)
        flat = lambda x: x.flatten(0, 1)  # noqa: E731
        noisy = self.noise_schedule.add_noise(flat(x0), flat(noise), t_frames).view_as(x0)
        target = self._target(x0, noise, t_frames)

        hidden = self._patch_mask(x0.shape, rand) * (rand(rows) < cfg.mask_probability).view(-1, 1, 1, 1, 1)
        noisy = torch.where(hidden.bool(), torch.randn(x0.shape, generator=generator).to(device), noisy)
        structure = None if bool(rand(1) < cfg.structure_dropout) else batch.face
        pred = self.animate_net(noisy, t, text, ctx, structure)

        factor = batch.targets.shape[-1] // x0.shape[-1]
        face = F.avg_pool2d(flat(batch.face), factor).view(rows, frames, 1, *x0.shape[-2:])
        lip = F.avg_pool2d(flat(batch.lip), factor).view(rows, frames, 1, *x0.shape[-2:])
        weight = 1 + cfg.face_weight * face + cfg.lip_weight * lip
        error = (pred.float() - target.float()) ** 2
        denoise = (error * weight).mean() / weight.mean()
        masked = (error * hidden).sum() / (hidden.sum() * error.shape[2]).clamp(min=1)
        loss = denoise + cfg.mask_loss_weight * masked
        return {"loss": loss, "denoise": denoise.detach(), "mask_reconstruction": masked.detach()}

    def _target(self, x0: torch.Tensor, noise: torch.Tensor, t_frames: torch.Tensor) -> torch.Tensor:
        """What the model predicts, by the schedule's prediction type (v, noise, or the clean sample)."""
        kind = self.noise_schedule.config.prediction_type
        if kind == "v_prediction":
            return self.noise_schedule.get_velocity(x0.flatten(0, 1), noise.flatten(0, 1), t_frames).view_as(x0)
        return x0 if kind == "sample" else noise

    def _patch_mask(self, shape, rand, patch: int = 2) -> torch.Tensor:
        """1 on a random `mask_ratio` of the latent grid's patch×patch cells, per frame: `[B, F, 1, h, w]`."""
        rows, frames, _, h, w = shape
        cells = (rand(rows, frames, 1, max(1, h // patch), max(1, w // patch)) < self.loss_config.mask_ratio).float()
        return F.interpolate(cells.flatten(0, 1), size=(h, w), mode="nearest").view(rows, frames, 1, h, w)
