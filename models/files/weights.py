"""Reading and writing model files, safely.

- A PortraitTalk model is one `.safetensors` file whose metadata holds its config (JSON), or a folder of
  such files. Tensor names are `<component>.<module key>`.
- Other files (SD-1.5 single-file checkpoints, AnimateDiff motion modules, Hallo's `net.pth`) are read
  with safetensors or `torch.load(..., weights_only=True)`: nothing in a file is ever executed, and the
  metadata is parsed as JSON, never evaluated.
- Every failure raises `ModelFileError`, naming the file, what was expected and what was found.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import to_json, validate

FORMAT = "portraittalk"
VERSION = "1"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MAX_HEADER = 100 * 1024 * 1024  # a safetensors header larger than this is hostile, not a model
# Bytes per element of the safetensors dtypes this package can load (torch's).
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class ModelFileError(ValueError):
    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)


def _label(name: str) -> str:
    """A tensor name for a message: a hostile header's names can be megabytes long."""
    return repr(name if len(name) <= 80 else name[:80] + "...")


def _check_safetensors_header(path: Path) -> dict:
    """Validate the header before safetensors maps the file: length, JSON, dtypes and offsets."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(path, f"not a safetensors file: {size} bytes is too short for a header")
        (length,) = struct.unpack("<Q", head)
        if length > min(MAX_HEADER, size - 8):
            raise ModelFileError(path, f"corrupt safetensors header: it claims {length} bytes, the file has {size}")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ModelFileError(path, f"corrupt safetensors header (not JSON: {str(err)[:200]})") from None
    if not isinstance(header, dict):
        raise ModelFileError(path, "corrupt safetensors header (not a JSON object)")
    data = size - 8 - length
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(path, "corrupt safetensors header: '__metadata__' is not a map of strings")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = (int(x) for x in info["data_offsets"])
            dtype, shape = info["dtype"], [int(x) for x in info["shape"]]
        except (KeyError, TypeError, ValueError, OverflowError):
            raise ModelFileError(path, f"corrupt safetensors header entry {_label(name)}") from None
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise ModelFileError(path, f"tensor {_label(name)} has an unknown dtype {str(dtype)[:40]!r}")
        if not 0 <= start <= end <= data:
            raise ModelFileError(path, f"tensor {_label(name)} lies outside the file (offsets {start}..{end}, data {data} bytes)"
                                 + ("; the file is probably truncated" if end > data else ""))
        if any(d < 0 for d in shape):
            raise ModelFileError(path, f"tensor {_label(name)} has a negative dimension {shape[:8]}")
        needed = DTYPE_SIZES[dtype]
        for d in shape:
            needed *= d
        if needed != end - start:
            raise ModelFileError(path, f"tensor {_label(name)} of shape {shape[:8]} and dtype {dtype} needs {needed} bytes, "
                                 f"but its data is {end - start} bytes")
        spans.append((start, end, name))
    spans.sort()
    for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
        if s2 < e1:
            raise ModelFileError(path, f"tensors {_label(n1)} and {_label(n2)} overlap in the file")
    return header


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """State dict and metadata of a safetensors file, with errors that name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    header = _check_safetensors_header(path)
    metadata = header.get("__metadata__") or {}
    try:
        tensors = load_file(str(path))
    except (SafetensorError, ValueError, RuntimeError, OSError) as err:
        raise ModelFileError(path, f"cannot read tensors ({err})") from None
    return tensors, dict(metadata)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Weights from safetensors or, for pickle-format checkpoints, `torch.load(weights_only=True)`, which
    refuses anything but tensors and plain containers."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    if not path.is_file():
        raise ModelFileError(path, "no such file")
    try:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # files from old torch versions cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler's refusals and corrupt archives alike
        raise ModelFileError(path, f"not a weights-only checkpoint; refusing to unpickle it ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''})") from None
    while isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelFileError(path, "expected a mapping of tensor names to tensors")
    return data


