"""Drawing a SynthTalk face: the features of an identity, its mouth interior in the one colour MOUTH_RGB, its face and
lip masks, and the measure of mouth opening by that colour."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .canvas import Canvas, cover, darker, ellipse_sdf, mix, per_frame, segment_sdf
from .identities import BACKGROUNDS, Identity, complete_attributes
from .motion import NEUTRAL_POSE

MOUTH_RGB = (110, 20, 35)  # the mouth interior, and no other pixel of a frame
GLASSES_RGB = (24, 24, 30)
SEAM_RGB = (62, 22, 28)  # the dark line of a closed mouth

# Mouth geometry, as fractions of the image size at head scale 1.
MOUTH_MAX_HEIGHT = 0.18  # interior height at openness 1
MOUTH_WIDTH_RANGE = (0.13, 0.24)  # interior width at width 0 and 1
SMILE_WIDTH_FACTOR = 1.1
LIP_THICKNESS = 0.022


def mouth_geometry(mouth_height, mouth_width, smiling: bool = False):
    """Interior (half_width, half_height) in canonical units (fractions of image size at scale 1)."""
    h = np.clip(np.asarray(mouth_height, np.float32), 0.0, 1.0)
    w = np.clip(np.asarray(mouth_width, np.float32), 0.0, 1.0)
    width = MOUTH_WIDTH_RANGE[0] + (MOUTH_WIDTH_RANGE[1] - MOUTH_WIDTH_RANGE[0]) * w
    return 0.5 * width * (SMILE_WIDTH_FACTOR if smiling else 1.0), 0.5 * MOUTH_MAX_HEIGHT * h


def render_frames(identity: Identity, attributes: dict | None, size: int, mouth_height, mouth_width, blink,
                  pose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render B frames: (frames uint8 [B,S,S,3], face mask uint8 [B,S,S], lip mask uint8 [B,S,S]).

    mouth_height (openness) and mouth_width are normalised 0..1, blink is eye closure 0..1,
    pose is [B, 4] (dx, dy, scale, roll_degrees); all per frame."""
    a = complete_attributes(attributes)
    pose = np.asarray(pose, np.float32).reshape(-1, 4)
    per = [np.asarray(x, np.float32).reshape(-1) for x in (mouth_height, mouth_width, blink)]
    batch = max(len(pose), *(len(x) for x in per))  # any of them may be given once for all frames
    pose = np.broadcast_to(pose, (batch, 4))
    openness, width, closure = (np.broadcast_to(x, (batch,)) for x in per)
    # Chunk so no intermediate array grows past about 2M pixels.
    chunk = max(1, 2_000_000 // (size * size))
    parts = [_render_chunk(identity, a, size, openness[i:i + chunk], width[i:i + chunk], closure[i:i + chunk],
                           pose[i:i + chunk]) for i in range(0, batch, chunk)]
    return tuple(np.concatenate(p, axis=0) for p in zip(*parts))


@dataclass
class _Layout:
    """Where the features of one identity sit, in canonical units."""

    fx: float  # face oval semi-axes and centre height
    fy: float
    fcy: float
    eye_y: float
    mouth_y: float

    @classmethod
    def of(cls, ident: Identity) -> "_Layout":
        fcy = 0.04
        return cls(fx=0.29 * ident.face_w, fy=0.37 * ident.face_h, fcy=fcy, eye_y=fcy - 0.08 + ident.eye_dy,
                   mouth_y=fcy + 0.17 + ident.mouth_dy)

    def face_box(self):
        return (-self.fx, self.fx, self.fcy - self.fy, self.fcy + self.fy)

    def mouth_box(self):
        return (-0.2, 0.2, self.mouth_y - 0.13, self.mouth_y + 0.13)


def _draw_head(cv: Canvas, ident: Identity, lay: _Layout) -> None:
    """Hair behind the face, the face, a fringe over the forehead, the nose."""
    hcy, hax, hay = lay.fcy - 0.03, lay.fx * 1.07, lay.fy
    cv.paint((-hax, hax, hcy - hay, hcy + hay), lambda u, v, p: cover(ellipse_sdf(u, v, 0, hcy, hax, hay), p),
             ident.hair)
    cv.paint(lay.face_box(), lambda u, v, p: cover(ellipse_sdf(u, v, 0, lay.fcy, lay.fx, lay.fy), p), ident.skin)
    fringe_v = lay.fcy - 0.55 * lay.fy
    cv.paint((-hax, hax, hcy - hay, fringe_v),
             lambda u, v, p: cover(ellipse_sdf(u, v, 0, hcy, hax, hay), p) * cover(v - fringe_v, p), ident.hair)
    ny = lay.fcy + 0.07
    cv.paint((-0.04, 0.04, ny - 0.03, ny + 0.03),
             lambda u, v, p: cover(ellipse_sdf(u, v, 0.0, ny, 0.022, 0.013), p), darker(ident.skin, 0.82))


def _draw_eyes(cv: Canvas, ident: Identity, lay: _Layout, closure, smiling: bool) -> None:
    """White, iris and pupil clipped to the white, the lid line, the brow. Blinks and smiles narrow the eye."""
    ey = lay.eye_y
    eax, eay = 0.045 * ident.eye_size, 0.028 * ident.eye_size
    eye_ay = np.maximum(eay * per_frame((1.0 - closure) * (0.7 if smiling else 1.0)), 1e-4)
    ir = 0.019 * ident.eye_size
    for side in (-1.0, 1.0):
        ex = side * ident.eye_dx
        box = (ex - eax - 0.02, ex + eax + 0.02, ey - eay - 0.02, ey + eay + 0.02)
        white = lambda u, v, p, ex=ex: cover(ellipse_sdf(u, v, ex, ey, eax, eye_ay), p)  # noqa: E731
        cv.paint(box, white, (248, 248, 244))
        cv.paint(box, lambda u, v, p, ex=ex: cover(np.hypot(u - ex, v - ey) - ir, p) * white(u, v, p), ident.iris)
        cv.paint(box, lambda u, v, p, ex=ex: cover(np.hypot(u - ex, v - ey) - 0.45 * ir, p) * white(u, v, p),
                 (12, 10, 10))
        # The lid line: at least about a pixel wide, so a shut eye stays visible.
        cv.paint(box, lambda u, v, p, ex=ex: cover(
            np.abs(ellipse_sdf(u, v, ex, ey, eax, eye_ay)) - 0.5 * np.maximum(0.010, 0.9 * p), p),
            darker(ident.hair, 0.6))
        by, tilt = ey - 0.052, side * ident.brow_tilt
        cv.paint((ex - 0.06, ex + 0.06, by - 0.04, by + 0.04), lambda u, v, p, ex=ex, tilt=tilt: cover(
            segment_sdf(u, v, ex - 0.04, by + tilt, ex + 0.04, by - tilt, np.maximum(0.008, 0.6 * p)), p),
            darker(ident.hair, 0.8))


def _draw_smile(cv: Canvas, ident: Identity, lay: _Layout, hw) -> None:
    """Blushed cheeks and an upturned arc whose ends rise beside the mouth corners."""
    my = lay.mouth_y
    blush = mix(ident.skin, (232, 112, 112), 0.35)
    for side in (-1.0, 1.0):
        cx = side * 0.15
        cv.paint((cx - 0.05, cx + 0.05, my - 0.11, my - 0.01),
                 lambda u, v, p, cx=cx: cover(np.hypot(u - cx, v - (my - 0.06)) - 0.035, p), blush)
    arc_ax, arc_ay, arc_cy = hw * 1.3 + LIP_THICKNESS, 0.06, my - 0.035
    cv.paint((-0.2, 0.2, arc_cy - 0.02, arc_cy + 0.1), lambda u, v, p: cover(
        np.abs(ellipse_sdf(u, v, 0.0, arc_cy, arc_ax, arc_ay)) - np.maximum(0.008, 0.6 * p), p)
        * cover(arc_cy - v, p), darker(ident.lip, 0.85))


def _draw_lips(cv: Canvas, ident: Identity, lay: _Layout, hw, hh) -> None:
    """Lips around the interior, and the seam line of a closed mouth (the interior comes last, exactly)."""
    my = lay.mouth_y
    cv.paint(lay.mouth_box(), lambda u, v, p: cover(
        ellipse_sdf(u, v, 0.0, my, hw + LIP_THICKNESS, hh + LIP_THICKNESS), p), ident.lip)
    cv.paint(lay.mouth_box(), lambda u, v, p: cover(segment_sdf(u, v, -hw, my, hw, my, 0.35 * p), p), SEAM_RGB)


def _draw_glasses(cv: Canvas, ident: Identity, lay: _Layout) -> None:
    """Tinted lenses in dark rims, a bridge, and arms running to the side of the face."""
    ey, gax, gay = lay.eye_y, 0.066, 0.05
    thick = lambda p: np.maximum(0.013, p)  # noqa: E731 - at least a pixel
    inner, outer = ident.eye_dx - gax, ident.eye_dx + gax
    edge = lay.fx * math.sqrt(max(0.0, 1.0 - ((ey - lay.fcy) / lay.fy) ** 2)) * 0.98
    for side in (-1.0, 1.0):
        gx = side * ident.eye_dx
        box = (gx - gax - 0.02, gx + gax + 0.02, ey - gay - 0.02, ey + gay + 0.02)
        cv.paint(box, lambda u, v, p, gx=gx: 0.18 * cover(ellipse_sdf(u, v, gx, ey, gax, gay), p), (200, 225, 245))
        cv.paint(box, lambda u, v, p, gx=gx: cover(
            np.abs(ellipse_sdf(u, v, gx, ey, gax, gay)) - 0.5 * thick(p), p), GLASSES_RGB)
        cv.paint((side * outer - 0.1, side * outer + 0.1, ey - 0.03, ey + 0.03), lambda u, v, p, s=side: cover(
            segment_sdf(u, v, s * outer, ey - 0.01, s * edge, ey - 0.02, 0.5 * thick(p)), p), GLASSES_RGB)
    cv.paint((-0.06, 0.06, ey - 0.04, ey + 0.02), lambda u, v, p: cover(
        segment_sdf(u, v, -inner, ey - 0.01, inner, ey - 0.01, 0.5 * thick(p)), p), GLASSES_RGB)


def _draw_hat(cv: Canvas, ident: Identity, lay: _Layout) -> None:
    """A crown (upper half-ellipse) with a contrasting band, over a brim across the forehead."""
    brim_v, colour = lay.fcy - 0.62 * lay.fy, ident.hat_colour
    crown_ax, crown_ay = 0.85 * lay.fx, 0.17

    def crown(u, v, p):
        return cover(ellipse_sdf(u, v, 0.0, brim_v, crown_ax, crown_ay), p) * cover(v - brim_v, p)

    cv.paint((-crown_ax, crown_ax, brim_v - crown_ay, brim_v + 0.01), crown, colour)
    band = darker(colour, 0.6) if sum(colour) > 300 else mix(colour, (230, 230, 230), 0.5)
    cv.paint((-crown_ax, crown_ax, brim_v - 0.06, brim_v),
             lambda u, v, p: crown(u, v, p) * cover(brim_v - 0.06 - v, p), band)
    brim_x = 1.2 * lay.fx
    cv.paint((-brim_x - 0.04, brim_x + 0.04, brim_v - 0.04, brim_v + 0.04), lambda u, v, p: cover(
        segment_sdf(u, v, -brim_x, brim_v, brim_x, brim_v, 0.022), p), colour)


def _render_chunk(ident: Identity, a: dict, size: int, openness, width, closure, pose):
    cv = Canvas(size, pose, BACKGROUNDS[a["background"]])
    lay = _Layout.of(ident)
    half_w, half_h = mouth_geometry(openness, width, a["smiling"])
    hw, hh = per_frame(half_w), per_frame(half_h)
    _draw_head(cv, ident, lay)
    _draw_eyes(cv, ident, lay, closure, a["smiling"])
    if a["smiling"]:
        _draw_smile(cv, ident, lay, hw)
    _draw_lips(cv, ident, lay, hw, hh)
    if a["glasses"]:
        _draw_glasses(cv, ident, lay)
    if a["hat"]:
        _draw_hat(cv, ident, lay)

    frames = np.rint(np.clip(cv.img, 0, 255)).astype(np.uint8)
    # Keep MOUTH_RGB unique to the interior: nudge any blended pixel that happens to match.
    frames[..., 0][np.all(frames == np.array(MOUTH_RGB, np.uint8), axis=-1)] += 1
    my = lay.mouth_y
    interior = cv.mask(lay.mouth_box(), lambda u, v: ((u / hw) ** 2 + ((v - my) / np.maximum(hh, 1e-6)) ** 2 <= 1.0)
                       & (hh > 0))
    frames[interior > 0] = MOUTH_RGB
    face_mask = cv.mask(lay.face_box(), lambda u, v: (u / lay.fx) ** 2 + ((v - lay.fcy) / lay.fy) ** 2 <= 1.0)
    # The lip mask: the lips (and smile arc), dilated by 2 pixels or 0.02 of the image, whichever is more.
    margin = np.maximum(0.02, 2.0 * cv.pix)
    lip_ax = hw * (1.3 if a["smiling"] else 1.0) + LIP_THICKNESS + margin
    lip_ay = hh + LIP_THICKNESS + margin
    lip_mask = cv.mask((-0.25, 0.25, my - 0.15, my + 0.15),
                       lambda u, v: (u / lip_ax) ** 2 + ((v - my) / lip_ay) ** 2 <= 1.0)
    return frames, face_mask, lip_mask


def render_frame(identity: Identity, attributes: dict | None = None, *, size: int = 64, mouth_height: float = 0.0,
                 mouth_width: float = 0.5, blink: float = 0.0, pose=NEUTRAL_POSE) -> np.ndarray:
    """One target frame uint8 [S, S, 3] for (identity, attributes, mouth, blink, head pose)."""
    frames, _, _ = render_frames(identity, attributes, size, [mouth_height], [mouth_width], [blink], [pose])
    return frames[0]


def render_reference(identity: Identity, attributes: dict | None = None, *, size: int = 64,
                     mouth_height: float = 0.0) -> np.ndarray:
    """A reference image: neutral pose, eyes open, closed mouth (or a given openness)."""
    return render_frame(identity, attributes, size=size, mouth_height=mouth_height)


def reference_for_clip(meta: dict, attributes: dict | None = None, size: int | None = None) -> np.ndarray:
    """Re-render a clip's identity as a reference, optionally with other attributes
    (e.g. the same person without glasses), from the clip's meta.json."""
    attrs = dict(meta["attributes"])
    attrs.update(attributes or {})
    return render_reference(Identity.from_dict(meta["identity"]), attrs, size=size or int(meta["size"]))


def measure_mouth(frames: np.ndarray, tolerance: int = 0) -> dict:
    """Mouth opening measured by colour in frames [F, H, W, 3]: per frame the MOUTH_RGB pixel
    count, the number of rows and columns holding such pixels. `tolerance` (max abs
    difference per channel) is for generated frames, whose colours are not exact."""
    f = np.asarray(frames).astype(np.int16)
    hit = np.all(np.abs(f - np.array(MOUTH_RGB, np.int16)) <= tolerance, axis=-1)
    return {"count": hit.sum(axis=(1, 2)), "height": hit.any(axis=2).sum(axis=1), "width": hit.any(axis=1).sum(axis=1)}
