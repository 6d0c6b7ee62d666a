"""`portraittalk eval synthtalk`: the SynthTalk protocol (evaluation/synthtalk_protocol.py) on one model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..evaluation import synthtalk_protocol as protocol


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portraittalk eval synthtalk",
                                     description=protocol.__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="model file or folder (default: the bundled demo)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scheduler", choices=["ddim", "euler", "dpmpp_2m"], default=None)
    parser.add_argument("--karras", action="store_true", help="Karras sigmas (euler, dpmpp_2m)")
    parser.add_argument("--text-guidance", type=float, default=None)
    parser.add_argument("--audio-guidance", type=float, default=None)
    parser.add_argument("--denoise", type=float, default=None, help="share of the schedule to run (default: the model's)")
    parser.add_argument("--clips", type=int, default=8, help="held-out SynthTalk clips for lip sync and colour")
    parser.add_argument("--trials", type=int, default=5, help="references per text attribute")
    parser.add_argument("--parts", default=",".join(protocol.PARTS),
                        help="comma-separated parts to run (default: all): " + ", ".join(protocol.PARTS)
                        + "; text guidance only moves `prompted`")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    if not parts or set(parts) - set(protocol.PARTS):
        parser.error(f"--parts: choose from {', '.join(protocol.PARTS)} (got {args.parts!r})")
    if args.karras and args.scheduler not in ("euler", "dpmpp_2m"):
        parser.error("--karras needs --scheduler euler or dpmpp_2m")
    from ..models import PortraitTalkPipeline

    pipeline = PortraitTalkPipeline.from_pretrained(args.model)
    defaults = pipeline.config["sampling"]
    setup = protocol.Setup(
        pipeline, args.steps,
        args.text_guidance if args.text_guidance is not None else defaults["text_guidance"],
        args.audio_guidance if args.audio_guidance is not None else defaults["audio_guidance"],
        scheduler=args.scheduler, karras=args.karras, denoise=args.denoise)
    results = protocol.run(setup, clips=args.clips, trials=args.trials, parts=parts)
    text = json.dumps(results, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0
