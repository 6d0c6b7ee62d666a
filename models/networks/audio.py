"""The audio path: waveform → mono 16 kHz → encoder features → per-frame windows → AudioProjection tokens.

Follow the audio from the AUDIO input to the attention processor through these names:
`prepare_waveform` (any rate, any channels → normalised mono 16 kHz), an encoder (`MelEncoder`,
`Wav2Vec2Encoder`, or ComfyUI's AUDIO_ENCODER_OUTPUT through `features_from_encoder_output`),
`features_per_frame` (features at the video's fps, averaged over each frame's span), `frame_windows`
(±2 frames around each frame), and `AudioProjection` (an MLP to `Na` tokens per frame of the
cross-attention width). The tokens reach `DecoupledCrossAttnProcessor`'s audio stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..audio_contract import SAMPLE_RATE, num_video_frames

TARGET_LEVEL = 0.1  # RMS of the loud (95th-percentile) 20 ms frames after normalisation
SILENCE_LEVEL = 1e-4  # below this the clip is treated as silence and left as it is
# Rates outside this range are not audio a recorder makes; a rate of 1 Hz would resample every sample
# into 16000 and turn a second of input into hours of video.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000


class AudioInputError(ValueError):
    """Audio that cannot be used, with a message that names the input and what is wrong."""


def _as_numpy(waveform, name: str) -> np.ndarray:
    try:
        if isinstance(waveform, torch.Tensor):
            if waveform.is_complex():
                raise TypeError("complex samples")
            waveform = waveform.detach().to("cpu", torch.float32).numpy()
        if np.iscomplexobj(waveform):
            raise TypeError("complex samples")
        return np.asarray(waveform, dtype=np.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise AudioInputError(f"{name}: expected a waveform of real numbers, got {type(waveform).__name__} ({err})") \
            from None


def _sample_rate(sample_rate, name: str) -> int:
    rate = sample_rate
    if isinstance(rate, torch.Tensor) and rate.numel() == 1:
        rate = rate.item()
    if isinstance(rate, (float, np.floating)) and np.isfinite(rate) and float(rate).is_integer():
        rate = int(rate)
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, np.integer)) \
            or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioInputError(f"{name}: sample rate must be a whole number of Hz from {MIN_SAMPLE_RATE} to "
                              f"{MAX_SAMPLE_RATE}, got {repr(sample_rate)[:40]}")
    return int(rate)


def prepare_waveform(waveform, sample_rate: int, *, name: str = "audio", normalise: bool = True) -> np.ndarray:
    """Any audio → mono float32 at 16 kHz, loudness-normalised.

    Accepts `[T]`, `[C, T]` or ComfyUI's `[B, C, T]` with B = 1, any channel count, any rate from
    MIN_SAMPLE_RATE to MAX_SAMPLE_RATE. Floats in int16 range (|x| > 1.5) are rescaled. Raises
    `AudioInputError` on empty, non-finite or batched audio, and on anything that is not a waveform.
    """
    import librosa

    wav = _as_numpy(waveform, name)
    if wav.ndim == 3:
        if wav.shape[0] != 1:
            raise AudioInputError(f"{name}: a batch of {wav.shape[0]} clips was given; pass one clip at a time")
        wav = wav[0]
    if wav.ndim == 2:
        if wav.shape[0] == 0:
            raise AudioInputError(f"{name}: the audio has no channels (shape {tuple(wav.shape)})")
        wav = wav.mean(axis=0)  # channels first, as ComfyUI's AUDIO is [B, C, T]
    if wav.ndim != 1:
        raise AudioInputError(f"{name}: expected a waveform [T], [C, T] or [1, C, T], got shape {tuple(wav.shape)}")
    sample_rate = _sample_rate(sample_rate, name)
    if wav.size < 2:
        raise AudioInputError(f"{name}: the audio is empty ({wav.size} samples); at least one video frame is needed")
    if not np.isfinite(wav).all():
        bad = int((~np.isfinite(wav)).sum())
        raise AudioInputError(f"{name}: {bad} samples are NaN or infinite")
    peak = float(np.abs(wav).max())
    if peak > 1.5:
        if peak > 32768 * 1.01:
            raise AudioInputError(f"{name}: samples reach {peak:.3g}; expected floats in -1..1 (or int16 range)")
        wav = wav / 32768.0  # int16 values delivered as floats
    if sample_rate != SAMPLE_RATE:
        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    wav = np.ascontiguousarray(wav, dtype=np.float32)
    return loudness_normalise(wav) if normalise else wav


def loudness_normalise(wav: np.ndarray) -> np.ndarray:
    """Scale so the loud parts sit at a fixed level, whatever the recording level (real
    and TTS speech come at other levels than training audio). Silence stays silence."""
    frame = SAMPLE_RATE // 50
    usable = wav[: len(wav) // frame * frame]
    if usable.size == 0:
        usable = wav
    rms = np.sqrt(np.mean(usable.reshape(-1, min(frame, usable.size)) ** 2, axis=1))
    level = float(np.percentile(rms, 95))
    if level < SILENCE_LEVEL:
        return wav
    return (wav * (TARGET_LEVEL / level)).astype(np.float32)


@dataclass
class AudioFeatures:
    """Encoder output on its own clock: `values` `[T, L, D]` (L layers), frame i centred at
    `offset + i / rate` seconds."""

    values: torch.Tensor
    rate: float
    offset: float = 0.0
    encoder: str = ""


class MelEncoder:
    """Log-mel features with a fixed reference level, so absolute loudness survives (the audio
    row of docs/architecture.md, "Decisions beyond what the paper states").
    Needs no weights; the tiny family uses it."""

    name = "mel"

    def __init__(self, n_mels: int = 80, n_fft: int = 1024, hop: int = 160, floor_db: float = -60.0):
        self.n_mels, self.n_fft, self.hop, self.floor_db = n_mels, n_fft, hop, floor_db

    @property
    def feature_shape(self) -> tuple[int, int]:
        return 1, self.n_mels

    def __call__(self, wav16k: np.ndarray) -> AudioFeatures:
        import librosa

        mel = librosa.feature.melspectrogram(y=wav16k, sr=SAMPLE_RATE, n_fft=self.n_fft, hop_length=self.hop,
                                             n_mels=self.n_mels, center=True)
        db = librosa.power_to_db(mel, ref=1.0, amin=10 ** (self.floor_db / 10), top_db=None)
        scaled = (db - self.floor_db) / 40.0 - 1.0  # floor (-60 dB) → -1, -20 dB → 0, +20 dB → +1
        values = torch.from_numpy(scaled.T.astype(np.float32))[:, None, :]
        return AudioFeatures(values, rate=SAMPLE_RATE / self.hop, offset=0.0, encoder=self.name)


class Wav2Vec2Encoder:
    """transformers `Wav2Vec2Model` (base-960h layout); all transformer hidden states, at 50 Hz.

    Long audio runs in overlapping chunks, so memory stays flat (self-attention is quadratic in length).
    """

    name = "wav2vec2"

    def __init__(self, model: nn.Module, chunk_seconds: float = 20.0, context_seconds: float = 2.0,
                 normalize: bool = True):
        self.model = model.eval()
        self.chunk, self.context = chunk_seconds, context_seconds
        self.normalize = normalize

    @property
    def feature_shape(self) -> tuple[int, int]:
        cfg = self.model.config
        return cfg.num_hidden_layers, cfg.hidden_size

    @torch.no_grad()
    def _encode(self, wav: np.ndarray) -> torch.Tensor:
        param = next(self.model.parameters())
        x = torch.from_numpy(wav)[None].to(param.device, param.dtype)
        out = self.model(x, output_hidden_states=True)
        return torch.stack(out.hidden_states[1:], dim=2)[0].float().cpu()  # [T, L, D]

    def __call__(self, wav16k: np.ndarray) -> AudioFeatures:
        if self.normalize:  # what Wav2Vec2FeatureExtractor(do_normalize=True) does, once per clip
            wav16k = (wav16k - wav16k.mean()) / np.sqrt(wav16k.var() + 1e-7)
        stride = 320  # the CNN's hop: 20 ms
        step, ctx = int(self.chunk * SAMPLE_RATE), int(self.context * SAMPLE_RATE)
        if len(wav16k) <= step + 2 * ctx:
            values = self._encode(wav16k)
        else:
            pieces = []
            for start in range(0, len(wav16k), step):
                lo = max(0, start - ctx)
                feats = self._encode(wav16k[lo: start + step + ctx])
                skip = (start - lo) // stride
                pieces.append(feats[skip: skip + step // stride])
            values = torch.cat(pieces)
        return AudioFeatures(values, rate=SAMPLE_RATE / stride, offset=200 / SAMPLE_RATE, encoder=self.name)

    @torch.no_grad()
    def at_frame_rate(self, wav16k: np.ndarray, fps: float, pad_frames_to: int = 1) -> AudioFeatures:
        """Hallo's variant: the CNN features are linearly interpolated (align_corners) to exactly one per video
        frame *before* the feature projection and the transformer encoder, so the encoder runs at the video's
        rate on the whole clip; all hidden states. The normalised waveform is zero-padded to a multiple of
        `pad_frames_to` frames first, as Hallo pads to its clip length (the extra frames are returned too)."""
        if self.normalize:
            wav16k = (wav16k - wav16k.mean()) / np.sqrt(wav16k.var() + 1e-7)
        frames = num_video_frames(len(wav16k), SAMPLE_RATE, fps)
        if pad_frames_to > 1 and frames % pad_frames_to:
            extra = pad_frames_to - frames % pad_frames_to
            wav16k = np.pad(wav16k, (0, extra * int(SAMPLE_RATE // fps)))
            frames += extra
        param = next(self.model.parameters())

        def to_frames(module, args, output):  # [B, C, T at 50 Hz] → [B, C, frames]
            return torch.nn.functional.interpolate(output, size=frames, mode="linear", align_corners=True)

        hook = self.model.feature_extractor.register_forward_hook(to_frames)
        try:
            x = torch.from_numpy(np.ascontiguousarray(wav16k, dtype=np.float32))[None].to(param.device, param.dtype)
            out = self.model(x, output_hidden_states=True)
        finally:
            hook.remove()
        values = torch.stack(out.hidden_states[1:], dim=2)[0].float().cpu()
        return AudioFeatures(values, rate=float(fps), offset=0.5 / fps, encoder=f"{self.name}@{fps:g}fps")


def features_from_encoder_output(output: dict, *, name: str = "audio encoder output") -> AudioFeatures:
    """ComfyUI's AUDIO_ENCODER_OUTPUT (from AudioEncoderEncode): all layers, at the encoder's rate."""
    try:
        layers = output.get("encoded_audio_all_layers") or [output["encoded_audio"]]
        samples = int(output["audio_samples"])
    except (KeyError, TypeError, AttributeError) as err:
        raise AudioInputError(f"{name}: expected a dict with 'encoded_audio', 'encoded_audio_all_layers' and "
                              f"'audio_samples' (ComfyUI's AUDIO_ENCODER_OUTPUT); {err!r}") from None
    values = torch.stack([torch.as_tensor(x).float() for x in layers], dim=2)
    if values.ndim != 4 or values.shape[0] != 1:
        raise AudioInputError(f"{name}: expected one clip of features [1, T, D] per layer, got {tuple(values.shape)}")
    values = values[0].cpu()
    if samples <= 0 or values.shape[0] == 0:
        raise AudioInputError(f"{name}: the encoded audio is empty")
    rate = values.shape[0] * SAMPLE_RATE / samples
    return AudioFeatures(values, rate=rate, offset=0.5 / rate, encoder="comfyui")


def features_per_frame(features: AudioFeatures, num_frames: int, fps: float) -> torch.Tensor:
    """Features at the video's clock, `[F, L, D]`: frame f covers [f/fps, (f+1)/fps) and takes the mean of
    the feature frames centred inside it (or the nearest one when the features are sparser)."""
    values = features.values
    times = features.offset + torch.arange(values.shape[0], dtype=torch.float64) / features.rate
    index = torch.floor(times * fps).long()  # the video frame each feature frame falls in
    keep = (index >= 0) & (index < num_frames)
    sums = torch.zeros((num_frames,) + values.shape[1:], dtype=torch.float64)
    sums.index_add_(0, index[keep], values[keep].double())
    counts = torch.bincount(index[keep], minlength=num_frames).double()
    centres = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps
    nearest = ((centres - features.offset) * features.rate).round().long().clamp(0, values.shape[0] - 1)
    per_frame = torch.where(counts.view(-1, *[1] * (values.ndim - 1)) > 0,
                            sums / counts.clamp(min=1).view(-1, *[1] * (values.ndim - 1)),
                            values[nearest].double())
    return per_frame.float()


def frame_windows(per_frame: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """`[F, ...]` → `[F, 2·radius + 1, ...]`: each frame with its neighbours, clamped at the ends."""
    f = per_frame.shape[0]
    offsets = torch.arange(-radius, radius + 1)
    index = (torch.arange(f)[:, None] + offsets[None]).clamp(0, f - 1)
    return per_frame[index]


class AudioProjection(nn.Module):
    """Per-frame audio windows `[F, 2r+1, L, D]` → `Na` tokens `[F, Na, C]` (Hallo's `audioproj` layout)."""

    def __init__(self, in_features: int, hidden: int = 512, tokens: int = 32, dim: int = 768):
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.proj1 = nn.Linear(in_features, hidden)
        self.proj2 = nn.Linear(hidden, hidden)
        self.proj3 = nn.Linear(hidden, tokens * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = windows.flatten(1).to(self.proj1.weight.dtype)
        x = torch.relu(self.proj2(torch.relu(self.proj1(x))))
        return self.norm(self.proj3(x).view(-1, self.tokens, self.dim))
