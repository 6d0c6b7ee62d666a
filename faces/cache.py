"""Per-video analysis cache, keyed by a hash of the frames' content.

Analysing a long video with mediapipe takes a while and evaluation often revisits the
same video (several metrics, several runs). Results are stored as one ``.npz`` per
(content, backend, analyser version) with ``allow_pickle=False``: plain arrays only.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from . import mediapipe_backend
from .detect import _as_uint8, detect_faces, resolve_backend
from .observation import FaceObservation

# Bump when an analyser's output changes meaning, so stale cache files are ignored.
ANALYSER_VERSION = "1"


def frames_hash(frames: np.ndarray) -> str:
    """Content hash of uint8 frames, including their shape."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(frames.shape).encode())
    h.update(np.ascontiguousarray(frames).tobytes())
    return h.hexdigest()


def analyze_video(frames: np.ndarray, backend: str = "auto", cache_dir: str | os.PathLike | None = None,
                  model_path: str | None = None) -> list[FaceObservation | None]:
    """:func:`detect_faces` over a whole video, reusing a cached result when present."""
    frames = _as_uint8(frames)
    backend = resolve_backend(backend, model_path)
    if cache_dir is None:
        return detect_faces(frames, backend, model_path)
    version = mediapipe_backend.mediapipe_version() if backend == "mediapipe" else ""
    key = f"{frames_hash(frames)}-{backend}-v{ANALYSER_VERSION}{'-mp' + version if version else ''}"
    path = os.path.join(os.fspath(cache_dir), f"faces-{key}.npz")
    if os.path.isfile(path):
        try:
            return load_observations(path)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is recomputed, never fatal
    obs = detect_faces(frames, backend, model_path)
    os.makedirs(os.fspath(cache_dir), exist_ok=True)
    tmp = path + ".tmp.npz"
    save_observations(tmp, obs)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return obs


def save_observations(path: str, observations: list[FaceObservation | None]) -> None:
    n = len(observations)
    present = np.array([o is not None for o in observations], bool)
    n_lm = max((len(o.landmarks) for o in observations if o is not None and o.landmarks is not None), default=0)
    boxes = np.full((n, 4), np.nan)
    lms = np.full((n, n_lm, 2), np.nan, np.float32)
    has_lm = np.zeros(n, bool)
    scalars = np.full((n, 3), np.nan)
    sources = np.array([o.source if o is not None else "" for o in observations], dtype="U16")
    for i, o in enumerate(observations):
        if o is None:
            continue
        boxes[i] = o.box
        scalars[i] = (o.score, o.mouth_open, o.mouth_width)
        if o.landmarks is not None:
            lms[i, : len(o.landmarks)] = o.landmarks
            has_lm[i] = True
    np.savez(path, present=present, boxes=boxes, landmarks=lms, has_landmarks=has_lm,
             scalars=scalars, sources=sources)


def load_observations(path: str) -> list[FaceObservation | None]:
    with np.load(path, allow_pickle=False) as z:
        present, boxes, lms, has_lm = z["present"], z["boxes"], z["landmarks"], z["has_landmarks"]
        scalars, sources = z["scalars"], z["sources"]
    out: list[FaceObservation | None] = []
    for i in range(len(present)):
        if not present[i]:
            out.append(None)
            continue
        out.append(FaceObservation(
            box=tuple(float(v) for v in boxes[i]),
            landmarks=lms[i].copy() if has_lm[i] else None,
            score=float(scalars[i, 0]), mouth_open=float(scalars[i, 1]), mouth_width=float(scalars[i, 2]),
            source=str(sources[i]),
        ))
    return out
