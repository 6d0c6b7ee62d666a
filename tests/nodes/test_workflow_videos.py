"""The bundled API workflows give the same video as recorded: the same decoded picture and sound bytes, frame by
frame. It is what keeps a refactor honest ("nothing may change behaviour"). Each runs as shipped except for its
sampler's step count (STEPS, so that the five fit in CI's time): every node of the graph still runs.

The digest is of the decoded streams, not of the mp4 file, because SaveVideo writes the prompt (with this run's file
prefix) into the container's metadata. Bitwise float results depend on the torch build and on the CPU kernels it
picks (AVX2, AVX512), so digests are recorded per `torch version/CPU capability`; where none are recorded for this
machine the test says so and skips. To record (after a change that is meant to change the videos):

    PT_RECORD_WORKFLOW_DIGESTS=1 python -m pytest tests/nodes/test_workflow_videos.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from comfyui_harness import packinfo
from comfyui_harness.server import ComfyClient
from comfyui_harness.workflow import load_json

pytestmark = pytest.mark.comfyui

DIGESTS = Path(__file__).resolve().parents[1] / "data" / "workflow_video_digests.json"
NEEDS_USER_FILES = {"portraittalk_hallo_photo", "portraittalk_full_size_sd15"}
STEPS = 3
_, API_WORKFLOWS = packinfo.repo_workflows()


def _machine() -> str:
    import torch

    return f"torch {torch.__version__.split('+')[0]}/{torch.backends.cpu.get_cpu_capability()}"


def decoded_digest(path: Path) -> str:
    """sha256 over every decoded video frame (rgb24) and audio frame (its samples as stored), in stream order."""
    import av

    digest = hashlib.sha256()
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            digest.update(frame.to_ndarray(format="rgb24").tobytes())
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            digest.update(frame.to_ndarray().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("path", [p for p in API_WORKFLOWS if p.stem not in NEEDS_USER_FILES], ids=lambda p: p.name)
def test_bundled_workflow_video_is_unchanged(path: Path, comfy_server, comfy_client: ComfyClient):
    graph = load_json(path)
    for node in graph.values():
        if node["class_type"] == "SaveVideo":
            node["inputs"]["filename_prefix"] = f"digest_{path.stem}"
        if node["class_type"] == "PortraitTalkSampler":
            node["inputs"]["steps"] = STEPS
    result = comfy_client.run(graph, timeout=1800, expect=None)
    assert result.outcome == "execution_success", result.describe_error()
    (video,) = [f for f in result.output_files(comfy_server.output_dir) if f.suffix == ".mp4"]
    digest = decoded_digest(video)

    recorded = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
    machine = _machine()
    if os.environ.get("PT_RECORD_WORKFLOW_DIGESTS"):
        recorded.setdefault(machine, {})[path.name] = digest
        DIGESTS.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")
        return
    if path.name not in recorded.get(machine, {}):
        pytest.skip(f"no digest recorded for {path.name} on {machine} (recorded: {sorted(recorded)})")
    assert digest == recorded[machine][path.name], (
        f"{path.name} now makes a different video on {machine}: decoded digest {digest}, "
        f"recorded {recorded[machine][path.name]}")
