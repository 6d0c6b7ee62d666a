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


NAMES = {v: k for k, v in DTYPES.items()}


def read_mapped(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file whose tensors are views of the memory-mapped file: loading
    them into a model copies each once, and the file's bytes stay in the page cache, not in the process's
    own memory (a full-size model then needs its own size in RAM, not twice that). The header is validated
    first (`weights._check_safetensors_header`)."""
    import mmap
    import warnings

    from .weights import ModelFileError, _check_safetensors_header

    path = Path(path)
    header = _check_safetensors_header(path)
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    base = 8 + length
    tensors = {}
    with warnings.catch_warnings():  # the mapping is read-only; the tensors are only ever copied from
        warnings.simplefilter("ignore", UserWarning)
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = NAMES.get(info["dtype"])
            if dtype is None:
                raise ModelFileError(path, f"tensor {name!r} has an unsupported dtype {info['dtype']}")
            start, end = info["data_offsets"]
            count = (end - start) // torch.empty((), dtype=dtype).element_size()
            flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=base + start) if count else \
                torch.empty(0, dtype=dtype)
            tensors[name] = flat.reshape(info["shape"])
    return tensors, dict(header.get("__metadata__") or {})
