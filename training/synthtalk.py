"""SynthTalk: a procedural data set of talking faces with known ground truth (docs/training.md).

A clip is a cartoon face (oval, skin tone, hair, blinking eyes, slight head motion) on a
solid background, speaking synthetic or TTS speech. The mouth is a filled ellipse whose
interior is exactly `MOUTH_RGB`; no other pixel of a frame has that colour, so mouth
opening can be measured in any frame by counting that colour (`measure_mouth`).

Audio to mouth, the documented contract that evaluation correlates against:

* frame f covers [f/fps, (f+1)/fps); its analysis window is exactly that interval, so
  it is centred on the frame (samples past the end of the audio count as zeros);
* `absolute_loudness_envelope` (from `models.audio_contract`): RMS level of the window
  in dBFS, mapped linearly from `CLOSED_DB` (and below: openness 0, a closed mouth) to
  `OPEN_DB` (and above: openness 1). Openness is the normalised mouth height: the drawn interior height is
  `openness * MOUTH_MAX_HEIGHT * size * head_scale` pixels;
* `mouth_width_track`: the magnitude-spectrum centroid of the same window in
  100-4000 Hz after pre-emphasis, mapped from `CENTROID_RANGE` to 0..1 linearly in
  log-frequency (rounded vowels such as /u/ are narrow, spread vowels such as /i/
  wide), faded to the neutral 0.5 as openness goes to 0 (a silent window has no
  meaningful centroid). The drawn interior width is
  `lerp(MOUTH_WIDTH_RANGE, width) * size * head_scale` pixels (x1.1 when smiling).

Levels are absolute (dBFS, full scale 1.0), never relative to the clip's own maximum;
loudness-normalise foreign audio with `normalize_speech_level` before comparing.

A closed mouth (openness 0) is drawn as lips with a dark seam line and has exactly zero
pixels of MOUTH_RGB. Any opening draws the interior with hard (not anti-aliased) edges,
so the MOUTH_RGB pixel count never decreases as the mouth opens.

Everything is deterministic from a seed, except that clips asking for TTS speech fall
back to synthetic speech on a machine without espeak-ng (recorded in the clip's meta).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..models.audio_contract import (ANALYSIS_FRAME_TOLERANCE, CLOSED_DB, OPEN_DB, SAMPLE_RATE, SILENCE_DB,
                                     SPEECH_LEVEL_DB, absolute_loudness_envelope, frame_edges, frame_level_db,
                                     num_video_frames)
from .layout import Clip, read_index, write_clip, write_index

SYNTHTALK_VERSION = 1
FPS = 25

MOUTH_RGB = (110, 20, 35)

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
GLASSES_RGB = (24, 24, 30)
SEAM_RGB = (62, 22, 28)  # the dark line of a closed mouth

ATTRIBUTE_NAMES = ("glasses", "hat", "smiling", "background")

# Mouth geometry, as fractions of the image size at head scale 1.
MOUTH_MAX_HEIGHT = 0.18  # interior height at openness 1
MOUTH_WIDTH_RANGE = (0.13, 0.24)  # interior width at width 0 and 1
SMILE_WIDTH_FACTOR = 1.1
LIP_THICKNESS = 0.022

# The envelope curve (CLOSED_DB, OPEN_DB) is the audio contract's (see the module docstring).
CENTROID_RANGE = (700.0, 3000.0)  # Hz: width 0 at the low end, 1 at the high end, log scale
PRE_EMPHASIS = 0.97  # y[n] = x[n] - 0.97 x[n-1] before the centroid, so F2 counts, not just F1
CENTROID_BAND = (100.0, 4000.0)
WIDTH_FADE_OPENNESS = 0.25  # below this openness the width fades to neutral

# Synthetic speech.
F0_RANGE = (90.0, 260.0)
SYLLABLE_SECONDS = (0.08, 0.30)
SYLLABLE_LEVEL_DB = (-26.0, -14.0)
VOWEL_FORMANTS = {  # Hz, (F1, F2, F3): adult averages, enough to move the centroid
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (300.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (320.0, 870.0, 2240.0),
}
FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0)

TTS_WORDS = ("we", "can", "see", "the", "blue", "sky", "over", "green", "hills", "today", "my", "friend", "made",
             "a", "warm", "cup", "of", "tea", "please", "open", "that", "window", "now", "music", "is", "playing",
             "in", "small", "room", "good", "morning", "everyone", "let", "us", "talk", "about", "your", "day",
             "quiet", "river", "runs", "past", "old", "stone", "bridge", "yellow", "birds", "sing")
TTS_VOICES = ("en-us+m1", "en-us+m3", "en-us+f2", "en-us+f4", "en+m2")


# ---------------------------------------------------------------- identities and captions


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


def _attrs(attributes: dict | None) -> dict:
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
    a = _attrs(attributes)
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


# ---------------------------------------------------------------- audio analysis (the envelope contract)


def spectral_centroid_track(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: float = FPS,
                            num_frames: int | None = None) -> np.ndarray:
    """Magnitude-spectrum centroid (Hz, within CENTROID_BAND) of each frame's window, after
    pre-emphasis (PRE_EMPHASIS) and a Hann window; NaN where the window is silent. Synthetic
    vowels sit in the order u < o < a < e < i."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    x = np.concatenate([x[:1], x[1:] - PRE_EMPHASIS * x[:-1]])
    if num_frames is None:
        num_frames = num_video_frames(len(x), sample_rate, fps, tolerance=ANALYSIS_FRAME_TOLERANCE)
    n0 = frame_edges(num_frames, sample_rate, fps)[:-1]
    length = int(round(sample_rate / fps))
    padded = np.concatenate([x, np.zeros(length + 1)])
    frames = padded[np.minimum(n0[:, None] + np.arange(length)[None, :], len(padded) - 1)]
    nfft = 1 << int(math.ceil(math.log2(length)))
    mag = np.abs(np.fft.rfft(frames * np.hanning(length), n=nfft, axis=1))
    freqs = np.fft.rfftfreq(nfft, 1.0 / sample_rate)
    band = (freqs >= CENTROID_BAND[0]) & (freqs <= CENTROID_BAND[1])
    weight = mag[:, band].sum(axis=1)
    centroid = (mag[:, band] * freqs[band]).sum(axis=1) / np.maximum(weight, 1e-20)
    return np.where(weight > 1e-9, centroid, np.nan)


