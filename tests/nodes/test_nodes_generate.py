"""The pack's nodes in a real ComfyUI: a whole generation through POST /prompt, with progress,
interrupt, caching and bad-input behaviour."""

from __future__ import annotations

import math
import time

import av
import pytest

from comfyui_harness.graphs import generation_graph
from comfyui_harness.server import outcome

MODEL = "tiny_random.safetensors"


@pytest.fixture(scope="module")
def tiny_model(comfy_server, tmp_path_factory):
    """A random-weight tiny PortraitTalk model in the server's models/portraittalk."""
    from comfyui_portraittalk.models import PortraitTalkPipeline

    path = tmp_path_factory.mktemp("models") / MODEL
    PortraitTalkPipeline.from_config("tiny", seed=0).save_pretrained(path)
    comfy_server.add_model("portraittalk", path)
    return MODEL


def video_summary(path):
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        audio = [s for s in container.streams if s.type == "audio"]
        return {"frames": frames, "width": video.width, "height": video.height, "rate": float(video.average_rate),
                "audio": len(audio)}


def speech_frames() -> int:
    from pathlib import Path

    import comfyui_portraittalk
    from comfyui_portraittalk.training.layout import read_wav

    wav, rate = read_wav(Path(comfyui_portraittalk.__file__).parent / "assets" / "demo_speech.wav")
    return math.ceil(len(wav) * 25 / rate - 1e-6)


def test_models_and_loaders_are_listed(comfy_client, tiny_model):
    info = comfy_client.object_info("PortraitTalkLoadAnimateNet")["PortraitTalkLoadAnimateNet"]
    options = info["input"]["required"]["model_name"]
    names = options[1]["options"] if isinstance(options[1], dict) and "options" in options[1] else options[0]
    assert tiny_model in names


def test_generation_runs_to_a_video_with_sound(comfy_server, comfy_client, tiny_model):
    result = comfy_client.run(generation_graph(tiny_model, text="a face with glasses", steps=2,
                                               prefix="portraittalk/basic"), timeout=600)
    assert result.outcome == "execution_success", result.describe_error()
    videos = [p for p in result.output_files(comfy_server.output_dir) if p.suffix == ".mp4"]
    assert len(videos) == 1
    summary = video_summary(videos[0])
    assert summary == {"frames": speech_frames(), "width": 64, "height": 64, "rate": 25.0, "audio": 1}
    sampler_progress = [p for p in result.of("progress") if p["node"] == "12"]
    assert len(sampler_progress) >= 2 and sampler_progress[-1]["value"] == sampler_progress[-1]["max"]


def test_interrupt_stops_sampling_and_the_next_prompt_succeeds(comfy_server, comfy_client, tiny_model):
    graph = generation_graph(tiny_model, steps=200, seed=7, prefix="portraittalk/interrupted")
    prompt_id = comfy_client.queue(graph)
    deadline = time.monotonic() + 300
    while not any(m["type"] == "progress" and m["data"].get("prompt_id") == prompt_id and m["data"].get("node") == "12"
                  for m in comfy_client.all_messages()):  # interrupt once the sampler is under way
        assert time.monotonic() < deadline, "the sampler reported no progress"
        time.sleep(0.05)
    comfy_client.interrupt(prompt_id)
    messages = comfy_client.wait(prompt_id, timeout=300)
    assert outcome(messages) == "execution_interrupted"
    interrupted = [m["data"] for m in messages if m["type"] == "execution_interrupted"]
    assert interrupted[0]["node_type"] == "PortraitTalkSampler"
    result = comfy_client.run(generation_graph(tiny_model, steps=2, seed=8, prefix="portraittalk/after"), timeout=600)
    assert result.outcome == "execution_success", result.describe_error()


def test_bad_inputs_give_node_errors_not_crashes(comfy_client, tiny_model):
    graph = generation_graph(tiny_model, steps=2)
    graph["12"]["inputs"]["overlap"] = 16  # not smaller than the window
    with pytest.raises(Exception) as info:
        comfy_client.queue(graph)
    assert "overlap" in str(getattr(info.value, "body", info.value))
    graph = generation_graph("../../../etc/passwd", steps=2)
    with pytest.raises(Exception):
        comfy_client.queue(graph)
    ok = comfy_client.run(generation_graph(tiny_model, steps=1, seed=3, prefix="portraittalk/ok"), timeout=600)
    assert ok.outcome == "execution_success", ok.describe_error()


def test_core_clip_vision_output_gives_the_identity_tokens(comfy_client, tiny_model):
    """Encode Identity takes core CLIP_VISION_OUTPUT (from 'CLIP Vision Encode') instead of an image encoder:
    one embedding per reference, of the model's width; anything else is a node error that says so."""
    from comfyui_portraittalk.models.files.components import image_embed_dim
    from comfyui_portraittalk.models.config import load_config

    width = image_embed_dim(load_config("tiny"))

    def graph(rows: int, embed_width: int, prefix: str) -> dict:
        g = generation_graph(tiny_model, steps=1, prefix=prefix)
        g["20"] = {"class_type": "PTTestClipVisionOutput", "inputs": {"rows": rows, "width": embed_width, "seed": 1}}
        del g["9"]["inputs"]["image_encoder"]
        g["9"]["inputs"]["clip_vision_output"] = ["20", 0]
        return g

    ok = comfy_client.run(graph(1, width, "portraittalk/clip_vision_output"), timeout=600)
    assert ok.outcome == "execution_success", ok.describe_error()
    rows = comfy_client.run(graph(2, width, "portraittalk/cvo_rows"), timeout=600, expect=None)
    assert rows.outcome == "execution_error"
    assert "clip_vision_output holds 2 image embeddings for 1 reference" in rows.describe_error()
    wide = comfy_client.run(graph(1, width + 1, "portraittalk/cvo_width"), timeout=600, expect=None)
    assert wide.outcome == "execution_error"
    assert f"identity projection takes [references, {width}]" in wide.describe_error()
