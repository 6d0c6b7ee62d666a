"""`portraittalk preprocess`: real talking-head videos → training clips (training/preprocess.py)."""

from __future__ import annotations

import argparse
import os
import sys

from ..training.preprocess import preprocess


def main(argv: list[str] | None = None) -> int:
    """The `portraittalk preprocess` command. Exit status 1 when no clip at all was made, else 0 (failed
    files are in report.json)."""
    p = argparse.ArgumentParser(prog="portraittalk preprocess",
                                description="Talking-head videos → PortraitTalk training clips.")
    p.add_argument("in_dir", help="folder of videos (searched recursively); captions in <name>.txt")
    p.add_argument("out_dir")
    p.add_argument("--size", type=int, default=512, help="crop size in pixels (default 512)")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--expand", type=float, default=1.2, help="crop side / the segment's face box side")
    p.add_argument("--workers", type=int, default=max(1, min(4, (os.cpu_count() or 2) // 2)))
    p.add_argument("--backend", choices=["auto", "mediapipe", "colour", "fallback"], default="auto",
                   help="face finder: mediapipe landmarks (auto: when installed), SynthTalk colours, "
                        "or a centre crop")
    p.add_argument("--frames-format", choices=["auto", "npy", "mp4"], default="auto",
                   help="auto: npy up to 128 px, mp4 above")
    p.add_argument("--max-seconds", type=float, default=None, help="use at most this much of each video")
    p.add_argument("--clip-seconds", type=float, default=10.0, help="split videos into clips this long")
    p.add_argument("--min-seconds", type=float, default=1.0, help="drop a shorter last piece of a video")
    p.add_argument("--overwrite", action="store_true", help="delete earlier output in OUT_DIR first")
    args = p.parse_args(argv)
    try:
        report = preprocess(args.in_dir, args.out_dir, size=args.size, fps=args.fps, expand=args.expand,
                            workers=args.workers, backend=args.backend, frames_format=args.frames_format,
                            max_seconds=args.max_seconds, clip_seconds=args.clip_seconds,
                            min_seconds=args.min_seconds, overwrite=args.overwrite)
    except (FileNotFoundError, ValueError) as e:
        print(f"portraittalk preprocess: {e}", file=sys.stderr)
        return 2
    return 0 if report["clips"] else 1
