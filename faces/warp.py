"""Affine resampling of float images with PIL, anti-aliased when shrinking.

Coordinates are continuous: pixel (i, j) covers [j, j+1) × [i, i+1), so its centre is at
(j + 0.5, i + 0.5). PIL's AFFINE transform uses the same convention.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def warp_affine(src: np.ndarray, matrix: np.ndarray, out_width: int, out_height: int) -> np.ndarray:
    """Resample ``src`` [h, w, C] float32 so that output pixel (x, y) reads ``src`` at
    ``matrix @ (x, y, 1)`` (a 2×3 matrix from output to source coordinates).

    Outside ``src`` the result is 0. When the map shrinks by more than 1.5×, the source
    is first reduced with a box filter so thin detail does not alias.
    """
    src = np.asarray(src, np.float32)
    if src.ndim == 2:
        src = src[..., None]
    m = np.asarray(matrix, np.float64).reshape(2, 3).copy()
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale > 1.5:
        new_w = max(1, int(round(src.shape[1] / scale)))
        new_h = max(1, int(round(src.shape[0] / scale)))
        sx, sy = new_w / src.shape[1], new_h / src.shape[0]
        src = np.stack([_resize(src[..., c], new_w, new_h) for c in range(src.shape[-1])], axis=-1)
        m[0] *= sx
        m[1] *= sy
    coeffs = tuple(m.ravel())
    out = [
        np.asarray(Image.fromarray(np.ascontiguousarray(src[..., c])).transform(
            (out_width, out_height), Image.AFFINE, coeffs, resample=Image.BICUBIC, fillcolor=0.0))
        for c in range(src.shape[-1])
    ]
    return np.stack(out, axis=-1)


def _resize(channel: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(channel)).resize((w, h), Image.BOX))


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2×3 affine maps: first ``b``, then ``a``."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def invert(m: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
