"""The precision names the command line and the nodes accept, and the torch dtype each one means."""

from __future__ import annotations

# torch attribute names rather than dtypes, so that importing this module does not import torch
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def torch_dtype(name: str):
    """The torch dtype for "fp32", "fp16" or "bf16"."""
    import torch

    return getattr(torch, DTYPE_NAMES[name])
