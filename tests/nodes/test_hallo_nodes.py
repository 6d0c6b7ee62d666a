"""Hallo's weights in a real ComfyUI: a checkpoint of Hallo's layout through the pack's nodes to a video with
sound. A small model of the layout runs the whole graph (twice, to show the result is deterministic); the
slow test writes a random-weights `net.pth` with exactly the manifest's keys, shapes and dtype (fp16), puts it
in models/portraittalk, lets the loader convert it on first use, and runs one denoising step at 64 px."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from hallo_fixtures import hallo_names, tiny_hallo_config

from comfyui_harness.reliability import memory_after_free

pytestmark = pytest.mark.comfyui
MEL = "mel (built in, no weights)"


def hallo_graph(model: str, *, audio_encoder: str = MEL, vae: str | None = None, steps: int = 1, window: int = 4,
                frames: int = 0, prefix: str = "portraittalk/hallo") -> dict:
    """Reference + speech → video with sound through the Hallo path: Encode Identity (ArcFace + region masks),
    Encode Audio, the patch with λ_text = 0, Hallo Settings (motion frames), sampler, decode."""
    g = {
        "1": {"class_type": "PortraitTalkDemoInputs",
              "inputs": {"reference": "SynthTalk face (demo)", "speech": "English sentence (espeak-ng)"}},
        "2": {"class_type": "PortraitTalkLoadIdentityNet", "inputs": {"model_name": model}},
        "3": {"class_type": "PortraitTalkLoadAnimateNet", "inputs": {"model_name": model}},
        "5": {"class_type": "PortraitTalkLoadAudioEncoder", "inputs": {"encoder_name": audio_encoder}},
        "6": {"class_type": "PortraitTalkEncodeIdentity", "inputs": {"identity_net": ["2", 0], "image": ["1", 0]}},
        "7": {"class_type": "PortraitTalkEncodeAudio",
              "inputs": {"animate_net": ["3", 0], "audio": ["1", 1], "audio_encoder": ["5", 0], "fps": 0.0}},
        "8": {"class_type": "PortraitTalkApplyDecoupledAttention",
              "inputs": {"animate_net": ["3", 0], "identity": ["6", 0], "audio_embeds": ["7", 0], "text_scale": 0.0,
                         "identity_scale": 1.0, "audio_scale": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "9": {"class_type": "PortraitTalkHalloSettings",
              "inputs": {"animate_net": ["8", 0], "pose_weight": 1.0, "face_weight": 1.0, "lip_weight": 1.0,
                         "long_audio": "motion_frames"}},
        "10": {"class_type": "PortraitTalkSampler",
               "inputs": {"animate_net": ["9", 0], "steps": steps, "scheduler": "ddim", "karras": False, "seed": 42,
                          "text_guidance": 1.0, "audio_guidance": 3.5, "window": window, "overlap": 0,
                          "frames": frames}},
        "11": {"class_type": "PortraitTalkDecode",
               "inputs": {"latent": ["10", 0], "audio": ["1", 1], "chunk": 8}},
        "12": {"class_type": "CreateVideo", "inputs": {"images": ["11", 0], "fps": ["11", 1], "audio": ["11", 2]}},
        "13": {"class_type": "SaveVideo",
               "inputs": {"video": ["12", 0], "filename_prefix": prefix, "format": "auto", "codec": "auto"}},
    }
    if vae is not None:
        g["4"] = {"class_type": "VAELoader", "inputs": {"vae_name": vae}}
        g["6"]["inputs"]["vae"] = ["4", 0]
        g["9"]["inputs"]["vae"] = ["4", 0]
        g["11"]["inputs"]["vae"] = ["4", 0]
    else:
        g["11"]["inputs"]["animate_net"] = ["3", 0]
    return g


def read_video(path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        audio = sum(1 for s in container.streams if s.type == "audio")
    return frames, audio


def _videos(result, server, prefix):
    return [p for p in result.output_files(server.output_dir) if p.suffix == ".mp4" and prefix in p.name]


@pytest.fixture(scope="module")
def small_hallo_model(comfy_server, tmp_path_factory):
    """A small model of Hallo's layout, converted from Hallo-named weights, in models/portraittalk."""
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from comfyui_portraittalk.models.files.hallo import convert_hallo
    from conftest import wake_zero_branches

    tmp = tmp_path_factory.mktemp("hallo_small")
    config = tiny_hallo_config(text={"stream_weights": None})
    pipe = PortraitTalkPipeline.from_config(config, seed=0)
    wake_zero_branches(pipe.components)
    state = {k: v for k, v in pipe.components.state_dict().items()
             if k.startswith(("identity_net.", "animate_net.", "image_proj.", "audio_proj."))}
    torch.save(hallo_names(state), tmp / "net.pth")
    convert_hallo(tmp / "net.pth", tmp / "hallo_small.portraittalk.safetensors", config=config)
    comfy_server.add_model("portraittalk", tmp / "hallo_small.portraittalk.safetensors")
    return "hallo_small.portraittalk.safetensors"