def save_model(path: str | os.PathLike, state: dict[str, torch.Tensor], config: dict, extra: dict | None = None,
               dtype: torch.dtype | None = None) -> Path:
    """Write a PortraitTalk model file (atomically: a half-written file never replaces a good one).
    `dtype` converts floating-point tensors, e.g. to float16 for a smaller file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "version": VERSION, "config": to_json(config)}
    metadata.update({k: str(v) for k, v in (extra or {}).items()})
    tmp = path.with_name(path.name + ".partial")
    def prepare(v: torch.Tensor) -> torch.Tensor:
        v = v.detach().cpu()
        return (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()

    save_file({k: prepare(v) for k, v in state.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def model_files(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise ModelFileError(path, "folder holds no .safetensors model files")
        return files
    if path.suffix in PICKLE_SUFFIXES:
        raise ModelFileError(path, f"'{path.suffix}' files are pickles; PortraitTalk models are .safetensors "
                             "(convert Hallo weights with `portraittalk convert hallo`)")
    return [path]


# A model is built from its file's config before the weights are checked against it, so a config must not
# describe a model that is too large to build: a 60 kB file claiming 65536-wide layers or thousands of
# layers per block would exhaust memory or build for hours. These bounds are far above SD-1.5's.
MAX_CONFIG_COUNT = 64  # layers, heads, blocks: any key with "layers" or "heads" in its name
MAX_CONFIG_WIDTH = 16384  # channels, widths, sizes: any other integer
MAX_CONFIG_ID = 2 ** 20  # vocabulary sizes and token ids
MAX_CONFIG_LIST = 16  # numeric lists (block_out_channels ...)


def check_config_limits(config, where: str = "config") -> None:
    """Raise ConfigError-like ValueError for a config whose numbers describe an absurdly large model."""
    if isinstance(config, dict):
        for key, value in config.items():
            check_config_limits(value, f"{where}.{key}")
        return
    if isinstance(config, list):
        numbers = [v for v in config if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) > MAX_CONFIG_LIST:
            raise ValueError(f"{where} lists {len(numbers)} numbers (at most {MAX_CONFIG_LIST})")
        for value in config:
            check_config_limits(value, f"{where}[]")
        return
    if isinstance(config, bool) or not isinstance(config, int):
        return
    name = where.rsplit(".", 1)[-1].rstrip("[]").lower()
    if "layers" in name or "heads" in name:
        limit = MAX_CONFIG_COUNT
    elif "vocab" in name or name.endswith("_id"):
        limit = MAX_CONFIG_ID
    else:
        limit = MAX_CONFIG_WIDTH
    if abs(config) > limit:
        raise ValueError(f"{where} is {config} (at most {limit}): the model it describes is too large to build")


def read_model(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """A PortraitTalk model file or folder → (state dict, config). The config comes from the first file
    whose metadata has one."""
    state: dict[str, torch.Tensor] = {}
    config = None
    for file in model_files(path):
        tensors, metadata = read_safetensors(file)
        if metadata.get("format") == FORMAT and "config" in metadata and config is None:
            try:
                config = json.loads(metadata["config"])
                validate(config)
                check_config_limits(config)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError,
                    RecursionError) as err:  # JSON errors and ConfigError are ValueErrors
                raise ModelFileError(file, f"its PortraitTalk config is invalid ({type(err).__name__}: "
                                     f"{str(err)[:300]})") from None
        state.update(tensors)
    if config is None:
        raise ModelFileError(path, "not a PortraitTalk model: no safetensors metadata 'format': 'portraittalk' with "
                             "a config (is it an SD, AnimateDiff or Hallo file? see `portraittalk convert`)")
    return state, config


def split_components(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        component, _, rest = key.partition(".")
        parts.setdefault(component, {})[rest] = value
    return parts


@dataclass(frozen=True)
class StateFit:
    """How a state dict fits a module's own keys and shapes. Each loader words its own error from it."""
    missing: list[str]  # the module's keys the state lacks, in the module's order
    unexpected: list[str]  # the state's keys the module lacks, in the state's order
    mismatched: dict[str, tuple[tuple, tuple]]  # key → (the state's shape, the module's), in the state's order

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def state_fit(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> StateFit:
    """Compare `state` with `own` (a module's `state_dict()`) by key and shape, without loading anything."""
    return StateFit(missing=[k for k in own if k not in state],
                    unexpected=[k for k in state if k not in own],
                    mismatched={k: (tuple(state[k].shape), tuple(own[k].shape)) for k in state
                                if k in own and state[k].shape != own[k].shape})


def load_component(module: torch.nn.Module, state: dict[str, torch.Tensor], name: str, source) -> None:
    """Load one component strictly, turning shape and key mismatches into a `ModelFileError`."""
    expected = module.state_dict()
    fit = state_fit(expected, state)
    if not fit.exact:
        missing, unexpected = fit.missing, fit.unexpected
        wrong = [f"{k}: file {fit.mismatched[k][0]}, model {fit.mismatched[k][1]}"
                 for k in expected if k in fit.mismatched]

        def show(items):
            return ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")
        problems = [f"{len(missing)} missing keys: {show(missing)}" if missing else "",
                    f"{len(unexpected)} unexpected keys: {show(unexpected)}" if unexpected else "",
                    f"{len(wrong)} shape mismatches: {show(wrong)}" if wrong else ""]
        raise ModelFileError(source, f"{name} does not match its config: " + "; ".join(p for p in problems if p))
    module.load_state_dict(state, strict=True)
