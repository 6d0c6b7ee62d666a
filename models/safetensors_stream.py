"""Writing a safetensors file one tensor at a time, so converting a multi-gigabyte checkpoint never holds
more than one tensor's bytes (safetensors' own `save_file` serialises the whole state dict in memory)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Callable, Iterable

import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


def write_streaming(path: str | os.PathLike, entries: Iterable[tuple[str, tuple[int, ...], torch.dtype]],
                    tensor: Callable[[str], torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write `entries` (name, shape, dtype), asking `tensor(name)` for each one's values in turn. The file
    appears atomically (written as `<name>.partial`, then renamed)."""
    path = Path(path)
    entries = list(entries)
    header: dict = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    offset = 0
    for name, shape, dtype in entries:
        size = int(torch.Size(shape).numel()) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep the data 8-byte aligned
    tmp = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for name, shape, dtype in entries:
                value = tensor(name).detach().to("cpu", dtype).contiguous()
                if tuple(value.shape) != tuple(shape):
                    raise ValueError(f"{name}: got shape {tuple(value.shape)}, announced {tuple(shape)}")
                f.write(value.reshape(-1).view(torch.uint8).numpy().tobytes())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
