"""A tiny numpy face drawer for tests and examples (SynthTalk conventions, not SynthTalk).

Draws an oval face on a solid background with a mouth ellipse filled in exactly
RGB (110, 20, 35), so the colour analyser and the metrics can be checked against a
mouth height that is known exactly.
"""

from __future__ import annotations

import numpy as np

from .colour import SYNTHTALK_MOUTH_RGB


def draw_face(size: int = 64, mouth_height: float = 0.0, mouth_width: float | None = None,
              skin=(224, 172, 140), background=(60, 90, 200), centre=(0.5, 0.5),
              face_size=(0.5, 0.66), eyes: bool = True) -> np.ndarray:
    """One uint8 frame [size, size, 3].

    ``mouth_height`` and ``mouth_width`` are in pixels (full height/width of the mouth
    ellipse); a height below 1 draws no mouth (closed). ``centre`` and ``face_size`` are
    fractions of the frame (face width, face height).
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    img = np.empty((size, size, 3), np.uint8)
    img[:] = background
    cx, cy = centre[0] * size, centre[1] * size
    rx, ry = face_size[0] * size / 2, face_size[1] * size / 2
    img[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0] = skin
    if eyes:
        for ex in (cx - 0.4 * rx, cx + 0.4 * rx):
            img[((xx - ex) / (0.12 * rx)) ** 2 + ((yy - (cy - 0.25 * ry)) / (0.08 * ry)) ** 2 <= 1.0] = (30, 30, 30)
    if mouth_height >= 1.0:
        mw = 0.8 * rx if mouth_width is None else mouth_width
        my = cy + 0.45 * ry
        inside = ((xx - cx) / (mw / 2)) ** 2 + ((yy - my) / (mouth_height / 2)) ** 2 <= 1.0
        img[inside] = SYNTHTALK_MOUTH_RGB
    return img


def draw_talking_clip(mouth_heights, size: int = 64, head_motion: float = 0.0, seed: int = 0,
                      **face) -> np.ndarray:
    """[F, size, size, 3] frames, one per mouth height (pixels), with optional slight
    head motion (fraction of the frame, a slow sway plus per-frame noise)."""
    rng = np.random.default_rng(seed)
    frames = []
    for f, mh in enumerate(mouth_heights):
        dx = head_motion * (np.sin(f / 7.0) + 0.3 * rng.standard_normal())
        dy = head_motion * 0.5 * np.cos(f / 9.0)
        frames.append(draw_face(size, float(mh), centre=(0.5 + dx, 0.5 + dy), **face))
    return np.stack(frames) if frames else np.zeros((0, size, size, 3), np.uint8)
