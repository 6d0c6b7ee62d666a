"""Who is in a SynthTalk clip and what the caption says: identities, attributes and the caption grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

BACKGROUNDS = {
    "red": (196, 64, 56),
    "green": (72, 158, 84),
    "blue": (58, 104, 196),
    "yellow": (226, 196, 72),
    "purple": (128, 78, 168),
    "gray": (128, 128, 128),
}
SKIN_TONES = [(255, 224, 196), (241, 194, 160), (224, 172, 128), (198, 134, 90), (160, 102, 66), (112, 74, 50)]
HAIR_COLOURS = [(28, 24, 24), (88, 58, 34), (200, 168, 98), (148, 68, 38), (150, 150, 156)]
IRIS_COLOURS = [(84, 54, 30), (60, 110, 170), (70, 120, 70), (40, 34, 30)]
HAT_COLOURS = [(36, 40, 92), (30, 30, 32), (236, 236, 230), (176, 40, 80), (60, 112, 70)]

ATTRIBUTE_NAMES = ("glasses", "hat", "smiling", "background")


@dataclass
class Identity:
    """Everything that makes one SynthTalk person, JSON-serialisable (`asdict`)."""

    seed: int
    skin: tuple
    hair: tuple
    iris: tuple
    lip: tuple
    hat_colour: tuple
    face_w: float  # face oval scale factors around 1
    face_h: float
    eye_dx: float  # half the eye spacing, fraction of image size
    eye_dy: float  # eye offset from the default height
    eye_size: float
    brow_tilt: float
    mouth_dy: float
    f0_base: float  # the speaker's typical pitch, Hz

    @classmethod
    def from_dict(cls, d: dict) -> "Identity":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def make_identity(seed: int) -> Identity:
    """A random identity, a pure function of `seed`."""
    rng = np.random.default_rng([int(seed), 0x1D])
    skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], float) + rng.integers(-6, 7, 3)
    skin = tuple(int(c) for c in np.clip(skin, 0, 255))
    lip = tuple(int(round(0.5 * s + 0.5 * t)) for s, t in zip(skin, (186, 70, 84)))
    return Identity(
        seed=int(seed), skin=skin,
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))],
        lip=lip, hat_colour=HAT_COLOURS[rng.integers(len(HAT_COLOURS))],
        face_w=round(float(rng.uniform(0.92, 1.06)), 4), face_h=round(float(rng.uniform(0.94, 1.05)), 4),
        eye_dx=round(float(rng.uniform(0.095, 0.118)), 4), eye_dy=round(float(rng.uniform(-0.012, 0.012)), 4),
        eye_size=round(float(rng.uniform(0.85, 1.15)), 4), brow_tilt=round(float(rng.uniform(-0.012, 0.012)), 4),
        mouth_dy=round(float(rng.uniform(-0.012, 0.012)), 4), f0_base=round(float(rng.uniform(105.0, 215.0)), 2),
    )


def random_attributes(rng: np.random.Generator) -> dict:
    return {"glasses": bool(rng.random() < 0.4), "hat": bool(rng.random() < 0.3),
            "smiling": bool(rng.random() < 0.4), "background": list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]}


def complete_attributes(attributes: dict | None) -> dict:
    """`attributes` with the defaults filled in (no glasses, no hat, not smiling, gray), as plain JSON types."""
    a = {"glasses": False, "hat": False, "smiling": False, "background": "gray"}
    a.update(attributes or {})
    for key in ("glasses", "hat", "smiling"):
        a[key] = bool(a[key])  # numpy booleans would not survive json
    if a["background"] not in BACKGROUNDS:
        raise ValueError(f"unknown background {a['background']!r}; expected one of {list(BACKGROUNDS)}")
    return a


def caption_for(attributes: dict) -> str:
    """The deterministic caption grammar:
    "a face[ with glasses[ and a hat]|[ with a hat]] on a <background> background[, smiling]"."""
    a = complete_attributes(attributes)
    items = [words for words, on in (("glasses", a["glasses"]), ("a hat", a["hat"])) if on]
    text = "a face" + (" with " + " and ".join(items) if items else "") + f" on a {a['background']} background"
    return text + (", smiling" if a["smiling"] else "")


def tokenize_caption(caption: str) -> list[str]:
    """Word-level tokens: lower-case words and commas."""
    return re.findall(r"[a-z]+|,", caption.lower())


def caption_vocabulary() -> list[str]:
    """Every token `caption_for` can produce, in a fixed order."""
    return ["a", "face", "with", "glasses", "and", "hat", "on", "background", ",", "smiling", *BACKGROUNDS]


def attributes_from_caption(caption: str) -> dict:
    """Inverse of `caption_for` (tolerant: missing words mean absent attributes)."""
    words = set(tokenize_caption(caption))
    bg = next((b for b in BACKGROUNDS if b in words), "gray")
    return {"glasses": "glasses" in words, "hat": "hat" in words, "smiling": "smiling" in words, "background": bg}
