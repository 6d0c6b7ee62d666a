"""Which landmark rows are the mouth, the face outline and the eyes, per analyser.

Metrics (LMD, ADFD) and masks select landmark subsets by name through
:func:`landmark_indices`, so they work the same on mediapipe's 478-point mesh and on the
colour analyser's small contour set.
"""

from __future__ import annotations

import numpy as np

# --- mediapipe Face Landmarker mesh (478 points: 468 mesh + 10 iris) ---------------------
# Index lists are facts of mediapipe's canonical face mesh, in polygon order; a test
# checks them against mediapipe's own FaceLandmarksConnections when it is installed.
MP_FACE_OVAL = [
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
]
MP_LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
MP_LIPS_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
# Lower face outline (jaw) from ear to ear through the chin.
MP_JAW = [454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234]
MP_INNER_LIP_TOP, MP_INNER_LIP_BOTTOM = 13, 14
MP_MOUTH_LEFT, MP_MOUTH_RIGHT = 61, 291
MP_FOREHEAD, MP_CHIN = 10, 152
MP_RIGHT_EYE_OUTER, MP_LEFT_EYE_OUTER = 33, 263  # subject's right/left eye corners

# --- colour analyser (SynthTalk) ---------------------------------------------------------
# 16 points on the mouth contour at fixed angles, then 16 on the face outline.
COLOUR_RAYS = 16
COLOUR_MOUTH = list(range(0, COLOUR_RAYS))
COLOUR_FACE = list(range(COLOUR_RAYS, 2 * COLOUR_RAYS))

_LAYOUTS = {
    "mediapipe": {
        "mouth": MP_LIPS_OUTER + MP_LIPS_INNER,
        "lips_outer": MP_LIPS_OUTER,
        "face": MP_FACE_OVAL,
        "jaw": MP_JAW,
        "mouth_jaw": MP_LIPS_OUTER + MP_LIPS_INNER + MP_JAW,
        # Points that move with the head but not (much) with speech: jitter is read here.
        "stable": [i for i in MP_FACE_OVAL if i not in MP_JAW] + [33, 133, 263, 362, 1, 4],
    },
    "colour": {
        "mouth": COLOUR_MOUTH,
        "lips_outer": COLOUR_MOUTH,
        "face": COLOUR_FACE,
        "jaw": COLOUR_FACE[COLOUR_RAYS // 8: COLOUR_RAYS // 2 + COLOUR_RAYS // 8 + 1],
        "mouth_jaw": COLOUR_MOUTH + COLOUR_FACE,
        "stable": COLOUR_FACE,
    },
}


def landmark_indices(source: str, region: str) -> list[int]:
    """Rows of ``region`` ("mouth", "face", "jaw", "mouth_jaw", "lips_outer", "stable")."""
    try:
        return _LAYOUTS[source][region]
    except KeyError:
        raise ValueError(
            f"no landmark layout for source {source!r}, region {region!r}; "
            f"sources with landmarks: {sorted(_LAYOUTS)}"
        ) from None


def select(landmarks: np.ndarray, source: str, region: str) -> np.ndarray:
    """The [K, 2] rows of ``region`` from a [N, 2] landmark array."""
    idx = landmark_indices(source, region)
    return np.asarray(landmarks)[idx]


def normalise(points: np.ndarray, box) -> np.ndarray:
    """Landmarks relative to the face: origin at the box centre, unit = box height.

    This removes head translation and scale (not rotation), so distances read as
    fractions of the face height whatever the resolution.
    """
    x0, y0, x1, y1 = box
    h = max(float(y1 - y0), 1e-6)
    centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
    return (np.asarray(points, np.float64) - centre) / h
