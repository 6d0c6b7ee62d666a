"""Hallo's face-region masks as the audio modules and the face locator take them.

The face and lip boxes come from `faces.hallo_regions` (face-mesh landmarks, or the crop box without face tools).
Here, as Hallo does: the hard face box is the face locator's input (the structure map); both boxes are resized to
a 64×64 grid, blurred (Gaussian kernels of 51 and 31 taps) and stretched to 0..255; the audio modules' masks are
background = 255 − face, face = face − lip (saturating), and lip, each resized to the resolution of the block that
uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...faces.hallo_regions import region_boxes


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
    face_box, lip_box, source = region_boxes(height, width, landmarks, box, face_expand=face_expand,
                                             lip_expand=lip_expand)
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
