"""One SynthTalk clip: speech, the mouth that follows it, blinks, head motion and the rendered frames, with meta."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict

import numpy as np

from ...models.audio_contract import CLOSED_DB, OPEN_DB, SAMPLE_RATE
from ..layout import Clip
from .audio_to_mouth import CENTROID_RANGE, mouth_targets
from .constants import FPS, SYNTHTALK_VERSION
from .identities import Identity, caption_for, complete_attributes, make_identity, random_attributes
from .motion import blink_track, head_motion
from .rendering import MOUTH_MAX_HEIGHT, MOUTH_WIDTH_RANGE, mouth_geometry, render_frames
from .speech import synth_speech, tts_available, tts_clip_speech


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
    attrs = complete_attributes(attributes if attributes is not None else random_attributes(rng))
    num_frames = num_frames_for(seconds, fps)
    num_samples = int(math.ceil(num_frames * sample_rate / fps - 1e-9))
    speech_rng = np.random.default_rng(rng.integers(2 ** 63))
    speech: dict
    if tts and tts_available():
        audio, speech = tts_clip_speech(num_samples, speech_rng, sample_rate)
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
