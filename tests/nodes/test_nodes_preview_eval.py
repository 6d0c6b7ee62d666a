"""Preview Video and Evaluate in a real ComfyUI: a talking clip made in sync by construction goes in
through the core LoadVideo → GetVideoComponents nodes; the preview mp4 plays with sound and every
frame, the evaluation returns JSON with ADFD's parts and a plot, and faceless or odd inputs end in a
clear error or a graceful result. `publish_partial_video` is checked in process, with a stand-in
for ComfyUI's PromptServer."""

from __future__ import annotations

import json
import sys
import types

import av
import numpy as np
import pytest
import torch

from comfyui_harness.server import PromptRejected

pytestmark = pytest.mark.comfyui

CLIP = "pt_talking_clip.mp4"
CLIP_SECONDS = 3.0
CLIP_FRAMES = 75  # 3 s at 25 fps


@pytest.fixture(scope="module")
def talking_clip(comfy_server, tmp_path_factory):
    """A SynthTalk-style face whose mouth follows speech-like audio, as an mp4 in input/."""
    from comfyui_portraittalk.evaluation.testing import clip_for_audio, speech_like_audio
    from comfyui_portraittalk.media import write_video

    audio = speech_like_audio(CLIP_SECONDS, seed=3)
    frames, _ = clip_for_audio(audio, size=64)
    path = tmp_path_factory.mktemp("clip") / CLIP
    write_video(path, frames, 25.0, audio, 16000)
    comfy_server.add_input(path)
    return CLIP


def clip_graph(clip: str, **evaluate) -> dict:
    """LoadVideo → GetVideoComponents → Preview + Evaluate, with the scores and plot shown by core
    preview nodes so that they reach the history."""
    options = {"backend": "colour", "adfd": True, "lmd": True, "csim": True, **evaluate}
    return {
        "1": {"class_type": "LoadVideo", "inputs": {"file": clip}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "PortraitTalkPreviewVideo", "inputs": {"images": ["2", 0], "fps": ["2", 2], "audio": ["2", 1]}},
        "4": {"class_type": "PortraitTalkEvaluate",
              "inputs": {"images": ["2", 0], "audio": ["2", 1], "fps": ["2", 2], "reference": ["2", 0],
                         "ground_truth": ["2", 0], **options}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["4", 1]}},
    }


