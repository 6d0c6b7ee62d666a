"""Fuzzing the model-file loader (hypothesis): random bytes, structured headers with hostile values
(huge or negative lengths, shapes and offsets, unknown dtypes, overlapping spans, odd metadata), and
mutations (flipped bytes, truncations, insertions) of a real PortraitTalk file. `read_safetensors` and
`read_model` either return tensors that agree with the header, or raise `ModelFileError` naming the
file. Nothing else escapes, nothing crashes the interpreter, nothing is evaluated, nothing goes online.

Derandomised by default (CI sees the same examples every run); PORTRAITTALK_FUZZ_EXAMPLES and
PORTRAITTALK_FUZZ_RANDOM=1 search further.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from comfyui_portraittalk.models.files.weights import DTYPE_SIZES, ModelFileError, read_model, read_safetensors

from comfyui_harness.offline import no_network  # tests/nodes (tests/ is on sys.path, as for conftest)

EXAMPLES = int(os.environ.get("PORTRAITTALK_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("PORTRAITTALK_FUZZ_RANDOM"),
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.function_scoped_fixture])
SECONDS_PER_CALL = 10.0
TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
                "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool, "F64": torch.float64}


@pytest.fixture(scope="module", autouse=True)
def offline():
    with no_network() as refused:
        yield
    assert not refused, refused


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="fuzz-safetensors-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def real_model(tiny_pipe, workdir) -> bytes:
    """A small but real PortraitTalk file: the tiny config in its metadata, a few of its tensors."""
    state = tiny_pipe.components.state_dict()
    keys = sorted(state)[:6]
    config = tiny_pipe.config
    return save({k: state[k].contiguous() for k in keys},
                metadata={"format": "portraittalk", "version": "1", "config": json.dumps(config)})


def check_loader(path: Path, data: bytes) -> None:
    """The property: a ModelFileError that names the file, or tensors that match the header."""
    path.write_bytes(data)
    for reader in (read_safetensors, read_model):
        start = time.monotonic()
        try:
            out = reader(path)
        except ModelFileError as err:
            assert str(path) in str(err) and len(str(err)) < 2000, str(err)[:3000]
            continue
        finally:
            assert time.monotonic() - start < SECONDS_PER_CALL
        tensors = out[0]
        if reader is read_safetensors:
            (length,) = struct.unpack("<Q", data[:8])
            header = json.loads(data[8: 8 + length])
            names = {k for k in header if k != "__metadata__"}
            assert set(tensors) == names
            for name in names:
                assert list(tensors[name].shape) == [int(d) for d in header[name]["shape"]]


# ---- strategies ------------------------------------------------------------------------------------

big_ints = st.one_of(st.integers(-5, 64), st.integers(-2**70, 2**70), st.sampled_from([2**31, 2**32, 2**63, 2**64 - 1]))
json_scalars = st.one_of(st.none(), st.booleans(), big_ints, st.floats(allow_nan=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)
dtype_names = st.one_of(st.sampled_from(sorted(DTYPE_SIZES)), st.sampled_from(["X99", "f32", "", "F4", "C64"]),
                        json_values)


@st.composite
def tensor_entries(draw, data_size: int):
    """A header entry: mostly plausible (a valid dtype, a shape, offsets inside the data), often not."""
    dtype = draw(dtype_names)
    shape = draw(st.one_of(st.lists(st.integers(0, 6), max_size=4), st.lists(big_ints, max_size=4), json_values))
    if draw(st.booleans()):
        start = draw(st.integers(0, max(data_size, 0)))
        size = DTYPE_SIZES.get(dtype, 4) if isinstance(dtype, str) else 4
        count = 1
        for d in shape if isinstance(shape, list) else []:
            count *= d if isinstance(d, int) else 1
        offsets = [start, start + size * count]
    else:
        offsets = draw(st.one_of(st.lists(big_ints, min_size=2, max_size=2), json_values))
    entry = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
    for key in draw(st.lists(st.sampled_from(["dtype", "shape", "data_offsets"]), max_size=1)):
        entry.pop(key)  # sometimes a field is missing
    return entry


@st.composite
def header_files(draw):
    data_size = draw(st.integers(0, 256))
    names = draw(st.lists(st.text(min_size=1, max_size=12), max_size=5, unique=True))
    header = {name: draw(tensor_entries(data_size)) for name in names if name != "__metadata__"}
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.one_of(
            st.dictionaries(st.text(max_size=8), st.text(max_size=16), max_size=3),
            st.fixed_dictionaries({"format": st.just("portraittalk"), "config": st.one_of(
                st.text(max_size=40), json_values.map(json.dumps))}),
            json_values))
    raw = json.dumps(header).encode()
    raw += b" " * draw(st.integers(0, 7))
    length = draw(st.one_of(st.just(len(raw)), st.just(len(raw)), st.integers(0, 300), st.integers(0, 2**64 - 1)))
    return struct.pack("<Q", length) + raw + draw(st.binary(min_size=data_size, max_size=data_size))


@st.composite
def mutations(draw, original: bytes):
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "length"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        elif op == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "length" and len(data) >= 8:
            data[:8] = struct.pack("<Q", draw(st.integers(0, 2**64 - 1)))
    return bytes(data)


# ---- properties ------------------------------------------------------------------------------------

@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes(workdir, data):
    check_loader(workdir / "random.safetensors", data)


@FUZZ
@given(data=header_files())
def test_structured_hostile_headers(workdir, data):
    check_loader(workdir / "header.safetensors", data)


@FUZZ
@given(data=st.data())
def test_mutated_real_model_files(workdir, real_model, data):
    check_loader(workdir / "mutated.safetensors", data.draw(mutations(real_model)))


@FUZZ
@given(config=json_values)
def test_config_metadata_is_json_checked_never_run(workdir, config):
    data = save({"a": torch.zeros(2)}, metadata={"format": "portraittalk", "config": json.dumps(config)})
    check_loader(workdir / "config.safetensors", data)


SECTIONS = ["family", "video", "codec", "unet", "motion", "structure", "audio", "identity", "text", "scheduler",
            "sampling"]


def _raw_header(text: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(text)) + text + data


def _config_file(**sections) -> bytes:
    config = {k: {} for k in SECTIONS} | sections
    return save({"a": torch.zeros(1)}, metadata={"format": "portraittalk", "config": json.dumps(config)})


# What the fuzzers found in the first version of the loader (each escaped as another exception).
FOUND = {
    "offset-infinity": _raw_header(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,Infinity]}}', bytes(4)),
    "json-nested-200000-deep": _raw_header(b"[" * 200000),
    "config-codec-factor-zero": _config_file(video={"size": 4}, codec={"type": "space_to_depth", "factor": 0}),
    "config-codec-factor-text": _config_file(video={"size": 4}, codec={"type": "space_to_depth", "factor": "x"}),
    "config-is-a-list": save({"a": torch.zeros(1)}, metadata={"format": "portraittalk", "config": "[1, 2]"}),
    "metadata-not-strings": _raw_header(b'{"__metadata__":{"format":1}}'),
    "dtype-is-a-list": _raw_header(b'{"a":{"dtype":[1],"shape":[1],"data_offsets":[0,4]}}', bytes(4)),
    "shape-overflows-64-bits": _raw_header(b'{"a":{"dtype":"F32","shape":[4294967296,4294967296],'
                                           b'"data_offsets":[0,16]}}', bytes(16)),
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_what_the_fuzzers_found(workdir, case):
    path = workdir / f"found_{case}.safetensors"
    path.write_bytes(FOUND[case])
    for reader in (read_model,) if case.startswith("config") else (read_safetensors, read_model):  # valid files
        with pytest.raises(ModelFileError) as info:
            reader(path)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("dtype", sorted(TORCH_DTYPES))
def test_every_dtype_torch_writes_is_read_back(workdir, dtype):
    tensor = torch.arange(6).reshape(2, 3).to(TORCH_DTYPES[dtype])
    path = workdir / f"ok_{dtype}.safetensors"
    path.write_bytes(save({"t": tensor}))
    tensors, _ = read_safetensors(path)
    assert torch.equal(tensors["t"], tensor)
