"""Batch face analysis with a choice of backend, and gap filling over a video."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from . import mediapipe_backend
from .colour import analyze_synthtalk
from .observation import FaceObservation

log = logging.getLogger(__name__)
BACKENDS = ("auto", "mediapipe", "colour", "fallback")
_warned_missing = False


def resolve_backend(backend: str = "auto", model_path: str | None = None) -> str:
    """The backend "auto" means here: mediapipe when installed, else the fallback."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown face backend {backend!r}; choose one of {BACKENDS}")
    if backend != "auto":
        return backend
    if mediapipe_backend.is_available(model_path):
        return "mediapipe"
    global _warned_missing
    if not _warned_missing:
        log.warning(mediapipe_backend.INSTALL_HINT)
        _warned_missing = True
    return "fallback"


def fallback_observation(height: int, width: int, fraction: float = 0.8) -> FaceObservation:
    """A centred square covering ``fraction`` of the shorter side: a guess, not a detection."""
    side = fraction * min(height, width)
    cx, cy = width / 2.0, height / 2.0
    return FaceObservation(
        box=(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2),
        landmarks=None, score=0.0, source="fallback",
    )


def detect_faces(frames: np.ndarray, backend: str = "auto", model_path: str | None = None,
                 **colour_options) -> list[FaceObservation | None]:
    """Analyse frames [F, H, W, 3] (uint8, or float 0..1); one entry per frame.

    backend: "mediapipe" (landmark mesh), "colour" (SynthTalk mouth colour),
    "fallback" (centre square for every frame, no landmarks), or "auto" (mediapipe
    when installed, else fallback with a logged install hint). A frame without a face
    gives None; nothing here raises for a faceless frame.
    """
    frames = _as_uint8(frames)
    if frames.shape[0] == 0:
        return []
    backend = resolve_backend(backend, model_path)
    if backend == "colour":
        return analyze_synthtalk(frames, **colour_options)
    if backend == "mediapipe":
        return mediapipe_backend.detect_mediapipe(frames, model_path)
    h, w = frames.shape[1:3]
    return [fallback_observation(h, w) for _ in range(frames.shape[0])]


@dataclass
class FaceTrack:
    """Per-frame observations with every gap filled.

    Attributes:
        observations: one observation per frame, never None.
        filled_frames: indices whose observation was copied from a neighbour (the last
            good frame; frames before the first good one take the first good one) or,
            when no frame had a face, made by the fallback.
        found_any: False when no frame had a face at all.
    """

    observations: list[FaceObservation]
    filled_frames: list[int]
    found_any: bool

    @classmethod
    def from_observations(cls, observations: list[FaceObservation | None], height: int,
                          width: int) -> "FaceTrack":
        good = [i for i, o in enumerate(observations) if o is not None]
        if not good:
            fb = fallback_observation(height, width)
            return cls([dataclasses.replace(fb, filled=True) for _ in observations],
                       list(range(len(observations))), False)
        filled, out = [], []
        last = observations[good[0]]
        for i, o in enumerate(observations):
            if o is None:
                filled.append(i)
                out.append(dataclasses.replace(last, filled=True))
            else:
                last = o
                out.append(o)
        return cls(out, filled, True)

    @property
    def boxes(self) -> np.ndarray:
        """[F, 4] boxes."""
        return np.array([o.box for o in self.observations], np.float64)

    def smoothed_boxes(self, window: int = 5) -> np.ndarray:
        """[F, 4] boxes after a centred moving average; steadier crops for video."""
        boxes = self.boxes
        if window <= 1 or len(boxes) < 2:
            return boxes
        k = np.ones(window) / window
        padded = np.pad(boxes, ((window // 2, window - 1 - window // 2), (0, 0)), mode="edge")
        return np.stack([np.convolve(padded[:, j], k, mode="valid") for j in range(4)], axis=1)


def track_faces(frames: np.ndarray, backend: str = "auto", model_path: str | None = None) -> FaceTrack:
    """detect_faces followed by gap filling."""
    frames = _as_uint8(frames)
    obs = detect_faces(frames, backend, model_path)
    return FaceTrack.from_observations(obs, frames.shape[1], frames.shape[2])


def _as_uint8(frames) -> np.ndarray:
    f = np.asarray(frames)
    if f.ndim == 3:
        f = f[None]
    if f.ndim != 4 or f.shape[-1] not in (3, 4):
        raise ValueError(f"expected frames [F, H, W, 3], got shape {f.shape}")
    f = f[..., :3]
    if f.dtype != np.uint8:
        f = np.clip(np.rint(f.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return f
