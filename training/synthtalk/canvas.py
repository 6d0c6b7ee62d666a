"""The drawing surface SynthTalk paints faces on: anti-aliased signed-distance shapes over a batch of posed frames."""

from __future__ import annotations

import numpy as np


def ellipse_sdf(u, v, cx, cy, ax, ay):
    """Approximate signed distance to an axis-aligned ellipse (exact enough at the boundary)."""
    x, y = (u - cx) / ax, (v - cy) / ay
    r = np.sqrt(x * x + y * y)
    g = np.sqrt((x / ax) ** 2 + (y / ay) ** 2)
    d = (r - 1.0) * r / np.maximum(g, 1e-9)
    return np.where(r < 0.5, -0.5 * np.minimum(ax, ay), d)  # deep inside: any negative distance


def segment_sdf(u, v, x0, y0, x1, y1, radius):
    dx, dy = x1 - x0, y1 - y0
    h = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.sqrt((u - x0 - h * dx) ** 2 + (v - y0 - h * dy) ** 2) - radius


def cover(d, pix):
    """Anti-aliased coverage of the region d < 0, with `pix` the pixel size in the same units."""
    return np.clip(0.5 - d / pix, 0.0, 1.0)


class Canvas:
    """A batch of frames drawn in canonical face coordinates.

    Canonical units: 1 = the image size, origin at the image centre, y down. A pose maps
    canonical q to image p = centre + R(roll) * scale * q with centre = (0.5 + dx, 0.5 + dy).
    Each shape is evaluated only inside its image bounding box, which keeps this fast."""

    def __init__(self, size: int, pose: np.ndarray, background: tuple):
        self.size = size
        pose = np.asarray(pose, np.float64).reshape(-1, 4)
        self.batch = len(pose)
        self.cx, self.cy = 0.5 + pose[:, 0], 0.5 + pose[:, 1]
        self.scale = pose[:, 2]
        theta = np.deg2rad(pose[:, 3])
        self.cos, self.sin = np.cos(theta), np.sin(theta)
        self.centres = (np.arange(size) + 0.5) / size
        self.img = np.empty((self.batch, size, size, 3), np.float32)
        self.img[:] = np.asarray(background, np.float32)
        self.pix = (1.0 / (size * self.scale))[:, None, None]

    def region(self, umin, umax, vmin, vmax):
        """Pixel slices covering canonical box [umin, umax] x [vmin, vmax] in every frame."""
        u = np.array([umin, umax, umin, umax])[None, :]
        v = np.array([vmin, vmin, vmax, vmax])[None, :]
        s, c, sn = self.scale[:, None], self.cos[:, None], self.sin[:, None]
        px = self.cx[:, None] + s * (c * u - sn * v)
        py = self.cy[:, None] + s * (sn * u + c * v)
        n = self.size
        x0, x1 = int(np.clip(np.floor(px.min() * n) - 2, 0, n)), int(np.clip(np.ceil(px.max() * n) + 2, 0, n))
        y0, y1 = int(np.clip(np.floor(py.min() * n) - 2, 0, n)), int(np.clip(np.ceil(py.max() * n) + 2, 0, n))
        return slice(y0, y1), slice(x0, x1)

    def coords(self, rows: slice, cols: slice):
        X = self.centres[cols][None, None, :] - self.cx[:, None, None]
        Y = self.centres[rows][None, :, None] - self.cy[:, None, None]
        c, sn, s = self.cos[:, None, None], self.sin[:, None, None], self.scale[:, None, None]
        return ((c * X + sn * Y) / s).astype(np.float32), ((-sn * X + c * Y) / s).astype(np.float32)

    def paint(self, box, coverage_fn, colour):
        rows, cols = self.region(*box)
        if rows.start >= rows.stop or cols.start >= cols.stop:
            return
        u, v = self.coords(rows, cols)
        cov = coverage_fn(u, v, self.pix).astype(np.float32)
        sub = self.img[:, rows, cols]
        sub += cov[..., None] * (np.asarray(colour, np.float32) - sub)

    def mask(self, box, inside_fn) -> np.ndarray:
        out = np.zeros((self.batch, self.size, self.size), np.uint8)
        rows, cols = self.region(*box)
        if rows.start < rows.stop and cols.start < cols.stop:
            u, v = self.coords(rows, cols)
            out[:, rows, cols] = np.where(inside_fn(u, v), 255, 0).astype(np.uint8)
        return out


def per_frame(b):
    """A per-frame parameter as [B, 1, 1] so it broadcasts over pixels."""
    return np.asarray(b, np.float32).reshape(-1, 1, 1)


def darker(rgb, f):
    return tuple(float(c) * f for c in rgb)


def mix(a, b, t):
    return tuple(float(x) * (1 - t) + float(y) * t for x, y in zip(a, b))
