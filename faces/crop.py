"""Square face crops for the model, and paste-back of generated crops onto the original.

Even output sizes: SaveVideo needs even width and height, so :func:`paste_back` works on
the original cut down to even dimensions (the last row and/or column of an odd-sized
original is dropped; nothing is resized). ``CropInfo.out_height/out_width`` record that
size, and every crop coordinate is in the original's pixel grid, which the cut does not
move.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import layouts
from .observation import FaceObservation
from .warp import compose, translation, warp_affine


@dataclass
class CropInfo:
    """Where a square crop came from, enough to paste a generated crop back.

    The crop square has centre (centre_x, centre_y) and side ``side`` in original pixels,
    rotated by ``angle`` degrees (the eye line's angle when aligned; 0 otherwise), and
    was resampled to ``size``×``size``.
    """

    original_height: int
    original_width: int
    out_height: int
    out_width: int
    centre_x: float
    centre_y: float
    side: float
    angle: float
    size: int
    face_found: bool
    source: str = "fallback"
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CropInfo":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def crop_to_original(self) -> np.ndarray:
        """2×3 map from crop coordinates (0..size) to original coordinates."""
        k = self.side / self.size
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        half = self.size / 2.0
        return np.array([
            [k * c, -k * s, self.centre_x - k * (c * half - s * half)],
            [k * s, k * c, self.centre_y - k * (s * half + c * half)],
        ])

    def original_to_crop(self) -> np.ndarray:
        m = np.vstack([self.crop_to_original(), [0, 0, 1]])
        return np.linalg.inv(m)[:2]

    def to_crop_points(self, points: np.ndarray) -> np.ndarray:
        """Original-pixel points [N, 2] in crop coordinates (e.g. landmarks for masks)."""
        m = self.original_to_crop()
        p = np.asarray(points, np.float64)
        return p @ m[:, :2].T + m[:, 2]


def crop_face(image: np.ndarray, obs: FaceObservation | None, size: int, expand: float = 1.2,
              align: bool = False) -> tuple[np.ndarray, CropInfo]:
    """Square crop around the face, resized to ``size``×``size``.

    The square's side is ``expand`` × the longer side of the face box, centred on the
    box. ``align`` rotates the crop so the eye line is level (mediapipe landmarks only;
    otherwise ignored). With no face (``obs`` None or a fallback guess), the crop is the
    largest centred square and ``CropInfo.face_found`` is False with a message. Parts of
    the square outside the image repeat the edge pixels. The crop has the input's dtype
    (uint8, or float in 0..1).
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    if obs is None or not obs.is_detection:
        side = float(min(h, w))
        cx, cy, angle = w / 2.0, h / 2.0, 0.0
        found, source = False, "fallback" if obs is None else obs.source
        message = "no face found: centre crop used" if obs is None else \
            "no face detector available: centre crop used (install the faces extra for landmarks)"
    else:
        cx, cy = obs.centre
        side = float(expand * max(obs.width, obs.height, 1.0))
        angle = _eye_angle(obs) if align else 0.0
        found, source, message = True, obs.source, ""
    info = CropInfo(h, w, h - h % 2, w - w % 2, float(cx), float(cy), side, float(angle), int(size),
                    found, source, message)
    return crop_with_info(image, info), info


def crop_with_info(image: np.ndarray, info: CropInfo) -> np.ndarray:
    """Re-crop ``image`` (same size as the original) with an existing CropInfo."""
    image = np.asarray(image)
    is_uint8 = image.dtype == np.uint8
    src = image[..., :3].astype(np.float32) / (255.0 if is_uint8 else 1.0)
    m = info.crop_to_original()
    # Pad with edge pixels just enough to cover the crop square, so nothing reads as black.
    corners = np.array([[0, 0, 1], [info.size, 0, 1], [0, info.size, 1], [info.size, info.size, 1]]) @ m.T
    pad = int(math.ceil(max(0.0, -corners.min(), corners[:, 0].max() - src.shape[1],
                            corners[:, 1].max() - src.shape[0]))) + 2
    if pad > 2:
        src = np.pad(src, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        m = compose(translation(pad, pad), m)
    crop = np.clip(warp_affine(src, m, info.size, info.size), 0.0, 1.0)
    return _like(crop, is_uint8)


def observation_in_crop(obs: FaceObservation, info: CropInfo) -> FaceObservation:
    """`obs` with its box and landmarks moved into the crop's pixel grid. The box is the bounding box of
    all four mapped corners, so a rotated crop's box stays around the face (for an unrotated crop two
    opposite corners would give the same box)."""
    x0, y0, x1, y1 = obs.box
    corners = info.to_crop_points(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], np.float64))
    box = (*corners.min(axis=0), *corners.max(axis=0))
    landmarks = None if obs.landmarks is None else info.to_crop_points(obs.landmarks).astype(np.float32)
    return replace(obs, box=tuple(float(v) for v in box), landmarks=landmarks)