def demo_audio_graph(width: int, height: int, frames: int, color: int = 0, **evaluate) -> dict:
    """Plain frames from EmptyImage (no face at all) with the bundled speech."""
    options = {"backend": "colour", "adfd": True, "lmd": True, "csim": True, "fps": 25.0, **evaluate}
    return {
        "1": {"class_type": "PortraitTalkDemoInputs",
              "inputs": {"reference": "SynthTalk face (demo)", "speech": "English sentence (espeak-ng)"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": frames, "color": color}},
        "3": {"class_type": "PortraitTalkPreviewVideo", "inputs": {"images": ["2", 0], "fps": 25.0, "audio": ["1", 1]}},
        "4": {"class_type": "PortraitTalkEvaluate", "inputs": {"images": ["2", 0], "audio": ["1", 1], **options}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["4", 0]}},
    }


def temp_file(server, item: dict):
    assert item["type"] == "temp"
    path = server.temp_dir / item["subfolder"] / item["filename"]
    assert path.is_file(), path
    return path


def mp4_summary(path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio
        return {"frames": sum(1 for _ in container.decode(video=0)), "size": (video.width, video.height),
                "codec": video.codec_context.name, "rate": float(video.average_rate),
                "audio": [(a.codec_context.name, a.channels) for a in audio]}


def scores_of(result) -> dict:
    return json.loads(result.outputs("5")["text"][0])


def test_preview_and_evaluate_a_talking_clip(comfy_server, comfy_client, talking_clip):
    result = comfy_client.run(clip_graph(talking_clip), timeout=300)

    (video,) = result.outputs("3")["portraittalk_video"]
    assert video["frames"] == CLIP_FRAMES and video["fps"] == 25.0 and video["has_audio"]
    summary = mp4_summary(temp_file(comfy_server, video))
    assert summary["frames"] == CLIP_FRAMES and summary["size"] == (64, 64) and summary["codec"] == "h264"
    assert summary["rate"] == 25.0 and summary["audio"] and summary["audio"][0][0] == "aac"
    served = comfy_client.get("/view", params={k: video[k] for k in ("filename", "subfolder", "type")})
    assert served.status_code == 200 and served.headers["Content-Type"] == "video/mp4"

    scores = scores_of(result)
    adfd = scores["metrics"]["adfd"]
    assert {"score", "spatial", "temporal", "jitter", "lag", "version", "model"} <= set(adfd)
    assert adfd["version"] == "adfd-0.1" and adfd["model"]["name"] == "synthtalk colour analyser"
    assert adfd["score"] > 0.6, adfd  # in sync by construction
    assert scores["metrics"]["lmd"]["version"] and scores["metrics"]["lmd"]["value"] == pytest.approx(0.0, abs=1e-6)
    assert scores["metrics"]["csim"]["model"] and "series" not in scores

    (panel,) = result.outputs("4")["portraittalk_eval"]
    assert panel["adfd"]["score"] == pytest.approx(adfd["score"])
    assert set(panel["summary"]) >= {"adfd", "adfd_spatial", "adfd_temporal", "adfd_jitter", "adfd_lag"}
    from PIL import Image

    with Image.open(temp_file(comfy_server, panel["plot"])) as plot:
        assert plot.size == (900, 320)
    (shown,) = result.outputs("6")["images"]  # the IMAGE output, through core PreviewImage
    with Image.open(comfy_server.temp_dir / shown["subfolder"] / shown["filename"]) as plot:
        assert plot.size == (900, 320)


def test_faceless_frames_give_reasons_not_failures(comfy_server, comfy_client):
    result = comfy_client.run(demo_audio_graph(64, 64, 10), timeout=300)
    metrics = scores_of(result)["metrics"]
    assert "no face" in metrics["adfd"]["error"]
    assert "skipped" in metrics["lmd"] and "skipped" in metrics["csim"]
    (panel,) = result.outputs("4")["portraittalk_eval"]
    assert panel["frames_without_face"] == 10 and panel["plot"]["filename"].endswith(".png")

    result = comfy_client.run(demo_audio_graph(64, 64, 10, color=0x808080, backend="fallback"), timeout=300)
    assert "landmarks" in scores_of(result)["metrics"]["adfd"]["error"]


def test_odd_sizes_single_frames_and_short_clips(comfy_server, comfy_client):
    result = comfy_client.run(demo_audio_graph(33, 17, 1, color=0x102030), timeout=300)
    (video,) = result.outputs("3")["portraittalk_video"]
    summary = mp4_summary(temp_file(comfy_server, video))
    assert summary["frames"] == 1 and summary["size"] == (34, 18) and summary["audio"]
    assert "at least 5 frames" in scores_of(result)["metrics"]["adfd"]["error"]


def test_bad_settings_are_refused_before_running(comfy_client, talking_clip):
    def without_preview(graph: dict) -> dict:  # a prompt with one valid output would be accepted
        graph.pop("3")
        return graph

    for bad in ({"adfd": False, "lmd": False, "csim": False}, {"backend": "insightface"}):
        with pytest.raises(PromptRejected) as info:
            comfy_client.queue(without_preview(clip_graph(talking_clip, **bad)))
        assert "4" in info.value.node_errors, info.value.body
    graph = without_preview(demo_audio_graph(64, 64, 3))
    graph["4"]["inputs"]["fps"] = 0.0
    with pytest.raises(PromptRejected) as info:
        comfy_client.queue(graph)
    assert "fps" in json.dumps(info.value.node_errors)
    comfy_client.run(demo_audio_graph(64, 64, 6, color=0x203040), timeout=300)  # the server carries on


# ---- publish_partial_video, in process ------------------------------------------------------------

class FakePromptServer:
    def __init__(self, client_id):
        self.client_id = client_id
        self.sent: list[tuple] = []

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, data, sid))