def test_a_hallo_layout_model_makes_a_video_with_sound_deterministically(comfy_server, comfy_client,
                                                                         small_hallo_model):
    runs = []
    for k in range(2):
        prefix = f"hallo_small_{k}"
        result = comfy_client.run(hallo_graph(small_hallo_model, frames=8, prefix=f"portraittalk/{prefix}"),
                                  timeout=600)
        assert result.outcome == "execution_success", result.describe_error()
        (video,) = _videos(result, comfy_server, prefix)
        runs.append(read_video(video))
    (frames, audio), (again, _) = runs
    assert frames.shape == (8, 64, 64, 3) and audio == 1  # two motion-frame windows of 4
    assert np.array_equal(frames, again)


# ----------------------------------------------------------------------------------- the full-size file


def _random_vae(path, comfy_root) -> None:
    """A random SD VAE in the single-file (LDM) layout ComfyUI's VAELoader reads."""
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from comfyui_portraittalk.models.config import load_config
    from fake_checkpoints import _comfy

    comfy = _comfy(comfy_root)
    torch.manual_seed(0)
    vae = AutoencoderKL.from_config(load_config("sd15")["codec"]["vae"])
    save_file(comfy.diffusers_convert.convert_vae_state_dict(vae.state_dict()), str(path))


def _random_wav2vec2(path) -> None:
    import json

    from safetensors.torch import save_file
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from comfyui_portraittalk.models.config import CONFIG_DIR

    torch.manual_seed(0)
    model = Wav2Vec2Model(Wav2Vec2Config(**json.loads((CONFIG_DIR / "sd15" / "wav2vec2.json").read_text())))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


@pytest.mark.slow
def test_hallo_net_pth_converts_in_the_loader_and_runs_one_step(comfy_server, comfy_client, comfyui_root,
                                                                tmp_path_factory):
    # net.pth and its conversion are ~5 GB each: a machine with less free disk skips, and the files are removed
    # as soon as the test ends (the session keeps its server's folders until it finishes).
    free = shutil.disk_usage(comfy_server.models_dir).free
    if free < FULL_SIZE_DISK:
        pytest.skip(f"needs {FULL_SIZE_DISK / 1e9:.0f} GB of free disk for a full-size net.pth and its "
                    f"conversion; {free / 1e9:.1f} GB free")
    tmp = tmp_path_factory.mktemp("hallo_full")
    converted = comfy_server.models_dir / "portraittalk" / "hallo_net.portraittalk.safetensors"
    linked = comfy_server.models_dir / "portraittalk" / "hallo" / "net.pth"
    try:
        _net_pth_runs_one_step(comfy_server, comfy_client, comfyui_root, tmp, converted)
    finally:
        for path in (converted, linked, tmp / "net.pth"):
            path.unlink(missing_ok=True)


FULL_SIZE_DISK = 12e9


def _net_pth_runs_one_step(comfy_server, comfy_client, comfyui_root, tmp, converted):
    # written by another process, so the 5 GB the writer held are given back before the server loads the model
    tests = str(Path(__file__).resolve().parent.parent)
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {tests!r}); from hallo_fixtures import "
                    f"random_net_pth; random_net_pth({str(tmp / 'net.pth')!r})"], check=True)
    size = (tmp / "net.pth").stat().st_size
    assert 4.5e9 < size < 5.2e9  # fp16, as the release is likely to be
    comfy_server.add_model("portraittalk", tmp / "net.pth", name="hallo/net.pth")
    _random_vae(tmp / "vae.safetensors", comfyui_root)
    comfy_server.add_model("vae", tmp / "vae.safetensors", name="sd_vae_random.safetensors")
    _random_wav2vec2(tmp / "w2v.safetensors")
    comfy_server.add_model("audio_encoders", tmp / "w2v.safetensors", name="wav2vec2_random.safetensors")
    info = comfy_client.object_info("PortraitTalkLoadAnimateNet")["PortraitTalkLoadAnimateNet"]
    assert "hallo/net.pth" in str(info["input"]["required"]["model_name"])
    graph = hallo_graph("hallo/net.pth", audio_encoder="wav2vec2_random.safetensors", vae="sd_vae_random.safetensors",
                        steps=1, window=2, frames=2, prefix="portraittalk/hallo_full")
    result = comfy_client.run(graph, timeout=1800)
    assert result.outcome == "execution_success", result.describe_error()
    assert converted.is_file() and (tmp / "net.pth").is_file()  # converted next to it, the original kept
    from comfyui_portraittalk.models.files.weights import _check_safetensors_header

    meta = _check_safetensors_header(converted)["__metadata__"]
    assert meta["coverage"] == "2656/2656" and meta["source_name"] == "net.pth"
    (video,) = _videos(result, comfy_server, "hallo_full")
    frames, audio = read_video(video)
    assert frames.shape == (2, 64, 64, 3) and audio == 1
    # "Unload models" (/free) gives the full-size model back: the loaders' cache holds it only while
    # ComfyUI's output cache does (and the session's server goes on with gigabytes to spare)
    before, after = memory_after_free(comfy_server, comfy_client, FREED_GB * 1e9)
    assert before - after > FREED_GB * 1e9, \
        f"/free gave back only {(before - after) / 1e9:.1f} GB of {before / 1e9:.1f} GB"


FREED_GB = 3.0  # of a ~2.4G-parameter model
