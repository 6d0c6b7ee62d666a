"""One call that measures a generated video: :func:`evaluate`."""

from __future__ import annotations

import math

import numpy as np

from ..faces import mediapipe_backend
from ..faces.cache import analyze_video
from ..faces.detect import _as_uint8, resolve_backend
from .adfd import adfd
from .audio_features import SAMPLE_RATE, to_mono_16k
from .identity import ColourHistogramEmbedder, csim
from .lmd import lmd

METRICS = ("adfd", "lmd", "csim", "sync", "fid", "fvd")
DEFAULT_METRICS = ("adfd", "lmd", "csim")


def evaluate(video_frames, audio, sample_rate, fps: float, reference=None, ground_truth=None,
             metrics=DEFAULT_METRICS, backend: str = "auto", *, weights: dict | None = None,
             embedder=None, cache_dir=None, face_model_path: str | None = None,
             adfd_options: dict | None = None, device: str = "cpu") -> dict:
    """Measure one video against its audio (and a reference image / ground-truth video).

    Args:
        video_frames: [F, H, W, 3] uint8 or float 0..1.
        audio: mono or multi-channel samples at ``sample_rate`` (or a ComfyUI AUDIO dict).
        fps: frame rate of ``video_frames``.
        reference: [H, W, 3] identity image for CSIM.
        ground_truth: [F', H', W', 3] real video for LMD, FID, FVD and ADFD's spatial part.
        metrics: any of "adfd", "lmd", "csim", "sync", "fid", "fvd". A metric whose input
            is absent (LMD without ground truth, CSIM without reference) is reported as
            ``{"skipped": reason}``.
        backend: face backend, "auto" | "mediapipe" | "colour" | "fallback".
        weights: local weight files: {"syncnet": path, "inception": path, "i3d": path}.
        embedder: identity embedder for CSIM (default: colour histogram, not a face model).

    Returns a JSON-serialisable dict; each metric names the model and version behind it.
    """
    frames = _as_uint8(video_frames)
    if frames.shape[0] == 0:
        raise ValueError("the video has no frames")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; available: {METRICS}")
    audio16 = to_mono_16k(audio, sample_rate)
    weights = weights or {}
    backend = resolve_backend(backend, face_model_path)
    obs = analyze_video(frames, backend, cache_dir, face_model_path)
    gt_frames = None if ground_truth is None else _as_uint8(ground_truth)
    gt_obs = None if gt_frames is None else analyze_video(gt_frames, backend, cache_dir, face_model_path)
    face_model = _face_model(backend)

    out: dict = {
        "frames": int(frames.shape[0]),
        "fps": float(fps),
        "audio_seconds": round(len(audio16) / SAMPLE_RATE, 4),
        "face_backend": face_model,
        "frames_without_face": [i for i, o in enumerate(obs) if o is None],
        "metrics": {},
    }
    m = out["metrics"]
    for name in metrics:
        if name == "adfd":
            r = adfd(obs, audio16, fps, gt_obs, **(adfd_options or {}))
            out["series"] = r.pop("series")
            m["adfd"] = {**r, "model": face_model}
        elif name == "lmd":
            if gt_obs is None:
                m["lmd"] = {"skipped": "needs a ground-truth video"}
                continue
            mouth, face = lmd(obs, gt_obs, "mouth"), lmd(obs, gt_obs, "face")
            m["lmd"] = {"value": mouth["value"], "mouth": mouth, "face": face, "model": face_model,
                        "version": "lmd-0.1"}
        elif name == "csim":
            if reference is None:
                m["csim"] = {"skipped": "needs a reference image"}
                continue
            ref = _as_uint8(reference)[0]
            ref_obs = analyze_video(ref[None], backend, None, face_model_path)[0]
            m["csim"] = csim(ref, frames, embedder or ColourHistogramEmbedder(), ref_obs, obs)
        elif name == "sync":
            if abs(fps - 25.0) > 1e-3:
                raise ValueError(f"SyncNet expects 25 fps video; this one is {fps} fps (resample it first)")
            from .syncnet import sync_metrics
            m["sync"] = sync_metrics(frames, obs, audio16, weights.get("syncnet"), device=device)
        elif name in ("fid", "fvd"):
            if gt_frames is None:
                m[name] = {"skipped": "needs a ground-truth video"}
                continue
            if name == "fid":
                from .frechet import fid
                m["fid"] = fid(frames, gt_frames, weights.get("inception"), device)
            else:
                from .fvd import fvd
                m["fvd"] = fvd(frames, gt_frames, weights.get("i3d"), device)
    return out


def _face_model(backend: str) -> dict:
    if backend == "mediapipe":
        return {"name": "mediapipe face_landmarker", "version": mediapipe_backend.mediapipe_version(),
                "model_file": mediapipe_backend.find_model_path()}
    if backend == "colour":
        return {"name": "synthtalk colour analyser", "version": "1"}
    return {"name": "fallback centre box (no landmarks)", "version": "1"}


def summary_row(result: dict) -> dict:
    """Flat headline numbers of one :func:`evaluate` result, for tables."""
    m = result.get("metrics", {})
    row = {"frames": result.get("frames")}
    adfd_r = m.get("adfd", {})
    for key in ("score", "spatial", "temporal", "jitter", "lag"):
        if key in adfd_r:
            row[f"adfd_{key}" if key != "score" else "adfd"] = adfd_r[key]
    for name in ("lmd", "csim", "fid", "fvd"):
        if "value" in m.get(name, {}):
            row[name] = m[name]["value"]
    if "sync_c" in m.get("sync", {}):
        row["sync_c"], row["sync_d"] = m["sync"]["sync_c"], m["sync"]["sync_d"]
    return row


def evaluate_each(frames: np.ndarray, waveform, sample_rate: int, fps: float, metrics: list[str], backend: str,
                  *, reference=None, ground_truth=None, cache_dir=None) -> dict:
    """`evaluate()` one metric at a time (the Evaluate node's way), so that one that cannot be measured on
    these frames (a ValueError: no face, no landmarks, too few frames) becomes {"error": reason} while the
    others still report. The face analysis runs once: later calls read it from `cache_dir`."""
    merged: dict | None = None
    errors: dict[str, dict] = {}
    for name in metrics:
        try:
            r = evaluate(frames, waveform, sample_rate, fps, reference=reference, ground_truth=ground_truth,
                         metrics=(name,), backend=backend, cache_dir=cache_dir)
        except ValueError as exc:
            errors[name] = {"error": str(exc)}
            continue
        if merged is None:
            merged = r
        else:
            merged["metrics"].update(r["metrics"])
            merged.update({k: v for k, v in r.items() if k == "series"})
    if merged is None:
        merged = {"frames": int(frames.shape[0]), "fps": fps, "metrics": {}}
    merged["metrics"].update(errors)
    merged["metrics"] = {name: merged["metrics"][name] for name in metrics}  # in the order asked for
    return merged


def finite(obj):
    """`obj` with every non-finite float replaced by None (and numpy scalars made plain): NaN is not JSON."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


__all__ = ["evaluate", "evaluate_each", "finite", "summary_row", "METRICS", "DEFAULT_METRICS"]
