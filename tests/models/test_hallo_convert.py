"""`portraittalk convert hallo`: every key of Hallo's manifest consumed, mismatches named, fp16 and fp32,
weights landing where they belong (checked by running the converted model against the original)."""

from __future__ import annotations

import pytest
import torch

from fake_checkpoints import hallo_manifest
from hallo_fixtures import hallo_names, tiny_hallo_config


@pytest.fixture(scope="module")
def layout():
    from comfyui_portraittalk.models.files.hallo import expected_layout, hallo_config

    return expected_layout(hallo_config())


def _meta_manifest() -> dict[str, torch.Tensor]:
    return {k: torch.empty(v["shape"], device="meta") for k, v in hallo_manifest()["tensors"].items()}


def test_every_manifest_key_is_consumed(layout):
    from comfyui_portraittalk.models.files.hallo import plan

    state = _meta_manifest()
    sources, report = plan(state, layout, "net.pth")
    assert report.manifest_keys == len(state) == 2656
    assert report.coverage == 1.0
    assert report.consumed == {"reference_unet": 682, "denoising_unet": 1946, "face_locator": 16, "imageproj": 4,
                               "audioproj": 8}
    assert "2656/2656 keys (100.0%)" in report.summary()
    # what the file cannot give is exactly the text stream's K/V (16 layers × 2 nets × K and V)
    assert sorted(set(layout) - set(sources)) == sorted(k for k in layout if "_ip." in k) and len(layout) - len(sources) == 64


@pytest.mark.parametrize("change", ["drop", "extra", "shape"])
def test_a_mismatch_fails_naming_the_keys(layout, change):
    from comfyui_portraittalk.models.files.hallo import plan
    from comfyui_portraittalk.models.files.weights import ModelFileError

    state = _meta_manifest()
    key = "denoising_unet.up_blocks.2.audio_modules.1.transformer_blocks.0.attn2_1.to_v.weight"
    if change == "drop":
        del state[key]
        expected = "keys the file lacks: animate_net.unet.up_blocks.2.audio_modules.1.transformer_blocks.0.attn2_1.to_v"
    elif change == "extra":
        state["denoising_unet.up_blocks.2.audio_modules.9.bogus.weight"] = torch.empty(3, device="meta")
        expected = "does not have: denoising_unet.up_blocks.2.audio_modules.9.bogus.weight"
    else:
        state[key] = torch.empty(320, 1024, device="meta")
        expected = f"shape mismatches: {key} (320, 1024)"
    with pytest.raises(ModelFileError) as info:
        plan(state, layout, "net.pth")
    assert expected in str(info.value)


def test_not_a_hallo_file_is_refused(tmp_path):
    from comfyui_portraittalk.cli.convert import main as convert_main

    torch.save({"model.diffusion_model.x": torch.zeros(1)}, tmp_path / "other.pth")
    assert convert_main(["hallo", str(tmp_path / "other.pth"), str(tmp_path / "out.safetensors")]) == 2
    assert not (tmp_path / "out.safetensors").exists()


@pytest.fixture(scope="module")
def small_model():
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from conftest import wake_zero_branches

    pipe = PortraitTalkPipeline.from_config(tiny_hallo_config(text={"stream_weights": None}), seed=3)
    wake_zero_branches(pipe.components)
    return pipe


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_converted_weights_run_as_the_original(tmp_path, small_model, dtype, capsys):
    """A Hallo-named checkpoint (fp32 or fp16) of a small model converts, loads, and predicts exactly what the
    model it was written from predicts (with fp16 values in both)."""
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from comfyui_portraittalk.cli.convert import main as convert_main
    from comfyui_portraittalk.models.files.hallo import convert_hallo

    state = {k: v.to(dtype) for k, v in small_model.components.state_dict().items()
             if k.startswith(("identity_net.", "animate_net.", "image_proj.", "audio_proj."))}
    hallo = hallo_names(state)
    torch.save(hallo, tmp_path / "net.pth")
    out = tmp_path / "net.portraittalk.safetensors"
    report = convert_hallo(tmp_path / "net.pth", out, config=small_model.config)
    assert report.coverage == 1.0 and report.manifest_keys == len(hallo)
    converted = PortraitTalkPipeline.from_pretrained(out)
    got = converted.components.state_dict()
    for key, value in state.items():
        if "_ip." in key:
            assert not got[key].any(), key  # no text K/V in Hallo's file: zeros, λ_text fixed at 0
        else:
            assert torch.equal(got[key].to(dtype), value), key
    assert converted.config["text"]["stream_weights"] is None
    reference = PortraitTalkPipeline.from_config(small_model.config, seed=0)
    reference.components.animate_net.load_state_dict(
        {k[len("animate_net."):]: v.float() for k, v in state.items() if k.startswith("animate_net.")})
    x, t = torch.randn(1, 2, 48, 16, 16), torch.tensor([500])
    ctx_tokens = torch.randn(1, 4, 64)
    from comfyui_portraittalk.models.networks.attention import AttentionContext, StreamScales

    ctx = AttentionContext(scales=StreamScales(text=0.0), audio_tokens=torch.randn(2, 4, 64))
    with torch.no_grad():
        a = reference.components.animate_net(x, t, ctx_tokens, ctx)
        b = converted.components.animate_net(x, t, ctx_tokens, ctx)
    assert torch.equal(a, b)
    assert convert_main(["hallo", str(tmp_path / "net.pth"), str(tmp_path / "cli.safetensors")]) == 2  # full layout
    assert "does not match Hallo's net.pth layout" in capsys.readouterr().err


def test_streamed_files_read_back_exactly_and_map_without_a_copy(tmp_path):
    from safetensors.torch import load_file

    from comfyui_portraittalk.models.files.safetensors_stream import read_mapped, write_streaming

    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2, dtype=torch.float16),
               "d": torch.randn(4, dtype=torch.bfloat16), "e": torch.zeros(0)}
    path = write_streaming(tmp_path / "x.safetensors", [(k, tuple(v.shape), v.dtype) for k, v in tensors.items()],
                           tensors.__getitem__, {"format": "test"})
    assert all(torch.equal(load_file(str(path))[k], v) for k, v in tensors.items())
    mapped, metadata = read_mapped(path)
    assert metadata == {"format": "test"} and all(torch.equal(mapped[k], v) for k, v in tensors.items())
    assert not (tmp_path / "x.safetensors.partial").exists()
