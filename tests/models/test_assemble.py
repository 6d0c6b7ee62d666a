"""Assembling an `sd15` model from an SD-1.5 checkpoint, an AnimateDiff v2 motion module and PortraitTalk
weights (models/files/assemble.py, `portraittalk assemble`). The files have the real key layouts at a tenth of the
widths (fake_checkpoints.small_sd15_config), so every test runs in seconds; tests/nodes/test_sd15_nodes.py
does it at the real sizes in ComfyUI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from comfyui_portraittalk.models.files.assemble import assemble_sd15, new_keys
from comfyui_portraittalk.models.files.weights import ModelFileError
from fake_checkpoints import animatediff_v2_motion_module, sd15_checkpoint, small_sd15_config

TEMPORAL = "up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_q.weight"
OURS_TEMPORAL = "animate_net.unet." + TEMPORAL.replace(".temporal_transformer", "").replace("attention_blocks.1",
                                                                                             "attn2")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    from comfyui_harness.environment import ensure_comfyui

    tmp = tmp_path_factory.mktemp("assemble")
    config = small_sd15_config()
    ldm, expected = sd15_checkpoint(ensure_comfyui(), config=config, with_text=False)
    save_file(ldm, str(tmp / "sd15.safetensors"))
    unet_only = {k: v for k, v in ldm.items() if not k.startswith("first_stage_model.")}
    save_file(unet_only, str(tmp / "unet_only.safetensors"))
    motion = animatediff_v2_motion_module(config=config)
    save_file(motion, str(tmp / "mm_sd_v15_v2.safetensors"))
    (tmp / "model.json").write_text(json.dumps(config))
    return {"dir": tmp, "config": config, "checkpoint": tmp / "sd15.safetensors", "expected": expected,
            "motion": tmp / "mm_sd_v15_v2.safetensors", "motion_state": motion}


@pytest.fixture(scope="module")
def base(sources):
    components, report = assemble_sd15(sources["checkpoint"], sources["motion"], config=sources["config"])
    return components.state_dict(), report


def test_the_sources_tensors_land_in_place_and_the_new_streams_stay_at_init(sources, base):
    state, report = base
    expected = sources["expected"]
    for key, value in expected["unet"].items():
        assert torch.equal(state[f"animate_net.unet.{key}"], value.float()), key
        if not key.startswith(("conv_norm_out", "conv_out")):  # IdentityNet has no output head
            assert torch.equal(state[f"identity_net.unet.{key}"], value.float()), key
    for key, value in expected["vae"].items():
        assert torch.equal(state[f"codec.vae.{key}"], value.float().reshape(state[f"codec.vae.{key}"].shape)), key
    assert torch.equal(state[OURS_TEMPORAL], sources["motion_state"][TEMPORAL].float())
    assert report.from_checkpoint == {"identity_net": 682, "animate_net": 686, "vae": 248}  # as at full size
    assert report.from_motion == len(sources["motion_state"]) - 42  # all but AnimateDiff's 42 sinusoid buffers
    assert report.untrained == {"animate_net structure encoder": 16,
                                "animate_net new-stream K/V (to_k_ip, to_v_ip)": 64, "audio_proj": 8,
                                "identity_net new-stream K/V (to_k_ip, to_v_ip)": 32, "image_proj": 4}
    assert "UNTRAINED" in report.summary() and "sd15.safetensors" in report.summary()
    # at init, as a fresh build has them: new streams add nothing (V = 0), K is random
    v = [k for k in state if ".to_v_ip." in k]
    assert v and all(not state[k].any() for k in v)
    assert all(state[k].std() > 0 for k in state if ".to_k_ip." in k)


def test_the_new_parts_are_initialised_like_a_fresh_build(sources, base):
    """What no file gives gets a fresh build's values: the same zeros, the same sinusoids, the same scale."""
    from comfyui_portraittalk.models.files.components import build_components

    state, _ = base
    torch.manual_seed(0)
    fresh = build_components(sources["config"], with_codec=True).state_dict()
    with torch.device("meta"):
        keys = sorted(new_keys(build_components(sources["config"], with_codec=True)))
    assert keys and all(state[k].dtype == torch.float32 for k in keys)
    for key in keys:
        ours, theirs = state[key], fresh[key]
        assert torch.equal(ours == 0, theirs == 0) or ours.numel() < 2, key
        if key.endswith(".pos_embed.pe") or not theirs.any():
            assert torch.equal(ours, theirs), key
        elif theirs.numel() >= 256:
            assert 0.8 < float(ours.std() / theirs.std()) < 1.25, key
    again, _ = assemble_sd15(sources["checkpoint"], sources["motion"], config=sources["config"])
    assert all(torch.equal(v, state[k]) for k, v in again.state_dict().items())  # seeded: reproducible


