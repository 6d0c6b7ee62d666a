"""Clips with known truth for testing metrics: speech-like audio and a mouth that follows it.

The mouth is drawn by :func:`faces.testing.draw_face` with a height equal to
``loudness_envelope(audio) · 0.18 · size`` pixels (SynthTalk's scale), so a clip made here
is in sync by construction, and any shift, freeze or shuffle of it is a known defect.
"""

from __future__ import annotations

import numpy as np

from ..faces.testing import draw_talking_clip
from ..models.audio_contract import (ANALYSIS_FRAME_TOLERANCE, SAMPLE_RATE, level_normalised_loudness_envelope,
                                     num_video_frames)
from .audio_features import to_mono_16k

MOUTH_MAX_HEIGHT = 0.18  # fraction of the frame size at full loudness, as in SynthTalk


def speech_like_audio(seconds: float, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Voiced syllables (harmonic tones of 80–300 ms with smooth envelopes) separated by
    silences of 40–400 ms, at -26..-14 dBFS: enough structure for envelopes and onsets."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    out = np.zeros(n, np.float32)
    t = int(rng.integers(0, int(0.2 * sample_rate)))
    while t < n:
        length = int(rng.uniform(0.08, 0.30) * sample_rate)
        f0 = rng.uniform(100, 240)
        k = np.arange(min(length, n - t))
        tone = sum(np.sin(2 * np.pi * f0 * h * k / sample_rate) / h for h in range(1, 8))
        env = np.sin(np.pi * (k + 0.5) / length) ** 0.6
        level = 10 ** (rng.uniform(-26, -14) / 20)
        out[t:t + len(k)] = (tone * env * level / 1.5).astype(np.float32)
        t += length + int(rng.uniform(0.04, 0.4) * sample_rate)
    return out


def clip_for_audio(audio, sample_rate: int = SAMPLE_RATE, fps: float = 25.0, size: int = 64,
                   head_motion: float = 0.0, seed: int = 0, **face) -> tuple[np.ndarray, np.ndarray]:
    """(frames [F, size, size, 3] uint8, mouth heights in pixels [F]) in sync with ``audio``."""
    audio16 = to_mono_16k(audio, sample_rate)
    n = num_video_frames(len(audio16), SAMPLE_RATE, fps, tolerance=ANALYSIS_FRAME_TOLERANCE)
    heights = level_normalised_loudness_envelope(audio16, SAMPLE_RATE, fps, n) * MOUTH_MAX_HEIGHT * size
    return draw_talking_clip(heights, size=size, head_motion=head_motion, seed=seed, **face), heights


def delay_audio(audio16k: np.ndarray, frames: float, fps: float = 25.0) -> np.ndarray:
    """The same audio, ``frames`` video frames later (negative: earlier), same length."""
    shift = int(round(frames * SAMPLE_RATE / fps))
    a = np.asarray(audio16k, np.float32)
    if shift >= 0:
        return np.concatenate([np.zeros(shift, np.float32), a])[: len(a)]
    return np.concatenate([a[-shift:], np.zeros(-shift, np.float32)])
