"""Correlation helpers that never return NaN: degenerate inputs are reported, not hidden."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_STD = 1e-8
MIN_OVERLAP = 5


def safe_corr(x: np.ndarray, y: np.ndarray) -> tuple[float, bool]:
    """(Pearson r, defined). r is 0 and ``defined`` False when either side is (nearly)
    constant or too short: an untrained model's constant mouth has no correlation to
    report, and 0 is the honest score for it."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) < MIN_OVERLAP or len(x) != len(y):
        return 0.0, False
    sx, sy = x.std(), y.std()
    if sx < MIN_STD * max(1.0, np.abs(x).mean()) or sy < MIN_STD * max(1.0, np.abs(y).mean()):
        return 0.0, False
    r = float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))
    return float(np.clip(r, -1.0, 1.0)), True


def shifted_pair(video: np.ndarray, audio: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlap of video[f] with audio[f - lag]: positive ``lag`` means the video lags."""
    n = min(len(video), len(audio))
    video, audio = video[:n], audio[:n]
    if lag >= 0:
        return video[lag:], audio[: n - lag]
    return video[: n + lag], audio[-lag:]


@dataclass
class LagSearch:
    """The best correlation over a window of lags."""

    r: float  # best correlation (0 when undefined everywhere)
    lag: int  # frames; positive: the video lags the audio
    defined: bool
    by_lag: dict  # lag -> r


def best_lag(video: np.ndarray, audio: np.ndarray, max_lag: int) -> LagSearch:
    """Pearson r of video[f] with audio[f - lag] for every |lag| <= max_lag; the best.

    Ties go to the lag nearest 0, so an undefined search reports lag 0.
    """
    by_lag, defined_any = {}, False
    for lag in range(-max_lag, max_lag + 1):
        v, a = shifted_pair(video, audio, lag)
        r, ok = safe_corr(v, a)
        by_lag[lag] = r
        defined_any |= ok
    best = max(by_lag, key=lambda k: (by_lag[k], -abs(k)))
    return LagSearch(r=by_lag[best], lag=int(best), defined=defined_any, by_lag=by_lag)


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN entries (ends take the nearest value)."""
    v = np.asarray(values, np.float64).copy()
    ok = np.isfinite(v)
    if ok.all() or not ok.any():
        return v
    idx = np.arange(len(v))
    v[~ok] = np.interp(idx[~ok], idx[ok], v[ok])
    return v
