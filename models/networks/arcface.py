"""The ArcFace face embedding Hallo's identity tokens are made from, through a user-supplied ONNX model.

Hallo embeds the reference with insightface's recognition model (antelopev2's `glintr100.onnx`) and uses
the raw (not normalised) 512-d embedding of the largest face. This module does the same without
insightface: the face is aligned to insightface's 112×112 ArcFace template by a similarity transform of
five points taken from mediapipe's face mesh (eye centres, nose tip, mouth corners), and the ONNX model runs
on onnxruntime's CPU provider (an optional dependency). Without onnxruntime or a model file, the embedding
is zeros, which is what Hallo itself uses for a photo without a face; identity is then weaker, and a
warning says so. insightface's model files are licensed for non-commercial research only.

Where the model is looked for: an explicit path, `$PORTRAITTALK_ARCFACE`, `models/portraittalk/face/`
(the nodes pass it), then insightface's usual folder `~/.insightface/models/<pack>/`; `glintr100.onnx`
(what Hallo uses) is preferred over other `.onnx` files there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ENV_MODEL = "PORTRAITTALK_ARCFACE"
PREFERRED = "glintr100.onnx"
# insightface's ArcFace template for a 112×112 crop: left eye, right eye (as seen), nose, mouth corners.
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                     [70.7299, 92.2041]], np.float64)
SIZE = 112
EMBED_DIM = 512
WEAK_IDENTITY = ("no ArcFace model (onnxruntime and a face-recognition .onnx such as insightface's glintr100.onnx "
                 "in models/portraittalk/face) — using Hallo's zero face embedding: identity will be weaker")
_warned: set[str] = set()
_sessions: dict[str, object] = {}


def find_model(path: str | os.PathLike | None = None, folders=()) -> str | None:
    """The face-recognition ONNX file to use, or None."""
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ArcFace model not found at {os.fspath(path)!r}")
        return os.fspath(path)
    if os.environ.get(ENV_MODEL) and os.path.isfile(os.environ[ENV_MODEL]):
        return os.environ[ENV_MODEL]
    roots = [Path(f) for f in folders] + sorted(Path.home().joinpath(".insightface", "models").glob("*"))
    for root in roots:
        if (root / PREFERRED).is_file():
            return str(root / PREFERRED)
    for root in [Path(f) for f in folders]:
        found = sorted(root.glob("*.onnx"))
        if found:
            return str(found[0])
    return None


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """ArcFace's five points from mediapipe face-mesh landmarks `[478 or 468, 2]` (pixels)."""
    pts = np.asarray(landmarks, np.float64)
    if len(pts) >= 478:  # iris centres
        left, right = pts[468], pts[473]
    else:
        left, right = (pts[33] + pts[133]) / 2, (pts[362] + pts[263]) / 2
    eyes = sorted([left, right], key=lambda p: p[0])  # the template's first eye is the one on the image's left
    mouth = sorted([pts[61], pts[291]], key=lambda p: p[0])
    return np.stack([eyes[0], eyes[1], pts[1], mouth[0], mouth[1]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity transform (Umeyama) taking `src` points to `dst`; 2×3."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    a, b = src - src_mean, dst - dst_mean
    cov = b.T @ a / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = (s * d).sum() / a.var(0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112×112 aligned face (uint8 RGB) from an RGB image `[H, W, 3]` and its face-mesh landmarks."""
    from ...faces.warp import invert, warp_affine

    forward = similarity(five_points(landmarks), TEMPLATE)  # in pixel-index coordinates, as insightface's

    def shift(d):
        return np.array([[1.0, 0.0, d], [0.0, 1.0, d], [0.0, 0.0, 1.0]])

    # faces.warp reads at pixel-centre coordinates (index + 0.5)
    to_source = (shift(0.5) @ np.vstack([invert(forward), [0, 0, 1]]) @ shift(-0.5))[:2]
    image = np.asarray(image)
    src = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    out = warp_affine(src, to_source, SIZE, SIZE)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _session(path: str):
    if path not in _sessions:
        import onnxruntime

        _sessions[path] = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return _sessions[path]


def run_model(session, face: np.ndarray) -> np.ndarray:
    """insightface's ArcFace preprocessing: RGB, (x − 127.5) / 127.5, NCHW; the raw embedding."""
    blob = ((face.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: blob})[0], np.float32).reshape(-1)


def embed(image: np.ndarray, landmarks: np.ndarray | None, model_path: str | None = None, *, session=None,
          warn=log.warning, dim: int = EMBED_DIM) -> tuple[np.ndarray, str]:
    """(512-d embedding, how it was made). Zeros, with a warning, when there is no model, no onnxruntime
    or no face."""
    reason = None
    if landmarks is None:
        reason = "no face landmarks in the reference (face tools missing or no face found)"
    elif session is None:
        if model_path is None:
            reason = "no model file"
        else:
            try:
                session = _session(model_path)
            except ImportError:
                reason = "onnxruntime is not installed (`pip install onnxruntime`)"
    if reason is not None:
        message = f"{WEAK_IDENTITY} ({reason})"
        if message not in _warned:
            warn(message)
            _warned.add(message)
        return np.zeros(dim, np.float32), f"zeros: {reason}"
    return run_model(session, align(image, landmarks)), f"arcface: {model_path or 'given session'}"