def mouth_width_track(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: float = FPS,
                      num_frames: int | None = None, openness: np.ndarray | None = None) -> np.ndarray:
    """Normalised mouth width per frame in [0, 1] (see the module docstring)."""
    if openness is None:
        openness = absolute_loudness_envelope(audio, sample_rate, fps, num_frames)
    centroid = spectral_centroid_track(audio, sample_rate, fps, len(openness))
    lo, hi = CENTROID_RANGE
    centroid = np.nan_to_num(centroid, nan=math.sqrt(lo * hi))
    vowel = np.clip(np.log(np.maximum(centroid, 1.0) / lo) / math.log(hi / lo), 0.0, 1.0)
    fade = np.clip(np.asarray(openness, np.float64) / WIDTH_FADE_OPENNESS, 0.0, 1.0)
    return (0.5 + (vowel - 0.5) * fade).astype(np.float32)


def normalize_speech_level(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: float = FPS,
                           target_db: float = SPEECH_LEVEL_DB) -> np.ndarray:
    """Scale speech so its loud frames (95th percentile of `frame_level_db`) sit at `target_db`,
    then lower it if needed so no sample exceeds 0.98."""
    x = np.asarray(audio, dtype=np.float32)
    db = frame_level_db(x, sample_rate, fps)
    if len(db) == 0 or np.max(db) < SILENCE_DB:
        return x.copy()
    gain = 10.0 ** ((target_db - np.percentile(db, 95)) / 20.0)
    peak = float(np.max(np.abs(x))) * gain
    if peak > 0.98:
        gain *= 0.98 / peak
    return (x * gain).astype(np.float32)


