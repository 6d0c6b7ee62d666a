"""Audio to mouth: the per-frame openness and width that SynthTalk draws for a piece of audio (the
contract in the package docstring), and the speech level normalisation that makes foreign audio comparable."""

from __future__ import annotations

import math

import numpy as np

from ...models.audio_contract import (ANALYSIS_FRAME_TOLERANCE, SAMPLE_RATE, SILENCE_DB, SPEECH_LEVEL_DB,
                                      absolute_loudness_envelope, frame_edges, frame_level_db, num_video_frames)
from .constants import FPS

# The envelope curve (CLOSED_DB, OPEN_DB) is the audio contract's (see the package docstring).
CENTROID_RANGE = (700.0, 3000.0)  # Hz: width 0 at the low end, 1 at the high end, log scale
PRE_EMPHASIS = 0.97  # y[n] = x[n] - 0.97 x[n-1] before the centroid, so F2 counts, not just F1
CENTROID_BAND = (100.0, 4000.0)
WIDTH_FADE_OPENNESS = 0.25  # below this openness the width fades to neutral


def spectral_centroid_track(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: float = FPS,
                            num_frames: int | None = None) -> np.ndarray:
    """Magnitude-spectrum centroid (Hz, within CENTROID_BAND) of each frame's window, after
    pre-emphasis (PRE_EMPHASIS) and a Hann window; NaN where the window is silent. Synthetic
    vowels sit in the order u < o < a < e < i."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    x = np.concatenate([x[:1], x[1:] - PRE_EMPHASIS * x[:-1]])
    if num_frames is None:
        num_frames = num_video_frames(len(x), sample_rate, fps, tolerance=ANALYSIS_FRAME_TOLERANCE)
    n0 = frame_edges(num_frames, sample_rate, fps)[:-1]
    length = int(round(sample_rate / fps))
    padded = np.concatenate([x, np.zeros(length + 1)])
    frames = padded[np.minimum(n0[:, None] + np.arange(length)[None, :], len(padded) - 1)]
    nfft = 1 << int(math.ceil(math.log2(length)))
    mag = np.abs(np.fft.rfft(frames * np.hanning(length), n=nfft, axis=1))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    band = (freqs >= CENTROID_BAND[0]) & (freqs <= CENTROID_BAND[1])
    weight = mag[:, band].sum(axis=1)
    centroid = (mag[:, band] * freqs[band]).sum(axis=1) / np.maximum(weight, 1e-20)
    return np.where(weight > 1e-9, centroid, np.nan)


def mouth_width_track(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: float = FPS,
                      num_frames: int | None = None, openness: np.ndarray | None = None) -> np.ndarray:
    """Normalised mouth width per frame in [0, 1] (see the package docstring)."""
    if openness is None:
        openness = absolute_loudness_envelope(audio, sample_rate, fps, num_frames)
    centroid = spectral_centroid_track(audio, sample_rate, fps, len(openness))
    lo, hi = CENTROID_RANGE
    centroid = np.nan_to_num(centroid, nan=math.sqrt(lo * hi))
    vowel = np.clip(np.log(np.maximum(centroid, 1.0) / lo) / math.log(hi / lo), 0.0, 1.0)
    fade = np.clip(np.asarray(openness, np.float64) / WIDTH_FADE_OPENNESS, 0.0, 1.0)
    return (0.5 + (vowel - 0.5) * fade).astype(np.float32)


def normalize_speech_level(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: float = FPS,
                           target_db: float = SPEECH_LEVEL_DB) -> np.ndarray:
    """Scale speech so its loud frames (95th percentile of `frame_level_db`) sit at `target_db`,
    then lower it if needed so no sample exceeds 0.98."""
    x = np.asarray(audio, dtype=np.float32)
    db = frame_level_db(x, sample_rate, fps)
    if len(db) == 0 or np.max(db) < SILENCE_DB:
        return x.copy()
    gain = 10.0 ** ((target_db - np.percentile(db, 95)) / 20.0)
    peak = float(np.max(np.abs(x))) * gain
    if peak > 0.98:
        gain *= 0.98 / peak
    return (x * gain).astype(np.float32)


def mouth_targets(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: float = FPS,
                  num_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(openness, width), both normalised [F] float32: what SynthTalk draws for this audio."""
    openness = absolute_loudness_envelope(audio, sample_rate, fps, num_frames)
    return openness, mouth_width_track(audio, sample_rate, fps, len(openness), openness)