def paste_back(frames: np.ndarray, info, original: np.ndarray, feather: float = 0.1,
               colour_match: bool = True, mask: np.ndarray | None = None) -> np.ndarray:
    """Blend generated crops back into the original frame(s).

    Args:
        frames: [F, s, s, 3] crops, float 0..1 or uint8.
        info: one CropInfo for all frames, or a sequence of F.
        original: [H, W, 3] or [F, H, W, 3] (uint8 or float 0..1).
        feather: width of the soft edge of the crop square, as a fraction of ``s``.
        colour_match: shift each colour channel's mean and std of the generated crops to
            those of the original inside the same square (weighted by the blend mask,
            pooled over all frames so it cannot flicker). This corrects the colour drift
            of generated frames.
        mask: optional [s, s] or [F, s, s] weights in crop space (e.g. a face mask) that
            further restrict what is pasted.

    Returns [F, out_height, out_width, 3] in the dtype of ``frames``; both dimensions even.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    n = frames.shape[0]
    is_uint8 = frames.dtype == np.uint8
    gen = frames[..., :3].astype(np.float32) / (255.0 if is_uint8 else 1.0)
    infos = [info] * n if isinstance(info, CropInfo) else list(info)
    if len(infos) != n:
        raise ValueError(f"{len(infos)} CropInfo for {n} frames")
    s = gen.shape[1]
    if gen.shape[2] != s or any(i.size != s for i in infos):
        raise ValueError(f"frames are {gen.shape[1]}×{gen.shape[2]}, CropInfo expects {infos[0].size}²")
    orig = _float01(original)
    single_original = orig.ndim == 3
    orig = np.broadcast_to(orig, (n,) + orig.shape[-3:]) if single_original else orig
    if orig.shape[0] != n:
        raise ValueError(f"{orig.shape[0]} original frames for {n} generated frames")
    oh, ow = infos[0].out_height, infos[0].out_width
    if orig.shape[1] < oh or orig.shape[2] < ow:
        raise ValueError(f"original is {orig.shape[2]}×{orig.shape[1]}, CropInfo expects at least {ow}×{oh}")

    alpha = feather_mask(s, feather)[None].repeat(n, 0)
    if mask is not None:
        alpha = alpha * np.broadcast_to(np.asarray(mask, np.float32), (n, s, s))
    if colour_match:
        if single_original and all(i is infos[0] for i in infos):
            refs = crop_with_info(orig[0], infos[0])[None]  # one still original: crop once
            ref_weight = alpha[:1]
        else:
            refs = np.stack([crop_with_info(orig[i], infos[i]) for i in range(n)])
            ref_weight = alpha
        gen = match_colour(gen, refs, alpha, ref_weight)

    out = np.array(orig[:, :oh, :ow, :3], np.float32)
    for i in range(n):
        _blend_into(out[i], gen[i], alpha[i], infos[i])
    return _like(np.clip(out, 0.0, 1.0), is_uint8)


def feather_mask(size: int, feather: float) -> np.ndarray:
    """[size, size] weights: 1 inside, easing to 0 over ``feather·size`` at each edge."""
    ramp = max(float(feather) * size, 1e-6)
    d = np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5) / ramp
    t = np.clip(d, 0.0, 1.0)
    t = t * t * (3 - 2 * t)  # smoothstep: no visible crease where the ramp ends
    return np.minimum(t[:, None], t[None, :]).astype(np.float32)


def match_colour(gen: np.ndarray, ref: np.ndarray, weight: np.ndarray,
                 ref_weight: np.ndarray | None = None) -> np.ndarray:
    """Per-channel mean/std transfer from ``ref`` [R, s, s, 3] to ``gen`` [F, s, s, 3],
    with statistics weighted by ``weight`` [F, s, s] (and ``ref_weight`` [R, s, s])."""
    ref_weight = weight if ref_weight is None else ref_weight
    out = gen.astype(np.float64)
    for c in range(3):
        mg, sg = _weighted_stats(gen[..., c], weight)
        mr, sr = _weighted_stats(ref[..., c], ref_weight)
        # A flat generated channel has no std to scale; clamp so noise is never amplified much.
        gain = float(np.clip(sr / sg, 0.5, 2.0)) if sg > 1e-4 else 1.0
        out[..., c] = (gen[..., c] - mg) * gain + mr
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _weighted_stats(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    w = w.astype(np.float64)
    total = max(float(w.sum()), 1e-6)
    mean = float((w * x).sum() / total)
    return mean, float(np.sqrt((w * (x - mean) ** 2).sum() / total))


def _blend_into(canvas: np.ndarray, crop: np.ndarray, alpha: np.ndarray, info: CropInfo) -> None:
    """Warp crop and alpha into the bounding rectangle of the crop square, blend in place."""
    h, w = canvas.shape[:2]
    c2o = info.crop_to_original()
    corners = np.array([[0, 0, 1], [info.size, 0, 1], [0, info.size, 1], [info.size, info.size, 1]]) @ c2o.T
    x0, y0 = max(int(math.floor(corners[:, 0].min())), 0), max(int(math.floor(corners[:, 1].min())), 0)
    x1, y1 = min(int(math.ceil(corners[:, 0].max())), w), min(int(math.ceil(corners[:, 1].max())), h)
    if x1 <= x0 or y1 <= y0:
        return
    # Output pixel (x, y) of the rectangle is original (x + x0, y + y0): map that into the crop.
    m = compose(info.original_to_crop(), translation(x0, y0))
    warped = warp_affine(np.concatenate([crop, alpha[..., None]], axis=-1), m, x1 - x0, y1 - y0)
    a = np.clip(warped[..., 3:4], 0.0, 1.0)
    region = canvas[y0:y1, x0:x1, :3]
    region[...] = region * (1.0 - a) + np.clip(warped[..., :3], 0.0, 1.0) * a


def _eye_angle(obs: FaceObservation) -> float:
    if obs.source != "mediapipe" or obs.landmarks is None:
        return 0.0
    right = obs.landmarks[layouts.MP_RIGHT_EYE_OUTER]
    left = obs.landmarks[layouts.MP_LEFT_EYE_OUTER]
    # Subject's right eye is on the image's left, so the eye line runs right→left eye.
    return math.degrees(math.atan2(left[1] - right[1], left[0] - right[0]))


def _float01(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32)


def _like(a: np.ndarray, as_uint8: bool) -> np.ndarray:
    if as_uint8:
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    return a.astype(np.float32)
