"""ADFD (Audio-Driven Facial Dynamics): this project's reading of the paper's metric.

The paper's formula could not be consulted, so this is a documented decision
(defined in evaluation/README.md, "ADFD"). Three parts in [0, 1], all higher-is-better, reported beside the score:

* **spatial**: are the mouth shapes right?
  - with ground truth: ``exp(-LMD / tau_spatial)``, with LMD over the mouth and jaw
    landmarks normalised by the face box (``tau_spatial`` = 0.05 face heights);
  - without: is the mouth's range of motion the one the audio implies?
    ``rho = (R_mouth + eps) / (gain · R_loudness + eps)``, where R is the 5th–95th
    percentile spread of the inner-lip aperture and of the loudness envelope, and
    ``gain`` is the aperture of a fully open mouth for that landmark backend. The part
    is ``exp(-ln(rho)^2 / (2 ln(2)^2))``: 1 at the implied range, 0.61 at half or double
    it, and 0 for a frozen mouth on speech. A still mouth on silence scores 1.
* **temporal**: is the motion in time with the sound? The Pearson correlation of the
  mouth-aperture *velocity* (a[f] − a[f−1]) with the audio *onset* envelope at the best
  lag within ±``max_lag`` frames (default 2), clipped at 0. The velocity is used, not the
  aperture: onsets mark when the mouth should start opening, and differencing removes
  slow drifts that would let a badly timed mouth still correlate. The lag is reported,
  and positive means the video lags the audio. ``best_lag_wide`` repeats the search over
  ±``wide_lag`` frames (default 10) to diagnose larger offsets.
* **jitter**: is the face steady? The mean magnitude of the second difference of the
  normalised landmarks on the face outline and eyes, which move with the head and not
  with speech. Without ground truth it is scored as ``exp(-J / tau_jitter)``. With ground
  truth it is ``exp(-max(0, J − J_gt) / tau_jitter)``, so only jitter beyond the real
  video's counts (``tau_jitter`` = 0.02 face heights per frame²).

``ADFD = 0.4·spatial + 0.4·temporal + 0.2·jitter`` (``weights``). A zero-variance signal
(frozen mouth, silent audio) makes its correlation undefined. That part then scores 0
and a note says why, so the result is never NaN.
"""

from __future__ import annotations

import math

import numpy as np

from ..models.audio_contract import SAMPLE_RATE, level_normalised_loudness_envelope
from .audio_features import onset_envelope
from .lmd import landmark_source, landmark_track, lmd
from .signals import best_lag, fill_gaps, safe_corr

VERSION = "adfd-0.1"
DEFAULT_WEIGHTS = {"spatial": 0.4, "temporal": 0.4, "jitter": 0.2}
# Aperture (inner-lip gap / face height) of a fully open mouth, per landmark backend.
# colour: SynthTalk draws the interior 0.18·size tall at openness 1, and its face box
# (face and hair) is about 0.75·size tall, so 0.24 (measured: 0.242). mediapipe: the
# inner-lip gap of wide-open speech is about a tenth of the forehead–chin distance.
APERTURE_GAIN = {"colour": 0.24, "mediapipe": 0.10}
MIN_FRAMES = 5


