"""The tests' synthetic audio, in one place: `speechlike` (syllable-like bursts, the stand-in for speech)
and `tone` (a plain sine). Deterministic, no files. The ComfyUI test nodes (tests/nodes/testnodes) load
this file by its path, as they run inside the server."""

import numpy as np


def speechlike(samples: int, rate: int) -> np.ndarray:
    """Syllable-like bursts, 2.5 a second, of a 180 Hz and a 720 Hz tone (peak about 0.4): float32
    [samples]. A rate below 1 counts as 1 (the hostile-audio test node asks for any rate)."""
    t = np.arange(samples) / max(rate, 1)
    envelope = (np.sin(2 * np.pi * 2.5 * t) > 0.2).astype(np.float32)
    wave = 0.3 * np.sin(2 * np.pi * 180 * t) * envelope + 0.1 * np.sin(2 * np.pi * 720 * t) * envelope
    return wave.astype(np.float32)


def tone(seconds: float, sr: int, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    """A sine of `freq` Hz and peak `amp`, float32, `seconds` long at `sr`."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