@pytest.fixture
def preview_module(comfyui_root, tmp_path, monkeypatch):
    if str(comfyui_root) not in sys.path:
        monkeypatch.syspath_prepend(str(comfyui_root))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before anything imports comfy.model_management
    import folder_paths

    from comfyui_portraittalk.nodes import preview

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path))
    fake = FakePromptServer("tab-1")
    monkeypatch.setitem(sys.modules, "server", types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=fake)))
    monkeypatch.setattr(preview, "_PUBLISHER", preview._PartialPublisher())
    return preview, fake, tmp_path


def test_partial_videos_are_throttled_and_sent_to_the_queueing_tab(preview_module):
    preview, fake, temp = preview_module
    frames = (np.random.default_rng(0).random((8, 600, 400, 3)) * 255).astype(np.uint8)
    assert preview.publish_partial_video("12", frames, 25.0)
    assert not preview.publish_partial_video("12", frames, 25.0)  # within the interval
    speech = {"waveform": torch.zeros(1, 2, 8000), "sample_rate": 16000}
    assert preview.publish_partial_video("13", frames[:3], 25.0, audio=speech)  # another node has its own clock
    assert preview._PUBLISHER.flush(60)
    assert preview.publish_partial_video("12", frames[:5], 25.0, force=True)
    assert preview._PUBLISHER.flush(60)
    events = [(e, d["node"], d["frames"], sid) for e, d, sid in fake.sent]
    assert sorted(events) == sorted([("portraittalk.partial_video", "12", 8, "tab-1"),
                                     ("portraittalk.partial_video", "13", 3, "tab-1"),
                                     ("portraittalk.partial_video", "12", 5, "tab-1")])
    last = [d for _, d, _ in fake.sent if d["node"] == "12"][-1]
    summary = mp4_summary(temp / last["subfolder"] / last["filename"])
    assert summary["frames"] == 5 and max(summary["size"]) <= preview.PARTIAL_MAX_SIDE and not summary["audio"]
    first_13 = [d for _, d, _ in fake.sent if d["node"] == "13"][0]
    assert first_13["has_audio"] and mp4_summary(temp / first_13["subfolder"] / first_13["filename"])["audio"]
    kept = list((temp / preview.SUBFOLDER).glob("partial_12_*.mp4"))
    assert len(kept) <= preview.PARTIAL_KEEP


def test_a_newer_partial_video_replaces_one_not_yet_started(preview_module):
    preview, fake, _ = preview_module
    frames = (np.random.default_rng(1).random((6, 64, 64, 3)) * 255).astype(np.uint8)
    with preview._PUBLISHER._cond:  # re-entrant: the encoder thread cannot take a job until this ends
        assert preview.publish_partial_video("12", frames, 25.0, force=True)
        assert preview.publish_partial_video("12", frames[:2], 25.0, force=True)
    assert preview._PUBLISHER.flush(60)
    assert [(d["node"], d["frames"]) for _, d, _ in fake.sent] == [("12", 2)]


def test_partial_videos_never_raise(preview_module):
    preview, fake, _ = preview_module
    assert not preview.publish_partial_video("12", np.zeros((0, 8, 8, 3), np.uint8), 25.0)  # logged, not raised
    assert not preview.publish_partial_video("12", np.zeros((2, 8, 8, 3), np.uint8), 0.0)
    fake.client_id = None  # queued through the API without a tab: nothing to show, nothing written
    assert not preview.publish_partial_video("14", np.zeros((2, 8, 8, 3), np.uint8), 25.0)
    assert preview._PUBLISHER.flush(30) and fake.sent == []