def _weights(sources, name: str, tensors: dict, metadata: dict | None = None):
    path = sources["dir"] / name
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_portraittalk_weights_change_exactly_their_tensors(sources, base):
    state, report = base
    gen = torch.Generator().manual_seed(1)
    keys = ["animate_net.unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_v_ip.1.weight",
            "image_proj.image_embeds.weight", "audio_proj.proj1.weight", "animate_net.structure.conv_out.weight",
            "identity_net.unet.conv_in.weight"]  # a new stream, projections, structure, and a fine-tuned base layer
    given = {k: torch.randn(state[k].shape, generator=gen).half() for k in keys}
    path = _weights(sources, "streams.safetensors", given)
    components, overlaid = assemble_sd15(sources["checkpoint"], sources["motion"], path, config=sources["config"])
    after = components.state_dict()
    changed = sorted(k for k in state if not torch.equal(state[k], after[k]))
    assert changed == sorted(keys)
    assert all(torch.equal(after[k], v.float()) for k, v in given.items())
    assert overlaid.from_weights == {"animate_net": 2, "image_proj": 1, "audio_proj": 1, "identity_net": 1}
    assert sum(overlaid.untrained.values()) == sum(report.untrained.values()) - 4  # conv_in was not untrained
    assert overlaid.untrained["image_proj"] == 3 and overlaid.untrained["animate_net structure encoder"] == 15


def test_wrong_files_are_refused_naming_the_file_and_what_was_found(sources, tmp_path):
    ckpt, motion, config = sources["checkpoint"], sources["motion"], sources["config"]

    def refused(match, checkpoint=ckpt, motion_file=motion, weights=None):
        with pytest.raises(ModelFileError, match=match) as err:
            assemble_sd15(checkpoint, motion_file, weights, config=config)
        return str(err.value)

    msg = refused("expected an SD-1.5 single-file checkpoint.*found an AnimateDiff motion module", checkpoint=motion)
    assert msg.startswith(str(motion))
    msg = refused("expected an AnimateDiff v2 motion module.*found an SD-1.5 checkpoint", motion_file=ckpt)
    assert msg.startswith(str(ckpt))
    refused("UNet-only", checkpoint=sources["dir"] / "unet_only.safetensors")
    refused("no such file", checkpoint=tmp_path / "missing.safetensors")
    torch.save({"x": torch.zeros(1)}, tmp_path / "mm_sd_v15_v2.ckpt")
    refused("is a pickle file \\(.ckpt\\).*never unpickles", motion_file=tmp_path / "mm_sd_v15_v2.ckpt")
    foreign = _weights(sources, "foreign.safetensors", {"image_proj.image_embeds.weight": torch.zeros(128, 1024),
                                                       "lora_unet_down.alpha": torch.zeros(1)})
    msg = refused("foreign.safetensors: does not fit a PortraitTalk sd15 model.*1 keys that are not in.*"
                  "lora_unet_down.alpha", weights=foreign)
    assert "shape mismatches: image_proj.image_embeds.weight (128, 1024) (expected (128, 16))" in msg
    wrong_family = _weights(sources, "tiny.safetensors", {"image_proj.image_embeds.weight": torch.zeros(1)},
                            {"format": "portraittalk", "config": json.dumps({"family": "tiny"})})
    refused("expected PortraitTalk sd15 weights.*found a PortraitTalk model file \\(family tiny\\)",
            weights=wrong_family)
    unrelated = _weights(sources, "vae.safetensors", {"decoder.conv_in.weight": torch.zeros(1)})
    refused("vae.safetensors: expected PortraitTalk sd15 weights.*found an unknown file", weights=unrelated)


