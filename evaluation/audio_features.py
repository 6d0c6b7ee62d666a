"""Audio at video frame rate: the loudness and onset envelopes the metrics compare with.

Frame f covers the audio interval [f/fps, (f+1)/fps): each envelope value describes
exactly the sound heard while that frame is on screen (the SynthTalk contract,
DESIGN.md §6 and §8). Samples past the end of the audio count as silence.

* **Loudness envelope** (used by ADFD's spatial part and the aperture–loudness
  diagnostic): RMS level of the frame's interval in dBFS, after scaling the clip so its
  loud frames (95th percentile) sit at ``SPEECH_LEVEL_DB``; then mapped linearly from
  ``CLOSED_DB`` (0, silence) to ``OPEN_DB`` (1, loud). The constants are SynthTalk's, so
  for a SynthTalk clip this envelope is its mouth openness. The level normalisation
  makes the metric independent of recording gain.
* **Onset envelope** (used by ADFD's temporal part): ``librosa.onset.onset_strength``
  (spectral flux of a log-mel spectrogram, 32 ms window, 10 ms hop), averaged over the
  analysis frames whose centres fall inside each video frame's interval.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 16000
CLOSED_DB = -50.0
OPEN_DB = -14.0
SPEECH_LEVEL_DB = -16.0
SILENCE_DB = -100.0  # a clip whose loud frames are below this is treated as silent
ONSET_HOP = 160  # 10 ms at 16 kHz
ONSET_N_FFT = 512  # 32 ms


def to_mono_16k(audio, sample_rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz from [T], [C, T], [T, C] (C <= 8), [1, C, T], or a ComfyUI
    AUDIO dict (``{"waveform", "sample_rate"}``; then ``sample_rate`` may be None)."""
    if isinstance(audio, dict):
        sample_rate = int(audio["sample_rate"])
        audio = audio["waveform"]
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


def num_video_frames(num_samples: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """F = ceil(duration · fps), as the model produces."""
    return int(math.ceil(num_samples * fps / sample_rate - 1e-9))


def frame_edges(num_frames: int, fps: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Sample index where each frame's interval starts, plus the end of the last: [F + 1]."""
    return np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)


def frame_level_db(audio16k: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """RMS level (dBFS) of each frame's interval, [F]."""
    x = np.asarray(audio16k, np.float64)
    edges = frame_edges(num_frames, fps)
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    clipped = np.minimum(edges, len(x))
    ms = np.maximum(np.diff(energy[clipped]), 0.0) / np.maximum(np.diff(edges), 1)
    return 10.0 * np.log10(ms + 1e-12)


def loudness_envelope(audio16k: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """Loudness per frame in 0..1 after level normalisation (see the module docstring)."""
    db = frame_level_db(audio16k, fps, num_frames)
    if num_frames == 0:
        return np.zeros(0, np.float32)
    loud = float(np.percentile(db, 95))
    if loud < SILENCE_DB:
        return np.zeros(num_frames, np.float32)
    db = db + (SPEECH_LEVEL_DB - loud)
    return np.clip((db - CLOSED_DB) / (OPEN_DB - CLOSED_DB), 0.0, 1.0).astype(np.float32)


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
