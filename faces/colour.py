"""Colour analyser for SynthTalk frames: the mouth is found by its colour.

SynthTalk draws the mouth interior in exactly RGB (110, 20, 35) on a solid background
(docs/training.md, "SynthTalk"), so mouth opening can be measured in any frame, real or generated, with
no landmark model. Generated frames are never exact, hence a tolerance:

* a pixel is "mouth" when its Euclidean RGB distance to (110, 20, 35) is below
  ``tolerance`` (default 40 on the 0..255 scale: wide enough for the colour drift seen
  in generated frames, yet far from skin tones and every palette
  background; use ~1 for SynthTalk's own renders);
* the background colour is the median of the frame's border pixels, and the face is
  the largest connected region farther than ``background_tolerance`` from it (a hat or
  glasses belong to it, so the box can include them).

Shapes are read from image moments rather than pixel extremes, so they change smoothly
with the drawn size: an ellipse's vertical standard deviation is a quarter of its
height, so the aperture is ``4·std_y`` of the mouth pixels, which is 0 for a closed,
one-row mouth.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .layouts import COLOUR_RAYS
from .observation import FaceObservation

SYNTHTALK_MOUTH_RGB = (110, 20, 35)
DEFAULT_MOUTH_TOLERANCE = 40.0
DEFAULT_BACKGROUND_TOLERANCE = 30.0
# Where a closed mouth sits when no mouth pixel is visible: fraction of the face box.
CLOSED_MOUTH_POSITION = (0.5, 0.72)


def colour_distance(frame: np.ndarray, rgb) -> np.ndarray:
    """Euclidean RGB distance of every pixel to ``rgb`` on the 0..255 scale, [H, W]."""
    diff = _as_uint8_scale(frame) - np.asarray(rgb, np.float32)
    return np.sqrt(np.einsum("hwc,hwc->hw", diff, diff))


def mouth_mask(frame: np.ndarray, tolerance: float = DEFAULT_MOUTH_TOLERANCE,
               rgb=SYNTHTALK_MOUTH_RGB) -> np.ndarray:
    """Boolean [H, W]: pixels within ``tolerance`` of the mouth colour."""
    return colour_distance(frame, rgb) < tolerance


def background_colour(frame: np.ndarray) -> np.ndarray:
    """Median colour of the one-pixel border: the solid SynthTalk background."""
    f = _as_uint8_scale(frame)
    border = np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]], axis=0)
    return np.median(border, axis=0)


def analyze_synthtalk(
    frames: np.ndarray,
    tolerance: float = DEFAULT_MOUTH_TOLERANCE,
    background_tolerance: float = DEFAULT_BACKGROUND_TOLERANCE,
    mouth_rgb=SYNTHTALK_MOUTH_RGB,
) -> list[FaceObservation | None]:
    """Analyse SynthTalk-like frames [F, H, W, 3] (uint8, or float in 0..1).

    Returns one observation per frame, or None where no face region stands out from the
    background. A face with no visible mouth pixel gets ``mouth_open == 0`` (closed).
    Landmarks: 16 points on the mouth's moment ellipse, then 16 on the face's
    (see :mod:`.layouts`).
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    return [
        _analyse_frame(f, tolerance, background_tolerance, mouth_rgb) for f in frames
    ]


def _analyse_frame(frame, tolerance, background_tolerance, mouth_rgb) -> FaceObservation | None:
    h, w = frame.shape[:2]
    face = colour_distance(frame, background_colour(frame)) > background_tolerance
    face = _largest_component(ndimage.binary_opening(face, iterations=1))
    if face is None or face.sum() < 0.005 * h * w:
        return None
    ys, xs = np.nonzero(face)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    face_h = box[3] - box[1]
    face_points = _ellipse_points(*_moment_ellipse(xs, ys))

    x0, y0, x1, y1 = (int(v) for v in box)
    in_box = np.zeros_like(face)
    in_box[y0:y1, x0:x1] = True
    mouth = _largest_component(mouth_mask(frame, tolerance, mouth_rgb) & in_box)
    if mouth is None:
        cx = box[0] + CLOSED_MOUTH_POSITION[0] * (box[2] - box[0])
        cy = box[1] + CLOSED_MOUTH_POSITION[1] * face_h
        mouth_points = np.tile([cx, cy], (COLOUR_RAYS, 1))
        mouth_open = mouth_width = 0.0
    else:
        mys, mxs = np.nonzero(mouth)
        centre, semi_x, semi_y = _moment_ellipse(mxs, mys)
        mouth_points = _ellipse_points(centre, semi_x, semi_y)
        mouth_open = 2.0 * semi_y / face_h
        mouth_width = 2.0 * semi_x / face_h
    landmarks = np.concatenate([mouth_points, face_points]).astype(np.float32)
    return FaceObservation(
        box=box, landmarks=landmarks, score=1.0, mouth_open=float(mouth_open),
        mouth_width=float(mouth_width), source="colour",
    )


def _moment_ellipse(xs: np.ndarray, ys: np.ndarray):
    """Centre and axis-aligned semi-axes of the ellipse with the pixels' moments.

    Pixel centres are at +0.5. For a filled ellipse, std along an axis is half the
    semi-axis, so semi-axis = 2·std.
    """
    xs = xs.astype(np.float64) + 0.5
    ys = ys.astype(np.float64) + 0.5
    centre = np.array([xs.mean(), ys.mean()])
    return centre, 2.0 * xs.std(), 2.0 * ys.std()


def _ellipse_points(centre, semi_x, semi_y, n: int = COLOUR_RAYS) -> np.ndarray:
    # Angle 0 points right, angles grow clockwise on screen (y down): a fixed order, so
    # row k means the same place in every frame.
    t = 2.0 * np.pi * np.arange(n) / n
    return np.stack([centre[0] + semi_x * np.cos(t), centre[1] + semi_y * np.sin(t)], axis=1)


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())


def _as_uint8_scale(frame: np.ndarray) -> np.ndarray:
    """Frame as float32 on the 0..255 scale, whether it came as uint8 or 0..1 float."""
    f = np.asarray(frame)
    if f.dtype == np.uint8:
        return f.astype(np.float32)
    return f.astype(np.float32) * 255.0
