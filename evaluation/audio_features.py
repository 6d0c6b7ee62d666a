"""Audio at video frame rate for the metrics: the ComfyUI/any-shape → mono 16 kHz conversion and the
onset envelope. Frame counting and the loudness envelope are the audio contract's
(`models.audio_contract`: frame f covers the audio interval [f/fps, (f+1)/fps); samples past
the end of the audio count as silence).

* **Loudness envelope** (used by ADFD's spatial part and the aperture–loudness
  diagnostic): `level_normalised_loudness_envelope`, SynthTalk's level-to-openness map after
  scaling the clip so its loud frames sit at a fixed level, so the metric is independent of
  recording gain.
* **Onset envelope** (used by ADFD's temporal part): ``librosa.onset.onset_strength``
  (spectral flux of a log-mel spectrogram, 32 ms window, 10 ms hop), averaged over the
  analysis frames whose centres fall inside each video frame's interval.
"""

from __future__ import annotations

import numpy as np

from ..media import audio_clip
from ..models.audio_contract import SAMPLE_RATE

ONSET_HOP = 160  # 10 ms at 16 kHz
ONSET_N_FFT = 512  # 32 ms


def to_mono_16k(audio, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz from [T], [C, T], [T, C] (C <= 8), [1, C, T], or a ComfyUI
    AUDIO dict (``{"waveform", "sample_rate"}``: its first clip; then ``sample_rate`` may be None)."""
    if isinstance(audio, dict):
        audio, sample_rate = audio_clip(audio)
    if hasattr(audio, "detach"):  # a torch tensor, without importing torch
        audio = audio.detach().cpu().float().numpy()
    x = np.asarray(audio, dtype=np.float32)
    if sample_rate is None or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    while x.ndim > 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        # Channels are the short axis: [C, T] as ComfyUI stores it, or [T, C] as files do.
        x = x.mean(axis=0) if x.shape[0] <= x.shape[1] else x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"audio must be [T], [C, T] or [T, C]; got shape {np.shape(audio)}")
    if x.size == 0:
        raise ValueError("audio is empty (zero samples)")
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or infinite samples")
    if int(sample_rate) != SAMPLE_RATE:
        import librosa
        x = librosa.resample(x, orig_sr=int(sample_rate), target_sr=SAMPLE_RATE).astype(np.float32)
    return x


def onset_envelope(audio16k: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """librosa onset strength averaged into video frames, [F] (>= 0)."""
    import librosa

    x = np.asarray(audio16k, np.float32)
    if len(x) < ONSET_N_FFT:
        x = np.pad(x, (0, ONSET_N_FFT - len(x)))
    env = librosa.onset.onset_strength(y=x, sr=SAMPLE_RATE, hop_length=ONSET_HOP, n_fft=ONSET_N_FFT)
    times = librosa.frames_to_time(np.arange(len(env)), sr=SAMPLE_RATE, hop_length=ONSET_HOP)
    idx = np.floor(times * fps + 1e-9).astype(np.int64)
    ok = (idx >= 0) & (idx < num_frames)
    total = np.bincount(idx[ok], weights=env[ok], minlength=num_frames)
    count = np.bincount(idx[ok], minlength=num_frames)
    return (total / np.maximum(count, 1)).astype(np.float32)
