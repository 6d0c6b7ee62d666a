"""The bundled demo assets (assets/demo_reference*.png, assets/demo_speech.wav) and how to make them again."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...models.audio_contract import SAMPLE_RATE
from .identities import make_identity
from .rendering import render_reference
from .speech import tts_available, tts_speech

DEMO_IDENTITY_SEED = 11
DEMO_SENTENCE = "Hello there. This portrait is talking with a voice made by a speech synthesiser."


def demo_reference(size: int = 64) -> np.ndarray:
    """The bundled demo reference: identity DEMO_IDENTITY_SEED, no attributes, gray background, closed mouth."""
    return render_reference(make_identity(DEMO_IDENTITY_SEED), {"background": "gray"}, size=size)


def write_demo_assets(assets_dir: str | os.PathLike, speech: bool = True) -> list[Path]:
    """Regenerate assets/demo_reference*.png and (if espeak-ng is installed) assets/demo_speech.wav."""
    from PIL import Image

    from ..layout import write_wav

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
