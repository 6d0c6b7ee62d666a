"""Motion frames: Hallo's long-audio scheme, as an option of the sampler.

Windows run one after another, each through all its steps. Before every temporal layer, the IdentityNet
features of the last `M` frames of the previous window (the reference, repeated, for the first window) are
prepended along time, and the layer's outputs for them are dropped (`AnimateNet.motion_layers`). The
frames are decoded and encoded again between windows when a codec is at hand (`SamplingOptions.reencode`),
as Hallo does with its VAE; otherwise their latents are used as they are.

The other long-audio scheme, blended overlapping windows, stays `sampling.sample_video`; with a model that
has motion frames it gives every window the first window's motion frames (the reference).
"""

from __future__ import annotations

import torch

from ..families import text_is_base
from ..networks.identity_net import IdentityFeatures
from .sampler import (GuidancePass, SamplingOptions, SamplingProgress, VideoConditioning, check_window, initial_noise,
                       follows_hallo, make_denoiser, make_passes, make_scheduler)


def motion_conditions(passes: list[GuidancePass], count: int, hallo_rows: bool = True) -> list[list[bool]]:
    """For each pass and each motion frame: True when its features are taken under the face embedding,
    False under the zero embedding (Hallo's unconditional identity).

    Hallo runs its ReferenceNet once on [reference, motion frames] for both guidance halves, with the two
    contexts (unconditional, conditional) repeated along that batch, so with guidance the motion frames of
    each half alternate between the two contexts. `hallo_rows=False` gives every pass its own context.
    """
    guided = any(not p.identity for p in passes)
    out = []
    for p in passes:
        if not guided:
            out.append([True] * count)
        elif not hallo_rows:
            out.append([p.identity] * count)
        else:
            half = 1 if p.identity else 0
            out.append([(half * (count + 1) + j) % 2 == 1 for j in range(1, count + 1)])
    return out


@torch.no_grad()
def motion_features(identity_net, animate_net, identity: IdentityFeatures, latents: torch.Tensor,
                    passes: list[GuidancePass], null_text: torch.Tensor | None = None,
                    hallo_rows: bool = True) -> dict[str, torch.Tensor]:
    """{temporal layer: features `[passes, M, h·w, C]`} of the motion-frame latents `[M, C, h, w]`."""
    count = latents.shape[0]
    conditions = motion_conditions(passes, count, hallo_rows)
    tokens = {True: identity.tokens,
              False: identity.null_tokens if identity.null_tokens is not None else identity.tokens}
    text = None
    if text_is_base(getattr(identity_net, "base_stream", "text")):  # the UNet needs its text context: the empty prompt
        text = null_text.to(latents).expand(count, -1, -1)
    features = {c: identity_net.rows(latents, text, tokens[c].to(latents))
                for c in sorted({c for row in conditions for c in row})}
    return {module: torch.stack([torch.stack([features[c][layer][j] for j, c in enumerate(row)]) for row in conditions])
            for module, layer in animate_net.motion_layers().items()}


def window_noise(options: SamplingOptions, shape: tuple[int, ...], width: int, joint: bool):
    """The initial noise of each window, in order. Ours: one draw for the whole video (`initial_noise`).
    Hallo's: its inference seeds the global generator once (`torch.manual_seed(42)`) and each window draws
    `[1, C, F, h, w]` from it in turn, so the same seed gives Hallo's noise."""
    if follows_hallo(options, "noise", joint):
        generator = torch.Generator("cpu").manual_seed(int(options.seed))
        for _ in range(0, shape[0], width):
            yield torch.randn((1, shape[1], width, *shape[2:]), generator=generator)[0].transpose(0, 1)
    else:
        noise = initial_noise(shape, options.seed)
        yield from (noise[s: s + width] for s in range(0, shape[0], width))


@torch.no_grad()
def sample_motion_frames(animate_net, identity_net, conditioning: VideoConditioning, options: SamplingOptions,
                         latent_shape: tuple[int, int, int], scheduler_config: dict, *, joint: bool = False
                         ) -> torch.Tensor:
    """Denoise window after window, each conditioned on the previous one's last frames; latents `[F, C, h, w]`."""
    check_window(animate_net, options.window)
    count, identity = animate_net.motion_frames, conditioning.identity
    if count < 1:
        raise ValueError("this model has no motion frames; use blended windows")
    if identity is None or identity.latents is None:
        raise ValueError("motion frames start from the reference: connect an IDENTITY encoded with this model")
    from .offload import execution_device

    device, dtype = execution_device(identity_net), next(identity_net.parameters()).dtype
    identity = identity.to(device, dtype)
    frames, width = options.num_frames, options.window
    available = conditioning.audio_tokens.shape[0] if conditioning.audio_tokens is not None else frames
    total = max(frames, min(-(-frames // width) * width, available))  # Hallo fills the last window with padded audio
    windows = [(s, min(s + width, total)) for s in range(0, total, width)]
    structure = options.structure
    if structure is not None and 1 < structure.shape[0] < total:
        structure = torch.cat([structure, structure[-1:].expand(total - structure.shape[0], -1, -1, -1)])
    passes = make_passes(conditioning, options, joint)
    denoise = make_denoiser(animate_net, conditioning, options, joint)
    hallo_rows = follows_hallo(options, "reference_rows", joint)
    out = torch.empty((total, *latent_shape))
    noises = window_noise(options, (total, *latent_shape), width, joint)
    previous = identity.latents[:1].repeat(count, 1, 1, 1)  # the first window's motion frames: the reference
    for index, ((start, end), noise) in enumerate(zip(windows, noises)):
        motion = motion_features(identity_net, animate_net, identity, previous.to(device, dtype), passes,
                                 conditioning.null_text, hallo_rows)
        scheduler = make_scheduler(options.scheduler, scheduler_config, options.karras)
        scheduler.set_timesteps(options.steps)
        x = noise[: end - start] * scheduler.init_noise_sigma
        for step, t in enumerate(scheduler.timesteps):
            scales = conditioning.scales_at(step, len(scheduler.timesteps))
            pred = denoise(scheduler.scale_model_input(x, t), t, start, end, scales, structure, motion)
            result = scheduler.step(pred, t, x)
            x = result.prev_sample
            if options.callback is not None and start < frames:  # frames past the audio are not reported
                denoised = getattr(result, "pred_original_sample", None)
                shown = min(end, frames) - start
                options.callback(SamplingProgress(step, len(scheduler.timesteps), index, len(windows),
                                                  (start, start + shown),
                                                  None if denoised is None else denoised[:shown], windows_first=True))
        out[start:end] = x
        last = x[-count:] if x.shape[0] >= count else torch.cat([x[:1].expand(count - x.shape[0], -1, -1, -1), x])
        previous = options.reencode(last) if options.reencode is not None else last
    return out[:frames]
