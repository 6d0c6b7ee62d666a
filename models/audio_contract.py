"""The audio-to-video contract that the model, SynthTalk and the metrics share: how many video frames a
clip has, which samples each frame covers, and how loud each frame is.

Frame f covers the audio interval [f/fps, (f+1)/fps), so each value describes exactly the sound heard
while that frame is on screen; samples past the end of the audio count as silence.

Two loudness envelopes map a frame's level linearly from `CLOSED_DB` (0, a closed mouth) to `OPEN_DB`
(1, wide open):

* `absolute_loudness_envelope` uses the level as it is (dBFS, full scale 1.0). It is SynthTalk's mouth
  openness: what the generator draws for its own speech.
* `level_normalised_loudness_envelope` first shifts the clip so its loud frames (95th percentile) sit at
  `SPEECH_LEVEL_DB`, so the result does not depend on recording gain. The metrics compare mouths with it;
  for a SynthTalk clip it is close to the drawn openness.

Numpy only: training and evaluation use it without importing torch.
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 16000  # the rate every audio encoder and analysis here works at
CLOSED_DB = -50.0  # this level and below: openness 0
OPEN_DB = -14.0  # this level and above: openness 1
SPEECH_LEVEL_DB = -16.0  # where speech's loud frames are put by level normalisation
SILENCE_DB = -100.0  # a clip whose loud frames are below this is treated as silent

# `num_video_frames` subtracts a tolerance so float error in duration · fps cannot add a frame. The model
# path was written with 1e-6, SynthTalk and the metrics with 1e-9; each keeps its own so no frame count
# changes (they differ only when duration · fps lies less than 1e-6 above a whole number, which needs a
# fractional fps such as 29.97).
MODEL_FRAME_TOLERANCE = 1e-6
ANALYSIS_FRAME_TOLERANCE = 1e-9


def num_video_frames(num_samples: int, sample_rate: float, fps: float, *,
                     tolerance: float = MODEL_FRAME_TOLERANCE) -> int:
    """F = ceil(duration · fps): the frames that cover the audio."""
    return max(0, math.ceil(num_samples * fps / sample_rate - tolerance))


def frame_edges(num_frames: int, sample_rate: float, fps: float) -> np.ndarray:
    """Sample index where each frame's interval starts, plus the end of the last: [F + 1]."""
    f = np.arange(num_frames + 1, dtype=np.float64)
    return np.round(f * sample_rate / fps).astype(np.int64)


def frame_level_db(audio: np.ndarray, sample_rate: float = SAMPLE_RATE, fps: float = 25,
                   num_frames: int | None = None) -> np.ndarray:
    """RMS level (dBFS, full scale = 1.0) of each frame's interval, [F]. `num_frames` defaults to the
    frames that cover the audio."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if num_frames is None:
        num_frames = num_video_frames(len(x), sample_rate, fps, tolerance=ANALYSIS_FRAME_TOLERANCE)
    edges = frame_edges(num_frames, sample_rate, fps)
    n0, n1 = edges[:-1], edges[1:]
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    total = energy[np.minimum(n1, len(x))] - energy[np.minimum(n0, len(x))]  # zeros past the end
    ms = np.maximum(total, 0.0) / np.maximum(n1 - n0, 1)
    return 10.0 * np.log10(ms + 1e-12)


def openness_from_level_db(level_db: np.ndarray) -> np.ndarray:
    """clip((level_db - CLOSED_DB) / (OPEN_DB - CLOSED_DB), 0, 1) as float32."""
    return np.clip((level_db - CLOSED_DB) / (OPEN_DB - CLOSED_DB), 0.0, 1.0).astype(np.float32)


def absolute_loudness_envelope(audio: np.ndarray, sample_rate: float = SAMPLE_RATE, fps: float = 25,
                               num_frames: int | None = None) -> np.ndarray:
    """Openness per frame in [0, 1] from the absolute level (SynthTalk's mouth openness). Loudness-normalise
    foreign audio first (`training.synthtalk.normalize_speech_level`) to compare it with SynthTalk clips."""
    return openness_from_level_db(frame_level_db(audio, sample_rate, fps, num_frames))


def level_normalised_loudness_envelope(audio: np.ndarray, sample_rate: float, fps: float,
                                       num_frames: int) -> np.ndarray:
    """Openness per frame in [0, 1] after shifting the clip's loud frames to `SPEECH_LEVEL_DB`; all zeros
    for a silent clip."""
    db = frame_level_db(audio, sample_rate, fps, num_frames)
    if num_frames == 0:
        return np.zeros(0, np.float32)
    loud = float(np.percentile(db, 95))
    if loud < SILENCE_DB:
        return np.zeros(num_frames, np.float32)
    return openness_from_level_db(db + (SPEECH_LEVEL_DB - loud))
