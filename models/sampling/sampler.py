"""The sampler: diffusers schedulers, compositional guidance, and context windows.

One denoising step runs every context window through AnimateNet, with all guidance passes of a window
in one batched forward, blends the windows' predictions with weights that taper at window edges, and
takes one scheduler step on the whole sequence. Everything that does not change during sampling
(IdentityNet features and their K/V, text, audio tokens) is computed before the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..networks.attention import AttentionContext, StreamScales
from ..families import identity_is_base
from ..networks.identity_net import IdentityFeatures

SCHEDULERS = ("ddim", "euler", "dpmpp_2m")


def make_scheduler(name: str, base_config: dict, karras: bool = False):
    """A diffusers scheduler from the model's training-schedule config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    config = dict(base_config)
    if name == "ddim":
        if karras:
            raise ValueError("Karras sigmas apply to 'euler' and 'dpmpp_2m', not 'ddim'")
        return DDIMScheduler.from_config(config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config({**config, "use_karras_sigmas": karras})
    if name == "dpmpp_2m":
        return DPMSolverMultistepScheduler.from_config(
            {**config, "algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": karras})
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")


# ---------------------------------------------------------------------------------------------- guidance


@dataclass(frozen=True)
class GuidancePass:
    text: bool
    audio: bool
    weight: float
    identity: bool = True  # False: Hallo's unconditional pass (no face embedding, reference or structure)


def guidance_passes(text_guidance: float, audio_guidance: float, has_text: bool, has_audio: bool,
                    joint: bool = False) -> list[GuidancePass]:
    """Compositional guidance over text and audio (the guidance row of docs/architecture.md, "Decisions beyond what the
    paper states") as a weighted sum of passes:

    `ε = ε(∅) + s_txt·(ε(txt) − ε(∅)) + s_a·(ε(txt,a) − ε(txt))`.

    A scale of 1 drops the pass that only its term needs. With s_a = 1 and s_txt ≠ 1, text guidance is
    taken with the audio present, `ε(a) + s_txt·(ε(txt,a) − ε(a))`, which needs two passes, not three.

    `joint` is Hallo's guidance: its unconditional pass drops audio, face embedding, reference and structure
    together, and `audio_guidance` is its cfg scale: `ε = ε(∅) + s_a·(ε(c) − ε(∅)) + s_txt·(ε(c,txt) − ε(c))`.
    """
    if joint:
        return _joint_passes(text_guidance if has_text else 1.0, audio_guidance, has_text, has_audio)
    s_t = text_guidance if has_text else 1.0
    s_a = audio_guidance if has_audio else 1.0
    full = GuidancePass(has_text, has_audio, 1.0)
    if s_t == 1 and s_a == 1:
        return [full]
    if s_t == 1:
        return [GuidancePass(has_text, False, 1 - s_a), GuidancePass(has_text, True, s_a)]
    if s_a == 1:
        return [GuidancePass(False, has_audio, 1 - s_t), GuidancePass(True, has_audio, s_t)]
    return [GuidancePass(False, False, 1 - s_t), GuidancePass(True, False, s_t - s_a), GuidancePass(True, True, s_a)]


def _joint_passes(s_t: float, s: float, has_text: bool, has_audio: bool) -> list[GuidancePass]:
    full = GuidancePass(has_text, has_audio, 1.0)
    if s == 1 and s_t == 1:
        return [full]
    if s == 1:
        return [GuidancePass(False, has_audio, 1 - s_t), GuidancePass(True, has_audio, s_t)]
    uncond = GuidancePass(False, False, 1 - s, identity=False)
    if s_t == 1:
        return [uncond, GuidancePass(has_text, has_audio, s)]
    return [uncond, GuidancePass(False, has_audio, s - s_t), GuidancePass(True, has_audio, s_t)]


# ------------------------------------------------------------------------------------------------ windows


def context_windows(num_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) windows of `window` frames, `overlap` frames shared by neighbours, the last aligned
    to the end. A video no longer than one window is one window."""
    if window <= 0 or overlap < 0 or overlap >= window:
        raise ValueError(f"need window > overlap >= 0, got window={window}, overlap={overlap}")
    if num_frames <= window:
        return [(0, num_frames)]
    stride = window - overlap
    starts = list(range(0, num_frames - window, stride)) + [num_frames - window]
    return [(s, s + window) for s in dict.fromkeys(starts)]


def window_weights(start: int, end: int, num_frames: int, overlap: int) -> torch.Tensor:
    """Blend weights: a linear ramp over `overlap` frames at edges shared with a neighbour, 1 elsewhere;
    never zero, so every frame is covered."""
    length = end - start
    ramp = torch.arange(1, length + 1, dtype=torch.float32) / (overlap + 1)
    weights = torch.ones(length)
    if start > 0:
        weights = torch.minimum(weights, ramp)
    if end < num_frames:
        weights = torch.minimum(weights, ramp.flip(0))
    return weights


# ------------------------------------------------------------------------------------------ conditioning


@dataclass
class VideoConditioning:
    """Everything AnimateNet is conditioned on for one video: what the decoupled-attention patch binds.

    `text` / `null_text` are `[1, T, D]` (the prompt and the empty prompt); `audio_tokens` `[F, Na, D]`;
    `step_range` is the fraction of the schedule (start, end) in which the λs apply — outside it,
    identity and audio are off and text is at 1.
    """

    null_text: torch.Tensor
    text: torch.Tensor | None = None
    identity: IdentityFeatures | None = None
    audio_tokens: torch.Tensor | None = None
    scales: StreamScales = StreamScales()
    step_range: tuple[float, float] = (0.0, 1.0)
    base_stream: str = "text"  # the stream outside the step range keeps λ = 1 (Hallo: identity)
    region_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # Hallo's pose, face and lip weights
    long_audio: str | None = None  # overrides the model's default long-audio scheme (see SamplingOptions)
    reference_rows: str | None = None  # overrides SamplingOptions' default (Hallo fidelity)
    noise: str | None = None  # overrides SamplingOptions' default (Hallo fidelity)
    reencode: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)  # for motion frames

    def scales_at(self, step: int, num_steps: int) -> StreamScales:
        frac = step / max(1, num_steps - 1) if num_steps > 1 else 0.0
        start, end = self.step_range
        if start <= frac <= end:
            return self.scales
        if identity_is_base(self.base_stream):
            return StreamScales(text=0.0, identity=1.0, audio=0.0)
        return StreamScales(text=1.0, identity=0.0, audio=0.0)


@dataclass
class SamplingProgress:
    """Reported after every window of every step. `frames` are the frames that window completed and
    `denoised` their current x0 estimate (None for schedulers that do not report one)."""

    step: int
    num_steps: int
    window: int
    num_windows: int
    frames: tuple[int, int] = (0, 0)
    denoised: torch.Tensor | None = None
    windows_first: bool = False  # motion-frame windows run one after another, each through all steps

    @property
    def completed(self) -> int:
        if self.windows_first:
            return self.window * self.num_steps + self.step + 1
        return self.step * self.num_windows + self.window + 1

    @property
    def total(self) -> int:
        return self.num_steps * self.num_windows


@dataclass
class SamplingOptions:
    num_frames: int
    steps: int = 20
    scheduler: str = "ddim"
    karras: bool = False
    seed: int = 0
    text_guidance: float = 1.0
    audio_guidance: float = 1.0
    window: int = 16
    overlap: int = 4
    structure: torch.Tensor | None = None  # [1 or F, 1, H, W] in 0..1
    callback: Callable[[SamplingProgress], None] | None = field(default=None, repr=False)
    long_audio: str | None = None  # "blended" windows or Hallo's "motion_frames"; None: the model's default
    reencode: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)  # latents → decoded → latents
    # Hallo fidelity (None: the model's default, "hallo" under Hallo's joint guidance, else "own"):
    reference_rows: str | None = None  # "hallo": the reference rows of Hallo's batched guidance pass (bank_rows)
    noise: str | None = None  # "hallo": each window draws from one generator seeded once (motion frames only)
    # the share of the schedule that runs, as ComfyUI's KSampler "denoise": below 1, sampling starts from the
    # reference latent noised to that level, so the first estimates already see the reference's face
    denoise: float = 1.0

    def skipped_steps(self) -> int:
        if not 0.0 < self.denoise <= 1.0:
            raise ValueError(f"denoise must be in (0, 1], not {self.denoise}")
        return min(self.steps - 1, int(round(self.steps * (1.0 - self.denoise))))


FIDELITY_MODES = ("hallo", "own")


def bank_rows(passes: list[GuidancePass], frames: int, two_text_rows: bool, hallo: bool) -> torch.Tensor | None:
    """The IdentityBank row for every UNet row (pass-major, then frame); -1: own tokens only.

    "own": each pass reads the row of its own conditions (0: prompt, 1: null prompt). "hallo": what Hallo's
    batched guidance computes. Its read path takes each pass's reference row, then repeats the list of them
    along the batch (`[b, l, c].repeat(1, F, 1, 1)` on a 3-D tensor), so UNet row i reads the reference row of
    pass `i mod passes`; an identity-less pass's reference row is the reference under the zero face embedding
    (the last bank row, `IdentityFeatures.bank(..., with_null_identity=True)`). The unconditional pass itself
    still attends to its own tokens only. So with cfg, Hallo's conditional frames alternate between the
    reference under the real and under the zero embedding.
    """
    own = [-1 if not p.identity else (0 if p.text or not two_text_rows else 1) for p in passes]
    guided = not all(p.identity for p in passes)
    if not guided and not two_text_rows:
        return None
    if not (hallo and guided):
        return torch.tensor(own).repeat_interleave(frames)
    null_row = 2 if two_text_rows else 1
    read = [null_row if r < 0 else r for r in own]
    n = len(passes)
    return torch.tensor([-1 if own[i // frames] < 0 else read[i % n] for i in range(n * frames)])



def initial_noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Noise from a CPU generator, so a seed gives the same video on every device."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed)), dtype=torch.float32)


class WindowDenoiser:
    """Runs AnimateNet on one window with all guidance passes batched, and combines them."""

    def __init__(self, animate_net, conditioning: VideoConditioning, passes: list[GuidancePass], dtype, device,
                 hallo_rows: bool = False):
        self.net, self.cond, self.passes = animate_net, conditioning, passes
        # Hallo's rows need the reference under the zero face embedding, when there is an identity-less pass
        self.hallo_rows = hallo_rows and not all(p.identity for p in passes)
        self.dtype, self.device = dtype, device
        cond = conditioning
        identity = cond.identity.to(device, dtype) if cond.identity is not None else None
        self.identity_tokens = identity.tokens if identity is not None else None
        self.text_tokens = None
        # Hallo: the UNet's own context is the face embedding, text an extra stream
        if identity_is_base(getattr(animate_net, "base_stream", "text")):
            null = identity.null_tokens if identity is not None and identity.null_tokens is not None else None
            tokens = self.identity_tokens
            if tokens is None:
                raise ValueError("this model's cross-attention is driven by the identity: connect an IDENTITY")
            self.text = torch.cat([tokens if p.identity or null is None else null for p in passes])
            if cond.text is not None and any(p.text for p in passes):
                prompt = cond.text.to(device, dtype)
                self.text_tokens = torch.cat([prompt if p.text else torch.zeros_like(prompt) for p in passes])
        else:
            prompt = cond.text if cond.text is not None else cond.null_text
            self.text = torch.cat([prompt if p.text else cond.null_text for p in passes]).to(device, dtype)
        self.banks = {}  # per λ_text: IdentityNet features and their K/V, built once per generation
        self.rows = {}  # per window length: each UNet row's bank row (see bank_rows)
        self.structure_weight = None
        if not all(p.identity for p in passes):
            self.structure_weight = torch.tensor([1.0 if p.identity else 0.0 for p in passes], device=device)
        self.regions = identity.regions if identity is not None else None

    def _bank(self, text_scale: float):
        if self.cond.identity is None:
            return None
        if text_scale not in self.banks:
            self.banks[text_scale] = self.cond.identity.to(self.device, self.dtype).bank(text_scale, self.hallo_rows)
        return self.banks[text_scale]

    def __call__(self, latents: torch.Tensor, t, start: int, end: int, scales: StreamScales,
                 structure: torch.Tensor | None, motion: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        frames, n = end - start, len(self.passes)
        batch = latents.to(self.device, self.dtype).unsqueeze(0).expand(n, *latents.shape)
        audio = None
        if self.cond.audio_tokens is not None and scales.audio != 0:
            tokens = self.cond.audio_tokens[start:end].to(self.device, self.dtype)
            audio = torch.cat([tokens if p.audio else torch.zeros_like(tokens) for p in self.passes])
        bank = self._bank(scales.text) if scales.identity != 0 else None
        rows = None
        if bank is not None:
            if frames not in self.rows:
                two = "text" in self.cond.identity.conditions  # bank row 0: prompt, row 1: null prompt
                rows = bank_rows(self.passes, frames, two, self.hallo_rows)
                self.rows[frames] = None if rows is None else rows.to(self.device)
            rows = self.rows[frames]
        text_tokens = None
        if self.text_tokens is not None and scales.text != 0:
            text_tokens = self.text_tokens.repeat_interleave(frames, dim=0)
        ctx = AttentionContext(scales=scales, identity_tokens=self.identity_tokens, audio_tokens=audio, bank=bank,
                               condition_rows=rows, text_tokens=text_tokens, regions=self.regions,
                               region_weights=self.cond.region_weights)
        if structure is not None:
            structure = structure[start:end] if structure.shape[0] > 1 else structure.expand(frames, -1, -1, -1)
            structure = structure.to(self.device, self.dtype)
        timestep = torch.as_tensor(t, device=self.device).expand(n)
        preds = self.net(batch, timestep, self.text, ctx, structure, self.structure_weight, motion).float()
        weights = torch.tensor([p.weight for p in self.passes], device=preds.device).view(n, 1, 1, 1, 1)
        return (preds * weights).sum(0).to(latents.device)


def make_passes(conditioning: VideoConditioning, options: SamplingOptions, joint: bool = False) -> list[GuidancePass]:
    return guidance_passes(options.text_guidance, options.audio_guidance, conditioning.text is not None,
                           conditioning.audio_tokens is not None, joint)


def make_denoiser(animate_net, conditioning: VideoConditioning, options: SamplingOptions, joint: bool = False):
    from .offload import execution_device

    param = next(animate_net.parameters())  # offloaded, its device is the CPU: execution_device says where it runs
    return WindowDenoiser(animate_net, conditioning, make_passes(conditioning, options, joint), param.dtype,
                          execution_device(animate_net), hallo_rows=follows_hallo(options, "reference_rows", joint))


def follows_hallo(options: SamplingOptions, name: str, joint: bool) -> bool:
    """Whether the fidelity option `name` ("reference_rows" or "noise") is Hallo's: unset, it is under Hallo's
    joint guidance."""
    mode = getattr(options, name) or ("hallo" if joint else "own")
    if mode not in FIDELITY_MODES:
        raise ValueError(f"{name} must be one of {', '.join(FIDELITY_MODES)}, not {mode!r}")
    return mode == "hallo"


def check_window(animate_net, window: int) -> None:
    max_window = animate_net.unet.config.motion_max_seq_length - getattr(animate_net, "motion_frames", 0)
    if window > max_window:
        raise ValueError(f"window {window} exceeds the temporal layers' maximum of {max_window} frames")


def window_segments(windows: list[tuple[int, int]], num_frames: int) -> list[tuple[int, int]]:
    """The frames each window completes: [its start, the next window's start). No later window touches
    them, so they can take their scheduler step as soon as that window is done."""
    starts = [s for s, _ in windows] + [num_frames]
    return list(zip(starts[:-1], starts[1:]))


@torch.no_grad()
def sample_video(animate_net, conditioning: VideoConditioning, options: SamplingOptions, latent_shape: tuple[int, int, int],
                 scheduler_config: dict, *, joint: bool = False, motion: dict[str, torch.Tensor] | None = None,
                 start: torch.Tensor | None = None) -> torch.Tensor:
    """Denoise a whole video; returns latents `[F, C, h, w]` (float32, CPU).

    Every step runs the windows in order and blends their predictions; the frames a window completes
    take their scheduler step at once, each frame segment with its own scheduler instance (so
    multistep schedulers keep per-segment histories). Beyond the latents themselves, memory holds only
    the predictions of the frames still open, about one window. `joint` selects Hallo's guidance;
    `motion` holds fixed motion-frame features (Hallo's first-window motion frames) for every window.
    `start` (`[1, C, h, w]`, the reference latent) is what `options.denoise` < 1 starts from.
    """
    check_window(animate_net, options.window)
    frames = options.num_frames
    windows = context_windows(frames, options.window, options.overlap)
    segments = window_segments(windows, frames)
    schedulers = [make_scheduler(options.scheduler, scheduler_config, options.karras) for _ in segments]
    for scheduler in schedulers:
        scheduler.set_timesteps(options.steps)
    timesteps = schedulers[0].timesteps
    latents = initial_noise((frames, *latent_shape), options.seed)
    skip = options.skipped_steps()
    if skip and start is None:
        raise ValueError(f"denoise {options.denoise} starts from the reference: give an identity, or denoise 1")
    if skip and tuple(start.shape[1:]) != tuple(latent_shape):
        raise ValueError(f"denoise below 1 starts from the reference, whose latent {tuple(start.shape[1:])} is not "
                         f"the video's {tuple(latent_shape)}: use references of the video's size, or denoise 1")
    if skip:  # img2img: the schedule's tail, from the reference noised to its first timestep
        timesteps = timesteps[skip:]
        for scheduler in schedulers:  # the index-based ones (Euler, DPM++) must start there too; DDIM reads t
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(skip * scheduler.order)
        latents = schedulers[0].add_noise(start.float().cpu().expand_as(latents), latents, timesteps[:1])
    else:
        latents.mul_(schedulers[0].init_noise_sigma)
    denoise = make_denoiser(animate_net, conditioning, options, joint)
    weights = [window_weights(s, e, frames, options.overlap) for s, e in windows]
    for step, t in enumerate(timesteps):
        scales = conditioning.scales_at(step, len(timesteps))
        open_from, blended, total = 0, latents.new_zeros((0, *latent_shape)), torch.zeros(0)
        for index, ((start, end), w, (done_from, done_to), scheduler) in enumerate(zip(windows, weights, segments,
                                                                                        schedulers)):
            pred = denoise(scheduler.scale_model_input(latents[start:end], t), t, start, end, scales,
                           options.structure, motion)
            grow = end - open_from - blended.shape[0]
            if grow > 0:
                blended = torch.cat([blended, latents.new_zeros((grow, *latent_shape))])
                total = torch.cat([total, torch.zeros(grow)])
            blended[start - open_from: end - open_from] += pred * w.view(-1, 1, 1, 1)
            total[start - open_from: end - open_from] += w
            done = slice(done_from - open_from, done_to - open_from)
            result = scheduler.step(blended[done] / total[done].view(-1, 1, 1, 1), t, latents[done_from:done_to])
            latents[done_from:done_to] = result.prev_sample
            blended, total, open_from = blended[done.stop:], total[done.stop:], done_to
            if options.callback is not None:
                options.callback(SamplingProgress(step, len(timesteps), index, len(windows), (done_from, done_to),
                                                  getattr(result, "pred_original_sample", None)))
    return latents
