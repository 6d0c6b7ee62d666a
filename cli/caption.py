"""`portraittalk caption`: zero-shot captions of a clip data set or photos (training/caption.py), scored by the
user's CLIP model."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from ..training.caption import (
    ATTRIBUTE_PROMPTS, DEFAULT_FRAMES, DEFAULT_THRESHOLDS, CaptionError, caption_data, is_edited,
)
from ..training.layout import CAPTIONS_FILE
from ..training.synthtalk import BACKGROUNDS


def _threshold(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        p = float(value)
    except ValueError:
        p = -1.0
    if not sep or name not in ATTRIBUTE_PROMPTS or not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=P with NAME in {list(ATTRIBUTE_PROMPTS)} and "
                                         "0 <= P <= 1")
    return name, p


def main(argv: list[str] | None = None) -> int:
    defaults = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_THRESHOLDS.items())
    p = argparse.ArgumentParser(
        prog="portraittalk caption", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Captions (glasses, hat, smiling, background colour, MEAD emotion) for a clip data set or "
                    "photos, scored zero-shot by a CLIP model you supply.",
        epilog="\n\n".join(textwrap.fill(text, 100) for text in (
            f"An attribute is present when CLIP's probability for its present prompt over its absent prompt "
            f"(e.g. '{ATTRIBUTE_PROMPTS['glasses'][0]}' vs '{ATTRIBUTE_PROMPTS['glasses'][1]}'), averaged over "
            f"--frames frames, is at least its threshold (defaults: {defaults}; change one with --threshold "
            f"glasses=0.6). The background is the palette name ({', '.join(BACKGROUNDS)}) whose prompt scores "
            "highest. The emotion comes from MEAD's folder names (<emotion>/level_<n>).",
            "The output is JSON to edit by hand: entries with \"edited\": true (or whose caption was changed by "
            "hand) are kept as they are when the command runs again. The file states the thresholds and prompts "
            f"used. Training uses DATA/{CAPTIONS_FILE}'s caption wherever it has the clip.")))
    p.add_argument("data", type=Path, help="clip data set folder (dataset.json), photo folder, or one photo")
    p.add_argument("--clip-model", type=Path, required=True,
                   help="transformers CLIPModel folder: config.json, model.safetensors (pickles are refused), "
                        "vocab.json + merges.txt or tokenizer.json, preprocessor_config.json optional")
    p.add_argument("--out", type=Path, default=None, help=f"output file (default: DATA/{CAPTIONS_FILE})")
    p.add_argument("--threshold", type=_threshold, action="append", default=[], metavar="NAME=P",
                   help=f"presence threshold of one attribute (repeatable; defaults: {defaults})")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames scored per clip, spread evenly")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error("--frames must be at least 1")
    try:
        out = caption_data(args.data, args.clip_model, args.out, thresholds=dict(args.threshold), frames=args.frames,
                           device=args.device, progress=True)
    except CaptionError as e:
        print(f"portraittalk caption: error: {e}", file=sys.stderr)
        return 2
    clips = json.loads(out.read_text())["clips"]
    kept = sum(1 for e in clips.values() if is_edited(e))
    print(f"caption: {len(clips)} entries in {out} ({kept} edited, kept as they were)")
    return 0
