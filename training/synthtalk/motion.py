"""How a SynthTalk head moves: a slow wobble of position, scale and roll, and eye blinks."""

from __future__ import annotations

import numpy as np

NEUTRAL_POSE = (0.0, 0.0, 1.0, 0.0)  # (dx, dy, scale, roll_degrees) of a head at rest
BLINK_PROFILE = (0.5, 1.0, 1.0, 0.6, 0.25)  # eye closure over the frames of one blink at 25 fps


def head_motion(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """[F, 4] (dx, dy, scale, roll_degrees): a slow wobble, sums of two sinusoids per axis."""
    t = np.arange(num_frames) / fps
    amps = np.array([[0.012, 0.008], [0.008, 0.005], [0.02, 0.01], [2.5, 1.2]])  # max per axis and component
    pose = np.zeros((num_frames, 4))
    for axis in range(4):
        for comp in range(2):
            a = rng.uniform(0.3, 1.0) * amps[axis, comp]
            freq, ph = rng.uniform(0.12, 0.6), rng.uniform(0, 2 * np.pi)
            pose[:, axis] += a * np.sin(2 * np.pi * freq * t + ph)
    pose[:, 2] += 1.0
    return pose.astype(np.float32)


def blink_track(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """[F] eye closure in [0, 1] (1 = shut): blinks every 2-5 s."""
    blink = np.zeros(num_frames, np.float32)
    t = rng.uniform(0.3, 3.0)
    profile = np.array(BLINK_PROFILE, np.float32)
    while t * fps < num_frames:
        f = int(t * fps)
        n = min(len(profile), num_frames - f)
        blink[f:f + n] = np.maximum(blink[f:f + n], profile[:n])
        t += rng.uniform(2.0, 5.0)
    return blink
