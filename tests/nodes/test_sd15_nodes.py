"""The full-size `sd15` path in a real ComfyUI, from the files users already have: random-weight files of the
real shapes and key layouts (tests/sd15_fixtures.py: an SD-1.5 checkpoint, AnimateDiff v2, CLIP ViT-H in the
IP-Adapter layout, wav2vec2) in a temporary model folder run the shipped workflow
(workflows/api/portraittalk_full_size_sd15.json): Crop Face on a photo, Load Full-Size Model assembles the
model in memory, core CLIPVisionLoader and CLIPTextEncode give identity and text, and one denoising step on
two 512-px frames is pasted back and ends in a video with sound (slow). A quick test checks the loader's listings and its errors with small files.

Disk and memory: the files take ~4.7 GB, are hard-linked (not copied) into the server's folders and are
removed when the test ends, pass or fail; a machine with less free disk skips. The model needs ~9.5 GB of RAM
in fp32, so the test runs its own server (not the session's, which may still hold another full-size model)
and stops it at the end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from comfyui_harness.reliability import memory_after_free
from comfyui_harness.server import PromptRejected

pytestmark = pytest.mark.comfyui

TESTS = Path(__file__).resolve().parent.parent
FILES_BYTES = 4.75e9  # the four fixture files (sizes asserted below)
DISK_MARGIN = 2e9  # the output video, ComfyUI's own files, and room for the rest of the suite
FOLDERS = {"checkpoint": "checkpoints", "motion": "animatediff_models", "clip_vision": "clip_vision",
           "wav2vec2": "audio_encoders"}


WORKFLOW = TESTS.parent / "workflows" / "api" / "portraittalk_full_size_sd15.json"
PHOTO, SPEECH = TESTS.parent / "assets" / "examples" / "astronaut.jpg", TESTS.parent / "assets" / "demo_speech.wav"


def sd15_graph(names: dict, *, prefix: str = "portraittalk/sd15_full") -> dict:
    """The shipped full-size workflow (photo → crop → Load Full-Size Model with core CLIP vision and text →
    paste-back → video with sound) on these files, cut to one step on two frames: a test of the wiring."""
    graph = json.loads(WORKFLOW.read_text())
    by_type = {node["class_type"]: node["inputs"] for node in graph.values()}
    by_type["PortraitTalkLoadFullSizeModel"].update(checkpoint_name=names["checkpoint"], motion_name=names["motion"])
    by_type["CLIPVisionLoader"]["clip_name"] = names["clip_vision"]
    by_type["PortraitTalkLoadAudioEncoder"]["encoder_name"] = names["wav2vec2"]
    by_type["PortraitTalkSampler"].update(steps=1, frames=2, window=2, overlap=0)
    by_type["SaveVideo"]["filename_prefix"] = prefix
    return graph


def _peak_rss_gb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1e6
    return float("nan")


FREED_GB = 5.0  # of the ~9.4 GB fp32 model


def _loader_only(checkpoint: str, motion: str, weights: str = "none") -> dict:
    return {"1": {"class_type": "PortraitTalkLoadFullSizeModel",
                  "inputs": {"checkpoint_name": checkpoint, "motion_name": motion, "weights_name": weights}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}


def test_the_loader_lists_safetensors_only_and_names_a_wrong_file(comfy_server, comfy_client, tmp_path):
    """Small files, the session's server: names come from the folders (no '../', no pickles), and a file of the
    wrong kind fails in a moment with a message that names it, before anything is allocated."""
    from safetensors.torch import save_file

    from fake_checkpoints import animatediff_v2_motion_module, small_sd15_config

    save_file(animatediff_v2_motion_module(config=small_sd15_config()), str(tmp_path / "mm.safetensors"))
    (tmp_path / "sd15.ckpt").write_bytes(b"not loaded")
    placed = [comfy_server.add_model("animatediff_models", tmp_path / "mm.safetensors", name="mm_small.safetensors"),
              comfy_server.add_model("checkpoints", tmp_path / "mm.safetensors", name="motion_by_mistake.safetensors"),
              comfy_server.add_model("checkpoints", tmp_path / "sd15.ckpt")]
    try:
        info = comfy_client.object_info("PortraitTalkLoadFullSizeModel")["PortraitTalkLoadFullSizeModel"]
        required = info["input"]["required"]
        assert "mm_small.safetensors" in str(required["motion_name"])
        assert "motion_by_mistake.safetensors" in str(required["checkpoint_name"])
        assert "sd15.ckpt" not in str(required["checkpoint_name"])  # pickles are never offered
        for bad, expected in (("../animatediff_models/mm_small.safetensors",
                               "is not an SD-1.5 .safetensors checkpoint"), ("sd15.ckpt", "is a pickle file")):
            with pytest.raises(PromptRejected) as rejected:
                comfy_client.queue(_loader_only(bad, "mm_small.safetensors"))
            assert expected in json.dumps(rejected.value.node_errors), rejected.value.body
        # the shipped workflow with none of its files: each input's problem names that input's own value
        with pytest.raises(PromptRejected) as rejected:
            comfy_client.queue(_loader_only("v1-5-pruned-emaonly.safetensors", "mm_sd_v15_v2.safetensors",
                                            "portraittalk_sd15.safetensors"))
        text = json.dumps(rejected.value.node_errors)
        for part in ("checkpoint_name: 'v1-5-pruned-emaonly.safetensors' is not an SD-1.5 .safetensors checkpoint",
                     "motion_name: 'mm_sd_v15_v2.safetensors' is not an AnimateDiff .safetensors motion module",
                     "weights_name: 'portraittalk_sd15.safetensors' is not a .safetensors PortraitTalk weights file"):
            assert part in text, text
        with pytest.raises(PromptRejected) as rejected:  # only the motion module is wrong: only it is named
            comfy_client.queue(_loader_only("motion_by_mistake.safetensors", "nope.safetensors"))
        text = json.dumps(rejected.value.node_errors)
        assert "motion_name: 'nope.safetensors' is not an AnimateDiff" in text and "checkpoint_name:" not in text
        result = comfy_client.run(_loader_only("motion_by_mistake.safetensors", "mm_small.safetensors"), timeout=120,
                                  expect=None)
        assert result.outcome == "execution_error"
        (error,) = result.of("execution_error")
        assert error["node_type"] == "PortraitTalkLoadFullSizeModel"
        assert "motion_by_mistake.safetensors: expected an SD-1.5 single-file checkpoint" in error["exception_message"]
        assert "found an AnimateDiff motion module" in error["exception_message"]
    finally:
        for path in placed:
            path.unlink(missing_ok=True)


@pytest.mark.slow
@pytest.mark.first  # before the shared server holds the full-size Hallo test model (tests/conftest.py)
def test_full_size_sd15_from_users_files_runs_one_step(comfyui_root, comfy_server_factory, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sd15_full")
    free = shutil.disk_usage(tmp).free
    if free < FILES_BYTES + DISK_MARGIN:
        pytest.skip(f"needs {(FILES_BYTES + DISK_MARGIN) / 1e9:.1f} GB of free disk for the full-size SD-1.5, "
                    f"AnimateDiff, CLIP ViT-H and wav2vec2 files; {free / 1e9:.1f} GB free")
    server = None
    written: list[Path] = []
    try:
        # written by another process, so the gigabytes the writer held are given back before the server starts
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(TESTS)!r}); from sd15_fixtures "
                        f"import write_sd15_files; write_sd15_files({str(tmp)!r}, {str(comfyui_root)!r})"], check=True)
        from sd15_fixtures import NAMES

        files = {role: tmp / name for role, name in NAMES.items()}
        written += files.values()
        sizes = {role: path.stat().st_size for role, path in files.items()}
        assert 2.0e9 < sizes["checkpoint"] < 2.2e9 and 0.85e9 < sizes["motion"] < 0.95e9  # fp16, as released
        assert 1.2e9 < sizes["clip_vision"] < 1.3e9 and sum(sizes.values()) < FILES_BYTES

        def place(s):  # hard links into the server's folders: no second copy on disk
            for role, path in files.items():
                written.append(s.add_model(FOLDERS[role], path))

        server = comfy_server_factory(before_start=place)
        _runs_one_step(server, files)
    finally:
        if server is not None:
            server.stop()
        for path in written:
            path.unlink(missing_ok=True)
        if server is not None:  # what the server wrote: the video, and anything next to the model files
            for folder in (server.models_dir, server.output_dir):
                shutil.rmtree(folder, ignore_errors=True)


def _runs_one_step(server, files):
    client = server.client()
    client.connect()
    try:
        info = client.object_info("PortraitTalkLoadFullSizeModel")["PortraitTalkLoadFullSizeModel"]
        required = info["input"]["required"]
        assert files["checkpoint"].name in str(required["checkpoint_name"])
        assert files["motion"].name in str(required["motion_name"])  # animatediff_models is registered
        server.add_input(PHOTO, "astronaut.jpg")  # what the workflow's LoadImage and LoadAudio name
        server.add_input(SPEECH, "speech.wav")
        start = time.monotonic()
        result = client.run(sd15_graph({role: path.name for role, path in files.items()}), timeout=3000, expect=None)
        assert result.outcome == "execution_success", result.describe_error()
        print(f"[sd15] one step on 2 frames at 512 px: {time.monotonic() - start:.0f} s, server peak RSS "
              f"{_peak_rss_gb(server.proc.pid):.1f} GB")
        (video,) = [p for p in result.output_files(server.output_dir) if p.suffix == ".mp4" and "sd15_full" in p.name]
        with av.open(str(video)) as container:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
            audio = [s for s in container.streams if s.type == "audio"]
        assert frames.shape == (2, 512, 512, 3) and len(audio) == 1
        assert frames.std() > 0  # decoded pictures, not an empty canvas
        # ComfyUI's "Unload models" (/free) must give the ~9 GB model back: the pack's caches hold it only
        # while ComfyUI's own output cache does
        # ComfyUI's model manager lists the networks with their sizes (fp32 UNets: 3.4 GB, IdentityNet a bit less)
        loaded = {m["name"]: m["size"] for m in client.get_json("/pt_test/loaded_models")
                  if m["class"] == "PortraitTalkNetwork"}
        assert loaded.get("animate_net", 0) > 3e9 and loaded.get("identity_net", 0) > 2e9, loaded
        before, after = memory_after_free(server, client, FREED_GB * 1e9)
        print(f"[sd15] after /free: {before / 1e9:.1f} → {after / 1e9:.1f} GB resident")
        assert before - after > FREED_GB * 1e9, \
            f"/free gave back only {(before - after) / 1e9:.1f} GB of {before / 1e9:.1f} GB"
        assert not [m for m in client.get_json("/pt_test/loaded_models") if m["class"] == "PortraitTalkNetwork"]
    finally:
        client.close()