def mouth_targets(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fps: float = FPS,
                  num_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(openness, width), both normalised [F] float32: what SynthTalk draws for this audio."""
    openness = absolute_loudness_envelope(audio, sample_rate, fps, num_frames)
    return openness, mouth_width_track(audio, sample_rate, fps, len(openness), openness)


# ---------------------------------------------------------------- speech synthesis


def _formant_gain(freqs: np.ndarray, formants: tuple) -> np.ndarray:
    """Cascade of second-order resonances (unit gain at 0 Hz, peak F/B at each formant)."""
    gain = np.ones_like(freqs)
    for f, b in zip(formants, FORMANT_BANDWIDTHS):
        gain *= f * f / np.sqrt((f * f - freqs * freqs) ** 2 + (b * freqs) ** 2)
    return gain


def _syllable_wave(duration: float, f0_start: float, f0_end: float, vowel: str, level_db: float,
                   sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    n = int(round(duration * sample_rate))
    t = np.arange(n) / n
    f0 = f0_start + (f0_end - f0_start) * t
    phase = 2.0 * np.pi * np.cumsum(f0) / sample_rate
    k = np.arange(1, int(4000.0 // max(f0_start, f0_end)) + 1, dtype=np.float64)
    # Harmonic amplitudes at the mean pitch: a flat source through the vowel's formants (the
    # formant cascade gives the spectral tilt; brightness then is close to espeak-ng's).
    amps = _formant_gain(k * 0.5 * (f0_start + f0_end), VOWEL_FORMANTS[vowel])
    wave_ = (amps[:, None] * np.sin(k[:, None] * phase[None, :] + rng.uniform(0, 2 * np.pi, len(k))[:, None])).sum(0)
    wave_ /= np.sqrt(np.mean(wave_ ** 2)) + 1e-12
    envelope = np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 0.6  # rises and falls within the syllable
    return (wave_ * envelope * 10.0 ** (level_db / 20.0)).astype(np.float32)


def synth_speech(num_samples: int, rng: np.random.Generator, f0_base: float = 150.0,
                 sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, list[dict]]:
    """Voiced syllables of 80-300 ms separated by silences, over a faint noise floor.

    Returns the audio and one dict per syllable: start and duration (s), vowel, f0_start,
    f0_end (Hz, within F0_RANGE) and level_db (RMS of the syllable's carrier)."""
    audio = np.zeros(num_samples, np.float32)
    total = num_samples / sample_rate
    syllables = []
    t = float(rng.uniform(0.1, 0.4))
    vowels = list(VOWEL_FORMANTS)
    while True:
        duration = float(rng.uniform(*SYLLABLE_SECONDS))
        if t + duration > total:
            break
        f0_start = float(np.clip(f0_base * 2.0 ** rng.uniform(-0.2, 0.2), *F0_RANGE))
        f0_end = float(np.clip(f0_start * 2.0 ** rng.uniform(-0.25, 0.12), *F0_RANGE))
        vowel = vowels[rng.integers(len(vowels))]
        level = float(rng.uniform(*SYLLABLE_LEVEL_DB))
        start = int(round(t * sample_rate))
        piece = _syllable_wave(duration, f0_start, f0_end, vowel, level, sample_rate, rng)
        audio[start:start + len(piece)] += piece[: num_samples - start]
        syllables.append({"start": round(start / sample_rate, 5), "duration": round(len(piece) / sample_rate, 5),
                          "vowel": vowel, "f0_start": round(f0_start, 2), "f0_end": round(f0_end, 2),
                          "level_db": round(level, 2)})
        # Mostly short gaps, sometimes a pause long enough to close the mouth for several frames.
        t += duration + float(rng.uniform(0.3, 0.8) if rng.random() < 0.25 else rng.uniform(0.05, 0.2))
    noise_db = float(rng.uniform(-75.0, -62.0))
    audio += (rng.standard_normal(num_samples) * 10.0 ** (noise_db / 20.0)).astype(np.float32)
    return audio, syllables


def tts_available() -> bool:
    return shutil.which("espeak-ng") is not None


def tts_speech(text: str, voice: str = "en-us+m3", speed: int = 160, pitch: int = 50,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speak `text` with espeak-ng (must be installed) and return mono float32 at `sample_rate`,
    level-normalised with `normalize_speech_level`."""
    from scipy.signal import resample_poly

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng); TTS speech is unavailable")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tts.wav"
        subprocess.run([exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", str(path), text],
                       check=True, capture_output=True)
        with wave.open(str(path), "rb") as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    g = math.gcd(int(sample_rate), int(rate))
    audio = resample_poly(pcm, sample_rate // g, rate // g) if rate != sample_rate else pcm
    return normalize_speech_level(audio.astype(np.float32), sample_rate)


def _tts_clip_speech(num_samples: int, rng: np.random.Generator, sample_rate: int) -> tuple[np.ndarray, dict]:
    """Random words spoken by espeak-ng, placed after a short lead silence and cut to length."""
    seconds = num_samples / sample_rate
    words = [TTS_WORDS[i] for i in rng.integers(len(TTS_WORDS), size=max(2, int(seconds * 2.6)))]
    text = " ".join(words)
    voice = TTS_VOICES[rng.integers(len(TTS_VOICES))]
    speed, pitch = int(rng.integers(140, 181)), int(rng.integers(30, 71))
    lead = int(rng.uniform(0.1, 0.4) * sample_rate)
    speech = tts_speech(text, voice, speed, pitch, sample_rate)
    audio = np.zeros(num_samples, np.float32)
    piece = speech[: num_samples - lead]
    fade = min(len(piece), int(0.02 * sample_rate))
    if len(speech) > len(piece) and fade:  # cut mid-word: fade out rather than click
        piece = piece.copy()
        piece[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    audio[lead:lead + len(piece)] = piece
    return audio, {"kind": "tts", "engine": "espeak-ng", "text": text, "voice": voice, "speed": speed,
                   "pitch": pitch}


# ---------------------------------------------------------------- motion and blinks


def head_motion(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """[F, 4] (dx, dy, scale, roll_degrees): a slow wobble, sums of two sinusoids per axis."""
    t = np.arange(num_frames) / fps
    amps = np.array([[0.012, 0.008], [0.008, 0.005], [0.02, 0.01], [2.5, 1.2]])  # max per axis and component
    pose = np.zeros((num_frames, 4))
    for axis in range(4):
        for comp in range(2):
            a = rng.uniform(0.3, 1.0) * amps[axis, comp]
            freq, ph = rng.uniform(0.12, 0.6), rng.uniform(0, 2 * np.pi)
            pose[:, axis] += a * np.sin(2 * np.pi * freq * t + ph)
    pose[:, 2] += 1.0
    return pose.astype(np.float32)


BLINK_PROFILE = (0.5, 1.0, 1.0, 0.6, 0.25)  # eye closure over the frames of one blink at 25 fps


def blink_track(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """[F] eye closure in [0, 1] (1 = shut): blinks every 2-5 s."""
    blink = np.zeros(num_frames, np.float32)
    t = rng.uniform(0.3, 3.0)
    profile = np.array(BLINK_PROFILE, np.float32)
    while t * fps < num_frames:
        f = int(t * fps)
        n = min(len(profile), num_frames - f)
        blink[f:f + n] = np.maximum(blink[f:f + n], profile[:n])
        t += rng.uniform(2.0, 5.0)
    return blink


NEUTRAL_POSE = (0.0, 0.0, 1.0, 0.0)


# ---------------------------------------------------------------- rendering


def _ellipse_sdf(u, v, cx, cy, ax, ay):
    """Approximate signed distance to an axis-aligned ellipse (exact enough at the boundary)."""
    x, y = (u - cx) / ax, (v - cy) / ay
    r = np.sqrt(x * x + y * y)
    g = np.sqrt((x / ax) ** 2 + (y / ay) ** 2)
    d = (r - 1.0) * r / np.maximum(g, 1e-9)
    return np.where(r < 0.5, -0.5 * np.minimum(ax, ay), d)  # deep inside: any negative distance


def _segment_sdf(u, v, x0, y0, x1, y1, radius):
    dx, dy = x1 - x0, y1 - y0
    h = np.clip(((u - x0) * dx + (v - y0) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.sqrt((u - x0 - h * dx) ** 2 + (v - y0 - h * dy) ** 2) - radius


def _cover(d, pix):
    """Anti-aliased coverage of the region d < 0, with `pix` the pixel size in the same units."""
    return np.clip(0.5 - d / pix, 0.0, 1.0)


class _Canvas:
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


def _col(b):
    """A per-frame parameter as [B, 1, 1] so it broadcasts over pixels."""
    return np.asarray(b, np.float32).reshape(-1, 1, 1)


def _darker(rgb, f):
    return tuple(float(c) * f for c in rgb)


def _mix(a, b, t):
    return tuple(float(x) * (1 - t) + float(y) * t for x, y in zip(a, b))


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
    a = _attrs(attributes)
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


def _draw_head(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
    """Hair behind the face, the face, a fringe over the forehead, the nose."""
    hcy, hax, hay = lay.fcy - 0.03, lay.fx * 1.07, lay.fy
    cv.paint((-hax, hax, hcy - hay, hcy + hay), lambda u, v, p: _cover(_ellipse_sdf(u, v, 0, hcy, hax, hay), p),
             ident.hair)
    cv.paint(lay.face_box(), lambda u, v, p: _cover(_ellipse_sdf(u, v, 0, lay.fcy, lay.fx, lay.fy), p), ident.skin)
    fringe_v = lay.fcy - 0.55 * lay.fy
    cv.paint((-hax, hax, hcy - hay, fringe_v),
             lambda u, v, p: _cover(_ellipse_sdf(u, v, 0, hcy, hax, hay), p) * _cover(v - fringe_v, p), ident.hair)
    ny = lay.fcy + 0.07
    cv.paint((-0.04, 0.04, ny - 0.03, ny + 0.03),
             lambda u, v, p: _cover(_ellipse_sdf(u, v, 0.0, ny, 0.022, 0.013), p), _darker(ident.skin, 0.82))


def _draw_eyes(cv: _Canvas, ident: Identity, lay: _Layout, closure, smiling: bool) -> None:
    """White, iris and pupil clipped to the white, the lid line, the brow. Blinks and smiles narrow the eye."""
    ey = lay.eye_y
    eax, eay = 0.045 * ident.eye_size, 0.028 * ident.eye_size
    eye_ay = np.maximum(eay * _col((1.0 - closure) * (0.7 if smiling else 1.0)), 1e-4)
    ir = 0.019 * ident.eye_size
    for side in (-1.0, 1.0):
        ex = side * ident.eye_dx
        box = (ex - eax - 0.02, ex + eax + 0.02, ey - eay - 0.02, ey + eay + 0.02)
        white = lambda u, v, p, ex=ex: _cover(_ellipse_sdf(u, v, ex, ey, eax, eye_ay), p)  # noqa: E731
        cv.paint(box, white, (248, 248, 244))
        cv.paint(box, lambda u, v, p, ex=ex: _cover(np.hypot(u - ex, v - ey) - ir, p) * white(u, v, p), ident.iris)
        cv.paint(box, lambda u, v, p, ex=ex: _cover(np.hypot(u - ex, v - ey) - 0.45 * ir, p) * white(u, v, p),
                 (12, 10, 10))
        # The lid line: at least about a pixel wide, so a shut eye stays visible.
        cv.paint(box, lambda u, v, p, ex=ex: _cover(
            np.abs(_ellipse_sdf(u, v, ex, ey, eax, eye_ay)) - 0.5 * np.maximum(0.010, 0.9 * p), p),
            _darker(ident.hair, 0.6))
        by, tilt = ey - 0.052, side * ident.brow_tilt
        cv.paint((ex - 0.06, ex + 0.06, by - 0.04, by + 0.04), lambda u, v, p, ex=ex, tilt=tilt: _cover(
            _segment_sdf(u, v, ex - 0.04, by + tilt, ex + 0.04, by - tilt, np.maximum(0.008, 0.6 * p)), p),
            _darker(ident.hair, 0.8))


def _draw_smile(cv: _Canvas, ident: Identity, lay: _Layout, hw) -> None:
    """Blushed cheeks and an upturned arc whose ends rise beside the mouth corners."""
    my = lay.mouth_y
    blush = _mix(ident.skin, (232, 112, 112), 0.35)
    for side in (-1.0, 1.0):
        cx = side * 0.15
        cv.paint((cx - 0.05, cx + 0.05, my - 0.11, my - 0.01),
                 lambda u, v, p, cx=cx: _cover(np.hypot(u - cx, v - (my - 0.06)) - 0.035, p), blush)
    arc_ax, arc_ay, arc_cy = hw * 1.3 + LIP_THICKNESS, 0.06, my - 0.035
    cv.paint((-0.2, 0.2, arc_cy - 0.02, arc_cy + 0.1), lambda u, v, p: _cover(
        np.abs(_ellipse_sdf(u, v, 0.0, arc_cy, arc_ax, arc_ay)) - np.maximum(0.008, 0.6 * p), p)
        * _cover(arc_cy - v, p), _darker(ident.lip, 0.85))


def _draw_lips(cv: _Canvas, ident: Identity, lay: _Layout, hw, hh) -> None:
    """Lips around the interior, and the seam line of a closed mouth (the interior comes last, exactly)."""
    my = lay.mouth_y
    cv.paint(lay.mouth_box(), lambda u, v, p: _cover(
        _ellipse_sdf(u, v, 0.0, my, hw + LIP_THICKNESS, hh + LIP_THICKNESS), p), ident.lip)
    cv.paint(lay.mouth_box(), lambda u, v, p: _cover(_segment_sdf(u, v, -hw, my, hw, my, 0.35 * p), p), SEAM_RGB)


def _draw_glasses(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
    """Tinted lenses in dark rims, a bridge, and arms running to the side of the face."""
    ey, gax, gay = lay.eye_y, 0.066, 0.05
    thick = lambda p: np.maximum(0.013, p)  # noqa: E731 - at least a pixel
    inner, outer = ident.eye_dx - gax, ident.eye_dx + gax
    edge = lay.fx * math.sqrt(max(0.0, 1.0 - ((ey - lay.fcy) / lay.fy) ** 2)) * 0.98
    for side in (-1.0, 1.0):
        gx = side * ident.eye_dx
        box = (gx - gax - 0.02, gx + gax + 0.02, ey - gay - 0.02, ey + gay + 0.02)
        cv.paint(box, lambda u, v, p, gx=gx: 0.18 * _cover(_ellipse_sdf(u, v, gx, ey, gax, gay), p), (200, 225, 245))
        cv.paint(box, lambda u, v, p, gx=gx: _cover(
            np.abs(_ellipse_sdf(u, v, gx, ey, gax, gay)) - 0.5 * thick(p), p), GLASSES_RGB)
        cv.paint((side * outer - 0.1, side * outer + 0.1, ey - 0.03, ey + 0.03), lambda u, v, p, s=side: _cover(
            _segment_sdf(u, v, s * outer, ey - 0.01, s * edge, ey - 0.02, 0.5 * thick(p)), p), GLASSES_RGB)
    cv.paint((-0.06, 0.06, ey - 0.04, ey + 0.02), lambda u, v, p: _cover(
        _segment_sdf(u, v, -inner, ey - 0.01, inner, ey - 0.01, 0.5 * thick(p)), p), GLASSES_RGB)


def _draw_hat(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
    """A crown (upper half-ellipse) with a contrasting band, over a brim across the forehead."""
    brim_v, colour = lay.fcy - 0.62 * lay.fy, ident.hat_colour
    crown_ax, crown_ay = 0.85 * lay.fx, 0.17

    def crown(u, v, p):
        return _cover(_ellipse_sdf(u, v, 0.0, brim_v, crown_ax, crown_ay), p) * _cover(v - brim_v, p)

    cv.paint((-crown_ax, crown_ax, brim_v - crown_ay, brim_v + 0.01), crown, colour)
    band = _darker(colour, 0.6) if sum(colour) > 300 else _mix(colour, (230, 230, 230), 0.5)
    cv.paint((-crown_ax, crown_ax, brim_v - 0.06, brim_v),
             lambda u, v, p: crown(u, v, p) * _cover(brim_v - 0.06 - v, p), band)
    brim_x = 1.2 * lay.fx
    cv.paint((-brim_x - 0.04, brim_x + 0.04, brim_v - 0.04, brim_v + 0.04), lambda u, v, p: _cover(
        _segment_sdf(u, v, -brim_x, brim_v, brim_x, brim_v, 0.022), p), colour)


def _render_chunk(ident: Identity, a: dict, size: int, openness, width, closure, pose):
    cv = _Canvas(size, pose, BACKGROUNDS[a["background"]])
    lay = _Layout.of(ident)
    half_w, half_h = mouth_geometry(openness, width, a["smiling"])
    hw, hh = _col(half_w), _col(half_h)
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


# ---------------------------------------------------------------- clips


def num_frames_for(seconds: float, fps: float = FPS) -> int:
    return int(math.ceil(seconds * fps - 1e-9))


def _quantise_pcm16(audio: np.ndarray) -> np.ndarray:
    """Round to the grid `layout.write_wav` stores, so the mouth follows the stored audio."""
    return (np.rint(np.clip(audio, -1.0, 1.0) * 32767.0) / 32767.0).astype(np.float32)


def make_clip(clip_seed, seconds: float, size: int = 64, *, identity: Identity | None = None,
              attributes: dict | None = None, tts: bool = False, fps: float = FPS,
              sample_rate: int = SAMPLE_RATE) -> Clip:
    """One talking clip. `clip_seed` is an int or a sequence of ints (numpy seed entropy);
    the identity defaults to one derived from the clip seed, the attributes to random ones.

    F = ceil(seconds * fps) frames; the audio has ceil(F * sample_rate / fps) samples. The
    meta holds the caption, attributes, identity (`Identity.from_dict` rebuilds it), speech
    (syllable timings, vowels and f0, or the TTS text and voice), the envelope constants, and
    per_frame: mouth_height (openness 0..1), mouth_width (0..1), mouth_height_px and
    mouth_width_px (the drawn interior, pose scale included), blink (closure 0..1) and pose
    (dx, dy, scale, roll_degrees)."""
    rng = np.random.default_rng(clip_seed)
    if identity is None:
        identity = make_identity(int(rng.integers(2 ** 31)))
    attrs = _attrs(attributes if attributes is not None else random_attributes(rng))
    num_frames = num_frames_for(seconds, fps)
    num_samples = int(math.ceil(num_frames * sample_rate / fps - 1e-9))
    speech_rng = np.random.default_rng(rng.integers(2 ** 63))
    speech: dict
    if tts and tts_available():
        audio, speech = _tts_clip_speech(num_samples, speech_rng, sample_rate)
    else:
        if tts:
            warnings.warn("espeak-ng not found: this SynthTalk clip uses synthetic speech instead of TTS", stacklevel=2)
        audio, syllables = synth_speech(num_samples, speech_rng, identity.f0_base, sample_rate)
        speech = {"kind": "synthetic", "syllables": syllables, **({"tts_fallback": True} if tts else {})}
    audio = _quantise_pcm16(audio)
    openness, width = mouth_targets(audio, sample_rate, fps, num_frames)
    blink = blink_track(num_frames, fps, rng)
    pose = head_motion(num_frames, fps, rng)
    frames, face, lip = render_frames(identity, attrs, size, openness, width, blink, pose)
    half_w, half_h = mouth_geometry(openness, width, attrs["smiling"])
    px = size * pose[:, 2]
    meta = {
        "source": "synthtalk", "synthtalk_version": SYNTHTALK_VERSION, "caption": caption_for(attrs),
        "attributes": attrs, "identity": asdict(identity), "frames": num_frames, "fps": fps,
        "sample_rate": sample_rate, "size": size, "seconds": seconds, "speech": speech,
        "envelope": {"window": "frame interval [f/fps, (f+1)/fps)", "closed_db": CLOSED_DB, "open_db": OPEN_DB,
                     "centroid_range_hz": list(CENTROID_RANGE), "mouth_max_height": MOUTH_MAX_HEIGHT,
                     "mouth_width_range": list(MOUTH_WIDTH_RANGE)},
        "per_frame": {
            "mouth_height": _r(openness), "mouth_width": _r(width),
            "mouth_height_px": _r(2 * half_h * px), "mouth_width_px": _r(2 * half_w * px),
            "blink": _r(blink), "pose": [_r(p) for p in pose],
        },
    }
    return Clip(frames=frames, audio=audio, face_mask=face, lip_mask=lip, meta=meta, fps=fps, sample_rate=sample_rate)


def _r(x, digits: int = 4) -> list:
    return [round(float(v), digits) for v in np.asarray(x).reshape(-1)]


# ---------------------------------------------------------------- the data set writer

SPLITS = {"train": 0, "test": 1}


def clip_seeds(seed: int, index: int, split: str = "train") -> tuple[list[int], int]:
    """(clip seed entropy, identity seed) of clip `index`. Identity seeds are even for the
    train split and odd for the test split, so the splits never share a person."""
    code = SPLITS[split]
    return [int(seed), code, int(index)], 2 * (int(seed) * 1_000_003 + int(index)) + code


def _clip_id(index: int) -> str:
    return f"clip_{index:05d}"


def _settings(seconds, size, seed, tts_fraction, split, fps, sample_rate) -> dict:
    return {"version": SYNTHTALK_VERSION, "seconds": float(seconds), "size": int(size), "seed": int(seed),
            "tts_fraction": float(tts_fraction), "split": split, "fps": fps, "sample_rate": int(sample_rate)}


def _clip_complete(out_dir: Path, clip_id: str, settings: dict) -> bool:
    meta_path = out_dir / "clips" / clip_id / "meta.json"
    if not meta_path.is_file():
        return False
    found = json.loads(meta_path.read_text()).get("synthtalk_settings")
    if found != settings:
        raise ValueError(f"{meta_path} was made with {found}, not {settings}; use another directory or overwrite=True")
    return True


def _make_and_write(job: tuple) -> str:
    out_dir, index, settings = job
    clip_seed, identity_seed = clip_seeds(settings["seed"], index, settings["split"])
    rng = np.random.default_rng(clip_seed + [0x77])
    use_tts = bool(rng.random() < settings["tts_fraction"])
    clip = make_clip(clip_seed, settings["seconds"], settings["size"], identity=make_identity(identity_seed),
                     tts=use_tts, fps=settings["fps"], sample_rate=settings["sample_rate"])
    clip.meta.update({"synthtalk_settings": settings, "clip_seed": clip_seed, "identity_seed": identity_seed})
    # Write into a scratch directory, then rename: a clip directory exists only when complete.
    clip_id = _clip_id(index)
    scratch = Path(out_dir) / ".partial" / f"{clip_id}.{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    write_clip(scratch, clip_id, clip)
    final = Path(out_dir) / "clips" / clip_id
    shutil.rmtree(final, ignore_errors=True)
    os.replace(scratch / "clips" / clip_id, final)
    shutil.rmtree(scratch, ignore_errors=True)
    return clip_id


def write_dataset(out_dir: str | os.PathLike, num_clips: int, seconds: float, size: int = 64, seed: int = 0,
                  tts_fraction: float = 0.0, workers: int = 1, split: str = "train", *, fps: float = FPS,
                  sample_rate: int = SAMPLE_RATE, overwrite: bool = False, progress: bool = False) -> Path:
    """Write `num_clips` SynthTalk clips in the training/layout.py layout plus dataset.json.

    Resumable: clips already complete (made with the same settings) are kept as they are.
    `workers` > 1 generates clips in that many processes; the result does not depend on it.
    Returns the path of dataset.json."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, not {split!r}")
    out = Path(out_dir)
    if overwrite:
        shutil.rmtree(out / "clips", ignore_errors=True)
        (out / "dataset.json").unlink(missing_ok=True)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    settings = _settings(seconds, size, seed, tts_fraction, split, fps, sample_rate)
    todo = [i for i in range(num_clips) if not _clip_complete(out, _clip_id(i), settings)]
    if tts_fraction > 0 and not tts_available():
        warnings.warn("espeak-ng not found: SynthTalk uses synthetic speech for every clip", stacklevel=2)
    jobs = [(str(out), i, settings) for i in todo]
    start, done = time.monotonic(), 0

    def report(clip_id):
        nonlocal done
        done += 1
        if progress and (done % 50 == 0 or done == len(jobs)):
            print(f"synthtalk: {done}/{len(jobs)} clips written ({time.monotonic() - start:.1f} s)", file=sys.stderr)

    if workers > 1 and len(jobs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the caller may hold torch or other threaded state that fork copies badly.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            for clip_id in pool.map(_make_and_write, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                report(clip_id)
    else:
        for job in jobs:
            report(_make_and_write(job))
    shutil.rmtree(out / ".partial", ignore_errors=True)
    clip_ids = [_clip_id(i) for i in range(num_clips)]  # clips of an earlier, larger run stay unlisted
    return write_index(out, clip_ids, fps=fps, sample_rate=sample_rate, size=size, source="synthtalk",
                       extra={"split": split, "synthtalk": settings, "caption_vocabulary": caption_vocabulary(),
                              "tts_available": tts_available()})


def synth_main(argv: list[str] | None = None) -> int:
    """The `portraittalk synth` command:
    `portraittalk synth OUT_DIR --clips N --seconds S --size 64 --seed 0 --tts-fraction 0.2
    --workers 2 --split train`. Returns the exit status."""
    p = argparse.ArgumentParser(prog="portraittalk synth", description="Generate the SynthTalk data set.")
    p.add_argument("out_dir")
    p.add_argument("--clips", type=int, default=200)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tts-fraction", type=float, default=0.0,
                   help="share of clips spoken by espeak-ng (synthetic speech where it is not installed)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--split", choices=list(SPLITS), default="train")
    p.add_argument("--overwrite", action="store_true", help="delete existing clips first")
    args = p.parse_args(argv)
    start = time.monotonic()
    index = write_dataset(args.out_dir, args.clips, args.seconds, size=args.size, seed=args.seed,
                          tts_fraction=args.tts_fraction, workers=args.workers, split=args.split,
                          overwrite=args.overwrite, progress=True)
    n = len(read_index(args.out_dir)["clips"])
    print(f"synthtalk: {n} clips in {index.parent} ({time.monotonic() - start:.1f} s)")
    return 0


# ---------------------------------------------------------------- bundled demo assets

DEMO_IDENTITY_SEED = 11
DEMO_SENTENCE = "Hello there. This portrait is talking with a voice made by a speech synthesiser."


def demo_reference(size: int = 64) -> np.ndarray:
    """The bundled demo reference: identity DEMO_IDENTITY_SEED, no attributes, gray background, closed mouth."""
    return render_reference(make_identity(DEMO_IDENTITY_SEED), {"background": "gray"}, size=size)


def write_demo_assets(assets_dir: str | os.PathLike, speech: bool = True) -> list[Path]:
    """Regenerate assets/demo_reference*.png and (if espeak-ng is installed) assets/demo_speech.wav."""
    from PIL import Image

    from .layout import write_wav

    out = Path(assets_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for size, name in ((64, "demo_reference.png"), (256, "demo_reference_256.png")):
        Image.fromarray(demo_reference(size)).save(out / name, optimize=True)
        written.append(out / name)
    if speech and tts_available():
        audio = tts_speech(DEMO_SENTENCE, voice="en-us+m3", speed=150, pitch=45)
        pad = np.zeros(int(0.2 * SAMPLE_RATE), np.float32)
        write_wav(out / "demo_speech.wav", np.concatenate([pad, audio, pad]), SAMPLE_RATE)
        written.append(out / "demo_speech.wav")
    return written
