"""Mouth aperture against the audio envelope over time, drawn with PIL (no matplotlib); and a plot-sized
message for when there is nothing to draw."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MOUTH_COLOUR = (200, 40, 60)
LOUDNESS_COLOUR = (40, 90, 200)
ONSET_COLOUR = (150, 150, 150)


def plot_mouth_vs_audio(result: dict, width: int = 900, height: int = 320) -> np.ndarray:
    """uint8 [H, W, 3] chart of an :func:`evaluate` (or :func:`adfd`) result.

    Each curve is scaled to its own 0..1 range: red is the mouth aperture, blue the
    loudness envelope, grey the onset envelope. The title carries ADFD, its parts and the lag.
    """
    series = result.get("series")
    if series is None:
        raise ValueError("the result has no 'series': run evaluate() with the 'adfd' metric")
    fps = float(result.get("fps", 25.0))
    mouth = np.asarray(series["mouth_open"], np.float64)
    n = len(mouth)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    left, right, top, bottom = 50, 15, 40, 40
    pw, ph = width - left - right, height - top - bottom
    draw.rectangle([left, top, left + pw, top + ph], outline=(0, 0, 0))

    def xy(values):
        v = np.asarray(values, np.float64)
        lo, hi = float(v.min()), float(v.max())
        v = (v - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(v) + 0.5
        xs = left + np.arange(len(v)) * pw / max(len(v) - 1, 1)
        return list(zip(xs.tolist(), (top + ph * (1 - v)).tolist()))

    for key, colour, w in (("onset", ONSET_COLOUR, 1), ("loudness", LOUDNESS_COLOUR, 2), ("mouth_open", MOUTH_COLOUR, 2)):
        if key in series and len(series[key]) > 1:
            draw.line(xy(series[key]), fill=colour, width=w)

    seconds = n / fps
    step = max(1, int(np.ceil(seconds / 10)))
    for s in range(0, int(seconds) + 1, step):
        x = left + s * fps * pw / max(n - 1, 1)
        if x <= left + pw:
            draw.line([(x, top + ph), (x, top + ph + 4)], fill=(0, 0, 0))
            draw.text((x - 4, top + ph + 6), f"{s}s", fill=(0, 0, 0), font=font)
    m = result.get("metrics", {}).get("adfd", result)
    title = "mouth aperture (red) vs loudness (blue), onset (grey)"
    if "score" in m:
        title += (f"   ADFD {m['score']:.3f}  spatial {m['spatial']:.2f}  temporal {m['temporal']:.2f}"
                  f"  jitter {m['jitter']:.2f}  lag {m['lag']:+d}")
    draw.text((left, 12), title, fill=(0, 0, 0), font=font)
    draw.text((left, height - 16), "time", fill=(0, 0, 0), font=font)
    return np.asarray(img)


def message_image(text: str, width: int = 900, height: int = 320) -> np.ndarray:
    """A plot-sized white image with a message, when there is no series to draw."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    words, lines, line = text.split(), [], ""
    for word in words:  # wrap at about 110 characters of the default font
        if len(line) + len(word) + 1 > 110:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    draw.text((20, 20), "ADFD plot unavailable:", fill=(160, 0, 0), font=ImageFont.load_default())
    for i, ln in enumerate(lines[:12]):
        draw.text((20, 44 + 16 * i), ln, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.asarray(img)
