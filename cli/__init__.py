"""The `portraittalk` command: one module per subcommand, each with `main(argv)`.

    portraittalk demo                      the bundled model on a bundled portrait and speech → portraittalk_demo.mp4
    portraittalk generate --image I --audio A [--prompt P] [--model M] [--out video.mp4]
    portraittalk synth OUT                 SynthTalk clips
    portraittalk preprocess IN OUT         real talking-head videos → the same clip layout
    portraittalk caption DATA --clip-model DIR
                                           captions (glasses, hat, smile, background, MEAD emotion) scored by
                                           your CLIP model, into DATA/captions.json for training to use
    portraittalk train --config C --out O  the two training stages
    portraittalk precompute --config C --data D
                                           latents, audio features, masks and embeddings once, in shards
    portraittalk eval --video V --audio A  ADFD and the other metrics (`portraittalk eval synthtalk` for the
                                           SynthTalk protocol that checks a model really works)
    portraittalk assemble sd15 --checkpoint C --motion M OUT
                                           a full-size model from an SD-1.5 checkpoint and AnimateDiff v2
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

# Each subcommand is the module cli/<name>.py with its own `main(argv)`, imported only when it runs, so this
# overview stays fast and imports no torch. The order and one-line help are those of `portraittalk --help`.
SUBCOMMANDS = {
    "demo": "run the bundled model on a bundled portrait and speech",
    "generate": "a talking-face video from a portrait and speech",
    **{name: f"see `portraittalk {name} --help`"
       for name in ("synth", "train", "caption", "precompute", "preprocess", "eval", "convert", "bench", "assemble")},
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return run(argv[0], argv[1:])
    # no subcommand, --help or an unknown one: argparse prints the overview or the error and exits
    parser = argparse.ArgumentParser(prog="portraittalk", description="PortraitTalk: one-shot, audio-driven, "
                                     "text-customisable talking faces.", epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, line in SUBCOMMANDS.items():
        sub.add_parser(name, help=line, add_help=False)
    args, rest = parser.parse_known_args(argv)
    return run(args.command, rest)


def run(command: str, argv: list[str]) -> int:
    """`portraittalk COMMAND ARGV...`: cli/COMMAND.py's main."""
    return int(import_module(f".{command}", __package__).main(argv) or 0)
