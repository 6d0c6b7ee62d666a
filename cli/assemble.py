"""`portraittalk assemble`: a full-size PortraitTalk model file from the files ComfyUI users already have.

    portraittalk assemble sd15 --checkpoint v1-5-pruned-emaonly.safetensors --motion mm_sd_v15_v2.safetensors \
        [--weights portraittalk_sd15_streams.safetensors] [--dtype fp16] portraittalk_sd15.safetensors
"""

from __future__ import annotations

import argparse
import sys

from ..models.dtypes import DTYPE_NAMES, torch_dtype


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portraittalk assemble", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="family", required=True)
    sd15 = sub.add_parser("sd15", help="SD-1.5 checkpoint + AnimateDiff v2 motion module (+ PortraitTalk weights) "
                                       "→ one .safetensors model for models/portraittalk")
    sd15.add_argument("--checkpoint", required=True,
                      help="SD-1.5 single-file checkpoint with its VAE (.safetensors, from models/checkpoints)")
    sd15.add_argument("--motion", required=True,
                      help="AnimateDiff v2 motion module mm_sd_v15_v2 (.safetensors, from models/animatediff_models)")
    sd15.add_argument("--weights", default=None,
                      help="PortraitTalk-trained tensors laid over the result: any subset of an sd15 model's keys "
                           "(optional; without them the identity/audio streams and projections stay untrained)")
    sd15.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="fp16", help="dtype of the file (default fp16)")
    sd15.add_argument("--config", default=None,
                      help="advanced: a model.json of the sd15 layout to use instead of the shipped sd15 config")
    sd15.add_argument("out", help="the PortraitTalk .safetensors file to write (put it in models/portraittalk)")
    args = parser.parse_args(argv)
    from ..models.config import ConfigError, load_config
    from ..models.files.assemble import assemble_sd15, write_assembled
    from ..models.files.weights import ModelFileError
    from .convert import write_and_report

    dtype = torch_dtype(args.dtype)

    def write():
        config = load_config(args.config) if args.config else None
        # built directly in the file's dtype: an fp16 file never needs the fp32 model in memory
        components, report = assemble_sd15(args.checkpoint, args.motion, args.weights, dtype=dtype, config=config,
                                           progress=lambda done, total, what: print(f"[{done}/{total}] {what}",
                                                                                    file=sys.stderr))
        write_assembled(components, report, args.out, dtype)
        return report

    return write_and_report(write, args.out, (ModelFileError, ConfigError, OSError))


if __name__ == "__main__":
    raise SystemExit(main())