def adfd(observations, audio16k: np.ndarray, fps: float, ground_truth=None, *, max_lag: int = 2,
         wide_lag: int = 10, weights: dict | None = None, tau_spatial: float = 0.05,
         tau_jitter: float = 0.02, aperture_gain: float | None = None, eps: float = 1e-3) -> dict:
    """ADFD of one video given its face observations and its audio (mono, 16 kHz).

    ``observations``: one FaceObservation (or None) per frame, from the colour or
    mediapipe backend. ``ground_truth``: the same for the real video, optional.
    Returns a JSON-friendly dict: ``score``, each part, the lag, and the series used.
    """
    n = len(observations)
    if n < MIN_FRAMES:
        raise ValueError(f"ADFD needs at least {MIN_FRAMES} frames, got {n}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    audio16k = np.asarray(audio16k, np.float32)
    if audio16k.size == 0:
        raise ValueError("ADFD needs audio: got zero samples")
    source = landmark_source(observations)
    notes: list[str] = []

    aperture = _aperture_track(observations, notes)
    loudness = level_normalised_loudness_envelope(audio16k, SAMPLE_RATE, fps, n)
    onset = onset_envelope(audio16k, fps, n)

    velocity = np.diff(aperture, prepend=aperture[0])
    search = best_lag(velocity, onset, max_lag)
    wide = best_lag(velocity, onset, max(wide_lag, max_lag))
    if not search.defined:
        notes.append("temporal correlation undefined (frozen mouth or silent audio): temporal part is 0")
    temporal = max(0.0, search.r)
    r_loud, _ = safe_corr(aperture, loudness)

    spatial, spatial_detail = _spatial(observations, ground_truth, aperture, loudness, source,
                                       tau_spatial, aperture_gain, eps)
    jitter_value = landmark_jitter(observations, source)
    jitter_ref = None
    if ground_truth is not None:
        jitter_ref = landmark_jitter(ground_truth[:n], source)
    jitter = math.exp(-max(0.0, jitter_value - (jitter_ref or 0.0)) / tau_jitter)

    w = dict(DEFAULT_WEIGHTS, **(weights or {}))
    total_w = sum(w.values())
    score = (w["spatial"] * spatial + w["temporal"] * temporal + w["jitter"] * jitter) / total_w
    return {
        "score": _finite(score),
        "spatial": _finite(spatial),
        "temporal": _finite(temporal),
        "jitter": _finite(jitter),
        "lag": search.lag,
        "max_lag": max_lag,
        "temporal_r": _finite(search.r),
        "best_lag_wide": wide.lag,
        "temporal_r_wide": _finite(wide.r),
        "aperture_loudness_r": _finite(r_loud),
        "jitter_value": _finite(jitter_value),
        "jitter_ground_truth": None if jitter_ref is None else _finite(jitter_ref),
        **spatial_detail,
        "weights": w,
        "landmarks": source,
        "version": VERSION,
        "notes": notes,
        "series": {
            "mouth_open": [round(float(v), 5) for v in aperture],
            "loudness": [round(float(v), 5) for v in loudness],
            "onset": [round(float(v), 5) for v in onset],
        },
    }


def landmark_jitter(observations, source: str | None = None) -> float:
    """Mean |second difference| of the stable normalised landmarks (face heights/frame²).

    Frames without a face are skipped (their differences are not formed)."""
    track = landmark_track(observations, "stable", source)
    acc = track[2:] - 2 * track[1:-1] + track[:-2]
    mag = np.linalg.norm(acc, axis=-1)
    mag = mag[np.isfinite(mag).all(axis=1)] if mag.size else mag
    return float(mag.mean()) if mag.size else 0.0


def _aperture_track(observations, notes: list[str]) -> np.ndarray:
    a = np.array([np.nan if o is None else o.mouth_open for o in observations], np.float64)
    missing = int((~np.isfinite(a)).sum())
    if missing == len(a):
        raise ValueError("no frame has a mouth measurement")
    if missing:
        notes.append(f"{missing} of {len(a)} frames had no face; their aperture was interpolated")
    return fill_gaps(a)


def _spatial(observations, ground_truth, aperture, loudness, source, tau, gain, eps):
    if ground_truth is not None:
        d = lmd(observations, ground_truth, region="mouth_jaw")
        return math.exp(-d["value"] / tau), {"spatial_mode": "ground truth", "spatial_lmd": d["value"]}
    gain = APERTURE_GAIN.get(source, 0.1) if gain is None else gain
    mouth_range = float(np.percentile(aperture, 95) - np.percentile(aperture, 5))
    implied = float(gain * (np.percentile(loudness, 95) - np.percentile(loudness, 5)))
    rho = (mouth_range + eps) / (implied + eps)
    score = math.exp(-(math.log(rho) ** 2) / (2 * math.log(2) ** 2))
    return score, {"spatial_mode": "audio-implied range", "mouth_range": mouth_range,
                   "implied_range": implied, "range_ratio": rho, "aperture_gain": gain}


def _finite(v: float) -> float:
    v = float(v)
    return v if math.isfinite(v) else 0.0
