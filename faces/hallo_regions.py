"""Hallo's face and lip boxes of a reference, from face-mesh landmarks (or, without face tools, from the crop box).

Hallo builds them from mediapipe's face mesh of the reference image: the face box is the box around the
face-oval landmarks expanded by `face_expand` (1.2) about its centre, shifted back inside the image; the lip box
the same around the lip landmarks with `lip_expand` (2.0). Without landmarks the face box is the centre square
that the face tools guess for a faceless photo, and the lip box the region of it where `masks` puts its lip
ellipse. The blurred masks the audio modules use are made from these boxes in `models/networks/hallo_masks.py`.
"""

from __future__ import annotations

import numpy as np

from .layouts import MP_FACE_OVAL, MP_LIPS_OUTER
from .masks import LIP_ELLIPSE

FACE_OVAL, LIPS = MP_FACE_OVAL, MP_LIPS_OUTER  # Hallo's boxes: around the face oval and the outer lips
LIP_IN_FACE = tuple(LIP_ELLIPSE[k] for k in ("cx", "cy", "w", "h"))  # centre x, y, width, height


def expand_box(x0: float, x1: float, y0: float, y1: float, width: int, height: int, ratio: float):
    """Hallo's box expansion: about the (floored) centre, then shifted back inside the image."""
    mid_x, mid_y = (x1 + x0) // 2, (y1 + y0) // 2
    side_x, side_y = (x1 - x0) * ratio, (y1 - y0) * ratio
    x0, x1 = mid_x - side_x // 2, mid_x + side_x // 2
    y0, y1 = mid_y - side_y // 2, mid_y + side_y // 2
    if x0 < 0:
        x1, x0 = x1 - x0, 0
    if x1 > width:
        x0, x1 = x0 - (x1 - width), width
    if y0 < 0:
        y1, y0 = y1 - y0, 0
    if y1 > height:
        y0, y1 = y0 - (y1 - height), height
    return round(x0), round(x1), round(y0), round(y1)


def box_mask(box, width: int, height: int) -> np.ndarray:
    x0, x1, y0, y1 = box
    mask = np.zeros((height, width), np.uint8)
    mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 255
    return mask


def region_boxes(height: int, width: int, landmarks: np.ndarray | None = None, box=None, *,
                 face_expand: float = 1.2, lip_expand: float = 2.0) -> tuple[np.ndarray, np.ndarray, str]:
    """(face box, lip box) as uint8 masks `[height, width]` (255 inside), and their source ("landmarks" or
    "box"), from mediapipe face-mesh landmarks `[478 or 468, 2]` (pixels), or from a face `box`
    (x0, y0, x1, y1) when there are none (the centre square the face tools guess, by default)."""
    if landmarks is not None and len(landmarks) >= 468:
        oval, lips = np.asarray(landmarks)[FACE_OVAL], np.asarray(landmarks)[LIPS]
        face = (*np.round([oval[:, 0].min(), oval[:, 0].max()]), *np.round([oval[:, 1].min(), oval[:, 1].max()]))
        lip = (*np.round([lips[:, 0].min(), lips[:, 0].max()]), *np.round([lips[:, 1].min(), lips[:, 1].max()]))
        source = "landmarks"
    else:
        if box is None:
            side = 0.8 * min(height, width)
            box = (width / 2 - side / 2, height / 2 - side / 2, width / 2 + side / 2, height / 2 + side / 2)
        x0, y0, x1, y1 = (float(v) for v in box)
        face = (round(x0), round(x1), round(y0), round(y1))
        cx, cy, w, h = LIP_IN_FACE
        lx, ly, lw, lh = x0 + cx * (x1 - x0), y0 + cy * (y1 - y0), w * (x1 - x0), h * (y1 - y0)
        lip = (round(lx - lw / 2), round(lx + lw / 2), round(ly - lh / 2), round(ly + lh / 2))
        source = "box"
    face_box = box_mask(expand_box(*face, width, height, face_expand), width, height)
    lip_box = box_mask(expand_box(*lip, width, height, lip_expand), width, height)
    return face_box, lip_box, source
