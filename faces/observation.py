"""What one analysed frame tells about its face: :class:`FaceObservation`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Which analyser produced an observation. "fallback" means no face was actually found:
# the box is a guess (a centred square) and there is no mouth measurement.
SOURCES = ("mediapipe", "colour", "fallback")


@dataclass
class FaceObservation:
    """One face in one frame.

    Attributes:
        box: (x0, y0, x1, y1) in pixels, x to the right, y down, x1/y1 exclusive edges.
        landmarks: [N, 2] pixel coordinates, or None when the analyser gives none. The
            meaning of each row depends on ``source`` (see :mod:`.layouts`).
        score: detector confidence in 0..1 (0 for the fallback).
        mouth_open: inner-lip aperture divided by the face height (NaN when unknown).
        mouth_width: mouth-corner distance divided by the face height (NaN when unknown).
        source: "mediapipe", "colour" or "fallback".
        filled: True when a :class:`FaceTrack` copied this from a neighbouring frame.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None
    score: float = 1.0
    mouth_open: float = float("nan")
    mouth_width: float = float("nan")
    source: str = "fallback"
    filled: bool = field(default=False, compare=False)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def centre(self) -> tuple[float, float]:
        return (0.5 * (self.box[0] + self.box[2]), 0.5 * (self.box[1] + self.box[3]))

    @property
    def is_detection(self) -> bool:
        """True when a real analyser found this face (not the centre-crop guess)."""
        return self.source != "fallback"

    def to_dict(self) -> dict:
        """JSON-friendly dict (landmarks as nested lists)."""
        return {
            "box": [float(v) for v in self.box],
            "landmarks": None if self.landmarks is None else np.asarray(self.landmarks, float).tolist(),
            "score": float(self.score),
            "mouth_open": _json_float(self.mouth_open),
            "mouth_width": _json_float(self.mouth_width),
            "source": self.source,
            "filled": bool(self.filled),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "FaceObservation":
        lm = d.get("landmarks")
        return cls(
            box=tuple(float(v) for v in d["box"]),
            landmarks=None if lm is None else np.asarray(lm, np.float32).reshape(-1, 2),
            score=float(d.get("score", 1.0)),
            mouth_open=float("nan") if d.get("mouth_open") is None else float(d["mouth_open"]),
            mouth_width=float("nan") if d.get("mouth_width") is None else float(d["mouth_width"]),
            source=str(d.get("source", "fallback")),
            filled=bool(d.get("filled", False)),
        )


def _json_float(v: float) -> float | None:
    # JSON has no NaN; None reads as "unknown".
    v = float(v)
    return None if not np.isfinite(v) else v
