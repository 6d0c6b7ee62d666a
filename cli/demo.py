"""`portraittalk demo`: the bundled model on a bundled portrait and speech."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bundled import ASSETS
from .generate import generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portraittalk demo")
    parser.add_argument("--out", type=Path, default=Path("portraittalk_demo.mp4"))
    parser.add_argument("--prompt", default=None, help="optional text edit, e.g. 'a face with glasses'")
    args = parser.parse_args(argv)
    generate(ASSETS / "demo_reference.png", ASSETS / "demo_speech.wav", args.out, prompt=args.prompt, model="demo",
             steps=None, seed=0, text_guidance=None, audio_guidance=None, scheduler=None, upscale=4)
    return 0
