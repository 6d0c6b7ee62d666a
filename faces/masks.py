"""Face-region masks: the structure map that conditions the sampler (the structure row of docs/architecture.md,
"Decisions beyond what the paper states")."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.spatial import ConvexHull, QhullError

from . import layouts
from .observation import FaceObservation

# Lip ellipse inside a face box when there are no landmarks: centre and size as fractions.
LIP_ELLIPSE = {"cx": 0.5, "cy": 0.75, "w": 0.45, "h": 0.18}


def face_region_mask(obs: FaceObservation | None, height: int, width: int, kind: str = "face",
                     blur: float = 0.0, supersample: int = 4) -> np.ndarray:
    """float32 [H, W] in 0..1: the face (or lip) region of ``obs``.

    With landmarks: the filled convex hull of the face oval (``kind="face"``) or of the
    outer lips (``kind="lip"``). Without landmarks: an ellipse inscribed in the box, or a
    lip ellipse in its lower part. ``None`` gives an all-zero mask. Edges are
    anti-aliased by drawing at ``supersample``× and averaging; ``blur`` (pixels) softens
    them further.
    """
    if kind not in ("face", "lip"):
        raise ValueError(f"kind must be 'face' or 'lip', got {kind!r}")
    if obs is None:
        return np.zeros((height, width), np.float32)
    s = max(int(supersample), 1)
    canvas = Image.new("L", (width * s, height * s), 0)
    draw = ImageDraw.Draw(canvas)
    polygon = _landmark_polygon(obs, kind)
    if polygon is not None:
        draw.polygon([(float(x) * s, float(y) * s) for x, y in polygon], fill=255)
    else:
        draw.ellipse(_ellipse_box(obs, kind, s), fill=255)
    if s > 1:
        canvas = canvas.resize((width, height), Image.BOX)
    if blur > 0:
        canvas = canvas.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(canvas, np.float32) / 255.0


def masks_for_frames(observations, height: int, width: int, kind: str = "face", **kw) -> np.ndarray:
    """[F, H, W] masks, one per observation."""
    return np.stack([face_region_mask(o, height, width, kind, **kw) for o in observations]) \
        if len(observations) else np.zeros((0, height, width), np.float32)


def _landmark_polygon(obs: FaceObservation, kind: str):
    if obs.landmarks is None or obs.source not in ("mediapipe", "colour"):
        return None
    pts = layouts.select(obs.landmarks, obs.source, "face" if kind == "face" else "lips_outer")
    pts = np.asarray(pts, np.float64)
    try:
        hull = ConvexHull(pts)
    except (QhullError, ValueError):  # all points on a line (closed mouth): no area
        return None if kind == "face" else pts[[0]].repeat(3, axis=0)
    return pts[hull.vertices]


def _ellipse_box(obs: FaceObservation, kind: str, s: int):
    x0, y0, x1, y1 = obs.box
    if kind == "face":
        return [x0 * s, y0 * s, x1 * s, y1 * s]
    w, h = x1 - x0, y1 - y0
    cx, cy = x0 + LIP_ELLIPSE["cx"] * w, y0 + LIP_ELLIPSE["cy"] * h
    hw, hh = LIP_ELLIPSE["w"] * w / 2, LIP_ELLIPSE["h"] * h / 2
    return [(cx - hw) * s, (cy - hh) * s, (cx + hw) * s, (cy + hh) * s]
