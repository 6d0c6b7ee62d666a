"""Hallo's face-region masks, from face-mesh landmarks (or, without face tools, from the crop box).

Hallo builds them from mediapipe's face mesh of the reference image:
- the face box is the box around the face-oval landmarks expanded by `face_expand` (1.2) about its centre,
  shifted back inside the image; the lip box the same around the lip landmarks with `lip_expand` (2.0);
- the hard face box is the face locator's input (the structure map);
- both boxes are resized to a 64×64 grid, blurred (Gaussian kernels of 51 and 31 taps) and stretched to
  0..255; the audio modules' masks are background = 255 − face, face = face − lip (saturating), and lip,
  each resized to the resolution of the block that uses it.

Without landmarks the face box is the centre square that the face tools guess for a faceless photo, and
the lip box the lower-middle region of it that `faces.masks` uses for its lip ellipse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]  # mediapipe's face oval
LIPS = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]  # outer lips
LIP_IN_FACE = (0.5, 0.75, 0.45, 0.18)  # lip box in a face box without landmarks: centre x, y, width, height


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


def _gaussian_kernel(taps: int) -> np.ndarray:
    sigma = 0.3 * ((taps - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a given kernel size
    x = np.arange(taps) - (taps - 1) / 2
    k = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def blurred(mask: np.ndarray, grid: int, taps: int) -> np.ndarray:
    """uint8 mask → resized to grid×grid (bilinear), Gaussian-blurred (mirrored edges), stretched to 0..255."""
    from scipy.ndimage import correlate1d

    small = torch.nn.functional.interpolate(torch.from_numpy(mask).float()[None, None], size=(grid, grid),
                                            mode="bilinear", align_corners=False)[0, 0].numpy()
    small = np.clip(np.round(small), 0, 255)
    k = _gaussian_kernel(taps)
    blur = correlate1d(correlate1d(small, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")
    blur = np.clip(np.round(blur), 0, 255)
    low, high = float(blur.min()), float(blur.max())
    if high - low < 1e-6:
        return np.zeros_like(blur, dtype=np.uint8)
    return np.clip(np.round((blur - low) * 255.0 / (high - low)), 0, 255).astype(np.uint8)


@dataclass
class RegionMasks:
    """Hallo's masks for one reference: `background`, `face`, `lip` on the blur grid (uint8), and the hard
    `face_box` (float 0..1, image size) for the face locator."""

    background: np.ndarray
    face: np.ndarray
    lip: np.ndarray
    face_box: np.ndarray
    source: str = "landmarks"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def at(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(full, face, lip) masks `[1, height·width]` in 0..1 at a block's resolution (bilinear, as Hallo's
        torchvision Resize of a PIL image)."""
        from PIL import Image

        key = (height, width)
        if key not in self._cache:
            def resize(m):
                img = Image.fromarray(m).resize((width, height), Image.BILINEAR) if m.shape != key else Image.fromarray(m)
                return torch.from_numpy(np.asarray(img, np.float32) / 255.0).reshape(1, -1)
            self._cache[key] = tuple(resize(m) for m in (self.background, self.face, self.lip))
        return self._cache[key]

    def structure(self) -> torch.Tensor:
        """The face locator's input `[1, 1, H, W]`."""
        return torch.from_numpy(self.face_box.astype(np.float32))[None, None]


def region_masks(height: int, width: int, landmarks: np.ndarray | None = None, box=None, *, face_expand: float = 1.2,
                 lip_expand: float = 2.0, grid: int = 64, face_blur: int = 51, lip_blur: int = 31) -> RegionMasks:
    """Hallo's masks from mediapipe face-mesh landmarks `[478 or 468, 2]` (pixels), or from a face `box`
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
    face_blurred, lip_blurred = blurred(face_box, grid, face_blur), blurred(lip_box, grid, lip_blur)
    background = (255 - face_blurred.astype(np.int16)).clip(0, 255).astype(np.uint8)
    face_only = (face_blurred.astype(np.int16) - lip_blurred).clip(0, 255).astype(np.uint8)
    return RegionMasks(background, face_only, lip_blurred, face_box.astype(np.float32) / 255.0, source)


@dataclass
class FrameRegionMasks:
    """Hallo's three audio-module masks from per-frame face and lip masks `[N, 1, H, W]` in 0..1 (one row per UNet
    row, as a training batch has them): background = 1 − face, face = face − lip (saturating), lip. The same
    interface as `RegionMasks.at`, with a row per frame instead of one shared row."""

    face: torch.Tensor
    lip: torch.Tensor

    def at(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch.nn.functional as F

        def resize(m):
            return F.interpolate(m.float(), size=(height, width), mode="bilinear", align_corners=False).flatten(1)

        face, lip = resize(self.face), resize(self.lip)
        return 1 - face, (face - lip).clamp(min=0), lip