def test_the_command_writes_a_model_the_loaders_read(sources, tmp_path, capsys):
    from comfyui_portraittalk.cli import main
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from comfyui_portraittalk.models.files.weights import _check_safetensors_header

    given = {"audio_proj.proj3.bias": torch.full((32 * 32,), 0.5)}  # 32 tokens × width 32
    weights = _weights(sources, "audio.safetensors", given)
    out = tmp_path / "portraittalk_sd15.safetensors"
    rc = main(["assemble", "sd15", "--checkpoint", str(sources["checkpoint"]), "--motion", str(sources["motion"]),
               "--weights", str(weights), "--config", str(sources["dir"] / "model.json"), "--dtype", "fp32", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "UNTRAINED" in printed.out and f"wrote {out}" in printed.out
    pipe = PortraitTalkPipeline.from_pretrained(out)
    state = pipe.components.state_dict()
    unet = sources["expected"]["unet"]
    assert all(torch.equal(state[f"animate_net.unet.{k}"], v.float()) for k, v in unet.items())
    assert torch.equal(state[OURS_TEMPORAL], sources["motion_state"][TEMPORAL].float())
    assert torch.equal(state["audio_proj.proj3.bias"], given["audio_proj.proj3.bias"])
    assert pipe.components.codec is not None and pipe.components.text_encoder is None
    meta = _check_safetensors_header(out)["__metadata__"]
    assert (meta["checkpoint_name"], meta["motion_name"], meta["weights_name"]) == \
        ("sd15.safetensors", "mm_sd_v15_v2.safetensors", "audio.safetensors")
    coverage = json.loads(meta["coverage"])
    assert coverage["weights"] == {"audio_proj": 1} and coverage["untrained"]["audio_proj"] == 7
    # the default dtype is fp16: half the size, the same tensors rounded
    half = tmp_path / "half.safetensors"
    assert main(["assemble", "sd15", "--checkpoint", str(sources["checkpoint"]), "--motion", str(sources["motion"]),
                 "--config", str(sources["dir"] / "model.json"), str(half)]) == 0
    header = _check_safetensors_header(half)
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}
    assert half.stat().st_size < 0.55 * out.stat().st_size


@pytest.mark.parametrize("case", ["missing", "pickle", "motion_as_checkpoint"])
def test_the_command_fails_clearly_with_exit_code_2(sources, tmp_path, case):
    """Through the installed `portraittalk` entry point: one line naming the file, no stack trace."""
    checkpoint, motion = sources["checkpoint"], sources["motion"]
    if case == "missing":
        checkpoint = tmp_path / "v1-5-pruned-emaonly.safetensors"
    elif case == "pickle":
        checkpoint = tmp_path / "v1-5-pruned-emaonly.ckpt"
        torch.save({"state_dict": {}}, checkpoint)
    else:
        checkpoint = motion
    run = subprocess.run([sys.executable, "-c", "from comfyui_portraittalk.cli import main; raise SystemExit(main())",
                          "assemble", "sd15", "--checkpoint", str(checkpoint), "--motion", str(motion),
                          str(tmp_path / "out.safetensors")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and f"error: {checkpoint}:" in run.stderr
    assert {"missing": "no such file", "pickle": "pickle file",
            "motion_as_checkpoint": "found an AnimateDiff motion module"}[case] in run.stderr
    assert not (tmp_path / "out.safetensors").exists()
