"""`python -m comfyui_portraittalk.training COMMAND ...`: the training commands without the `portraittalk`
script, e.g. under torchrun, which starts a module in every process:

    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m comfyui_portraittalk.training train --config tiny_smoke --out runs/t
"""

from __future__ import annotations

import sys
from importlib import import_module

COMMANDS = {"train": ("train", "train_main"), "synth": ("synthtalk.writer", "synth_main"),
            "preprocess": ("preprocess", "preprocess_main"), "caption": ("caption", "caption_main"),
            "precompute": ("precompute", "precompute_main")}
USAGE = ("usage: python -m comfyui_portraittalk.training {" + ",".join(COMMANDS) + "} [options]\n"
         "  e.g. python -m comfyui_portraittalk.training train --config tiny_smoke --out runs/tiny\n"
         "  (`python -m comfyui_portraittalk.training COMMAND --help` for a command's options)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        what = "no command given" if not argv else f"unknown command {argv[0]!r}"
        print(f"error: {what}\n{USAGE}", file=sys.stderr)
        return 2
    module, function = COMMANDS[argv[0]]
    return int(getattr(import_module(f".{module}", __package__), function)(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
