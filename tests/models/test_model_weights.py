"""Model files: bit-exact round trips, and clear errors for anything wrong or hostile."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from comfyui_portraittalk.models import PortraitTalkPipeline
from comfyui_portraittalk.models.files.weights import ModelFileError, read_model, read_state_dict


@pytest.fixture(scope="module")
def saved(tiny_pipe, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    tiny_pipe.save_pretrained(path)
    return path


def test_save_and_load_round_trip_bit_exactly(tiny_pipe, saved, reference_images, speechlike):
    loaded = PortraitTalkPipeline.from_pretrained(saved)
    a, b = tiny_pipe.components.state_dict(), loaded.components.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config == tiny_pipe.config
    wave, sr = speechlike
    args = ([reference_images[0]], wave[: int(0.3 * sr)], sr, "a face with glasses")
    out_a = tiny_pipe(*args, num_inference_steps=2, text_guidance_scale=2.0)
    out_b = loaded(*args, num_inference_steps=2, text_guidance_scale=2.0)
    assert np.array_equal(out_a.frames, out_b.frames)


def test_a_folder_of_files_loads_as_one_model(tiny_pipe, saved, tmp_path):
    state, config = read_model(saved)
    folder = tmp_path / "split"
    folder.mkdir()
    nets = {k: v for k, v in state.items() if k.startswith(("identity_net.", "animate_net."))}
    rest = {k: v for k, v in state.items() if k not in nets}
    save_file(nets, str(folder / "a_nets.safetensors"))
    save_file(rest, str(folder / "b_rest.safetensors"), metadata={"format": "portraittalk", "config": json.dumps(config)})
    loaded = PortraitTalkPipeline.from_pretrained(folder)
    assert all(torch.equal(v, loaded.components.state_dict()[k]) for k, v in state.items())


def test_half_precision_files_are_half_the_size_and_close(tiny_pipe, saved, tmp_path):
    half = tiny_pipe.save_pretrained(tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.55 * saved.stat().st_size
    loaded = PortraitTalkPipeline.from_pretrained(half)
    a, b = tiny_pipe.components.state_dict(), loaded.components.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3, rtol=1e-3) for k in a)


def header_file(path, header: dict, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@pytest.mark.parametrize("case", ["truncated", "huge_header", "not_json", "overlap", "outside", "bad_dtype",
                                  "empty", "negative_shape"])
def test_hostile_or_corrupt_safetensors_get_a_clear_error(saved, tmp_path, case):
    path = tmp_path / f"{case}.safetensors"
    if case == "truncated":
        path.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    elif case == "huge_header":
        path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    elif case == "not_json":
        path.write_bytes(struct.pack("<Q", 8) + b"\xff\xfe{{{{{{")
    elif case == "overlap":
        header_file(path, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                           "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24))
    elif case == "outside":
        header_file(path, {"a": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, bytes(16))
    elif case == "bad_dtype":
        header_file(path, {"a": {"dtype": "X99", "shape": [4], "data_offsets": [0, 16]}}, bytes(16))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "negative_shape":
        header_file(path, {"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, bytes(16))
    with pytest.raises(ModelFileError) as info:
        PortraitTalkPipeline.from_pretrained(path)
    assert str(path) in str(info.value)


class Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin", ".pth"])
def test_pickle_files_are_refused_and_never_executed(tmp_path, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps({"weight": Boom()}))
    with pytest.raises(ModelFileError, match="pickle"):
        PortraitTalkPipeline.from_pretrained(path)
    with pytest.raises(ModelFileError, match="unpickle"):
        read_state_dict(path)
    torch.save({"w": torch.zeros(2), "evil": Boom()}, tmp_path / f"zip{suffix}")
    with pytest.raises(ModelFileError, match="unpickle"):
        read_state_dict(tmp_path / f"zip{suffix}")
    assert not (tmp_path / "PWNED").exists()


def test_weights_only_checkpoints_still_load(tmp_path):
    torch.save({"state_dict": {"a": torch.ones(3)}}, tmp_path / "ok.ckpt")
    assert torch.equal(read_state_dict(tmp_path / "ok.ckpt")["a"], torch.ones(3))


def test_a_file_of_another_model_is_named_as_such(tmp_path, saved):
    other = tmp_path / "sd_unet.safetensors"
    save_file({"conv_in.weight": torch.zeros(320, 4, 3, 3)}, str(other))
    with pytest.raises(ModelFileError, match="not a PortraitTalk model"):
        PortraitTalkPipeline.from_pretrained(other)
    state, config = read_model(saved)
    shrunk = dict(state)
    shrunk["animate_net.unet.conv_in.weight"] = torch.zeros(64, 47, 3, 3)
    bad = tmp_path / "mismatch.safetensors"
    save_file(shrunk, str(bad), metadata={"format": "portraittalk", "config": json.dumps(config)})
    with pytest.raises(ModelFileError, match=r"animate_net does not match.*conv_in.weight: file \(64, 47, 3, 3\)"):
        PortraitTalkPipeline.from_pretrained(bad)
    missing = {k: v for k, v in state.items() if not k.startswith("audio_proj.")}
    lacking = tmp_path / "lacking.safetensors"
    save_file(missing, str(lacking), metadata={"format": "portraittalk", "config": json.dumps(config)})
    with pytest.raises(ModelFileError, match="lacks the parts.*audio_proj"):
        PortraitTalkPipeline.from_pretrained(lacking)


def test_config_metadata_is_parsed_never_evaluated(tmp_path, saved, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state, _ = read_model(saved)
    path = tmp_path / "evalme.safetensors"
    save_file({"a": torch.zeros(1)}, str(path), metadata={
        "format": "portraittalk", "config": "__import__('pathlib').Path('PWNED').write_text('x')"})
    with pytest.raises(ModelFileError, match="config is invalid"):
        PortraitTalkPipeline.from_pretrained(path)
    assert not (tmp_path / "PWNED").exists()


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ModelFileError, match="no such file") as info:
        PortraitTalkPipeline.from_pretrained(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in str(info.value)
