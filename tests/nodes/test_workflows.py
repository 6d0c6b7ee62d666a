"""Every shipped workflow (workflows/*.json UI format, workflows/api/*.json or *_api.json API
format) uses only node types the server has, with widget values it accepts.

A combo value that names a file (a model, an input image/audio) is only valid where the file
exists: such values are reported as warnings here, not failures. A test that runs a workflow
must first put those files in place (ComfyServer.add_model / add_input).
"""

from __future__ import annotations

import importlib.util
import uuid
import warnings
from pathlib import Path

import pytest

from comfyui_harness import packinfo
from comfyui_harness.server import PACK_FOLDER_NAME, ComfyClient
from comfyui_harness.workflow import (
    check_api_workflow,
    check_ui_workflow,
    load_json,
    ui_to_api,
    workflow_format,
    _subgraphs,
)

pytestmark = pytest.mark.comfyui

UI_WORKFLOWS, API_WORKFLOWS = packinfo.repo_workflows()
# Node types whose JS in web/ appends widgets saved in widgets_values: {type: count}.
PACK_TRAILING_EXTRAS: dict[str, int] = {}


def _split(problems):
    hard = [p for p in problems if p.kind != "missing_file"]
    soft = [p for p in problems if p.kind == "missing_file"]
    return hard, soft


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.name)
def test_ui_workflow_is_valid(path: Path, object_info: dict):
    wf = load_json(path)
    assert workflow_format(wf) == "ui", f"{path.name}: not a UI-format workflow (needs 'nodes' and 'links')"
    hard, soft = _split(check_ui_workflow(wf, object_info, PACK_TRAILING_EXTRAS))
    for p in soft:
        warnings.warn(f"{path.name}: {p}")
    assert not hard, f"{path.name}:\n" + "\n".join(map(str, hard))


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.name)
def test_ui_workflow_converts_to_a_valid_api_graph(path: Path, object_info: dict):
    wf = load_json(path)
    if _subgraphs(wf):
        pytest.skip("ui_to_api does not handle subgraphs")
    graph = ui_to_api(wf, object_info)
    hard, _ = _split(check_api_workflow(graph, object_info))
    assert not hard, f"{path.name} (as API graph):\n" + "\n".join(map(str, hard))


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.name)
def test_ui_workflow_is_listed_as_template(path: Path, comfy_client: ComfyClient):
    templates = comfy_client.workflow_templates().get(PACK_FOLDER_NAME, [])
    assert path.stem in templates, f"{path.stem} not in /workflow_templates[{PACK_FOLDER_NAME}]: {templates}"
    r = comfy_client.get(f"/api/workflow_templates/{PACK_FOLDER_NAME}/{path.name}")
    assert r.status_code == 200 and r.json() == load_json(path)


@pytest.mark.parametrize("path", API_WORKFLOWS, ids=lambda p: p.name)
def test_api_workflow_is_valid(path: Path, object_info: dict):
    graph = load_json(path)
    assert workflow_format(graph) == "api", f"{path.name}: not an API-format graph"
    hard, soft = _split(check_api_workflow(graph, object_info))
    for p in soft:
        warnings.warn(f"{path.name}: {p}")
    assert not hard, f"{path.name}:\n" + "\n".join(map(str, hard))


def test_api_workflows_are_not_listed_as_templates(comfy_client: ComfyClient):
    """API-format files at the top of workflows/ would show up in the Templates browser."""
    listed = set(comfy_client.workflow_templates().get(PACK_FOLDER_NAME, []))
    wrong = sorted(p.stem for p in API_WORKFLOWS if p.parent.name == "workflows" and p.stem in listed)
    assert not wrong, f"move these API-format files to workflows/api/: {wrong}"


# ---- the helper itself, against the real server -------------------------------------------

def _template_files() -> list[Path]:
    files = []
    for mod in ("comfyui_workflow_templates_core", "comfyui_workflow_templates_media_image",
                "comfyui_workflow_templates_media_video", "comfyui_workflow_templates_media_other",
                "comfyui_workflow_templates_media_api"):
        spec = importlib.util.find_spec(mod)
        if spec and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                files += sorted(Path(loc).glob("templates/*.json"))
    return files


def test_widget_mapping_matches_comfyui_templates(comfyui_root: Path, object_info: dict):
    """check_ui_workflow() finds no widget problem in ComfyUI's own templates (the
    comfyui-workflow-templates version 0.3.75 pins), API nodes aside: they drift between
    template and node versions."""
    files = _template_files()
    if not files:
        pytest.skip("comfyui-workflow-templates is not installed")
    api_nodes = {k for k, v in object_info.items() if str(v.get("python_module", "")).startswith("comfy_api_nodes")}
    checked, bad = 0, []
    for f in files:
        try:
            wf = load_json(f)
        except ValueError:
            continue
        if workflow_format(wf) != "ui":
            continue
        checked += 1
        for p in check_ui_workflow(wf, object_info):
            if p.kind in ("missing_file", "unknown_node") or p.node_type in api_nodes:
                continue
            bad.append(f"{f.name}: {p}")
    assert checked > 50, f"only {checked} template workflows found"
    assert not bad, "\n".join(bad[:30])


def test_ui_workflow_round_trip_runs(comfy_server, comfy_client: ComfyClient, object_info: dict):
    """A UI workflow with a PrimitiveNode, a Reroute and a muted node converts and runs."""
    prefix = f"ui_{uuid.uuid4().hex[:8]}"
    wf = {
        "last_node_id": 5, "last_link_id": 4, "version": 0.4,
        "nodes": [
            {"id": 1, "type": "EmptyImage", "mode": 0,
             "inputs": [{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 3}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
             "widgets_values": [512, 40, 1, int(uuid.uuid4().int % 0xFFFFFF)]},
            {"id": 2, "type": "Reroute", "mode": 0,
             "inputs": [{"name": "", "type": "*", "link": 1}],
             "outputs": [{"name": "", "type": "IMAGE", "links": [2]}]},
            {"id": 3, "type": "SaveImage", "mode": 0,
             "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
             "widgets_values": [prefix]},
            {"id": 4, "type": "PrimitiveNode", "mode": 0,
             "outputs": [{"name": "INT", "type": "INT", "widget": {"name": "width"}, "links": [3]}],
             "widgets_values": [72, "fixed"]},
            {"id": 5, "type": "PTTestFail", "mode": 2, "widgets_values": ["muted, never runs"]},
            {"id": 6, "type": "Note", "mode": 0, "widgets_values": ["a note"]},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 4, 0, 1, 0, "INT"]],
    }
    assert check_ui_workflow(wf, object_info) == []
    graph = ui_to_api(wf, object_info)
    assert set(graph) == {"1", "3"}
    assert graph["1"]["inputs"]["width"] == 72 and graph["3"]["inputs"]["images"] == ["1", 0]
    result = comfy_client.run(graph, timeout=120)
    (f,) = result.output_files(comfy_server.output_dir)
    assert f.name.startswith(prefix) and f.is_file()


# ---- the shipped API workflows run, with the bundled demo model ------------------------------

# Workflows that need files users supply (Hallo's weights, SD-1.5 and AnimateDiff, a photo and speech in input/)
# are run with random weights of the real layouts in test_hallo_nodes.py and test_sd15_nodes.py instead.
NEEDS_USER_FILES = {"portraittalk_hallo_photo", "portraittalk_full_size_sd15"}
RUN_STEPS = 2  # the graph as shipped, with fewer denoising steps: the test is of the wiring, not the quality


def _video_summary(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        stream = container.streams.video[0]
        audio = [s for s in container.streams if s.type == "audio"]
        return {"frames": frames, "width": stream.width, "height": stream.height, "audio_streams": len(audio),
                "audio_seconds": float(audio[0].duration * audio[0].time_base) if audio and audio[0].duration else None}


def _expected_frames(graph: dict) -> int:
    """F = ceil(duration × 25) of the audio the graph speaks: the demo speech, or the demo speech 4× (AudioConcat)."""
    import math

    from comfyui_portraittalk.training.layout import read_wav

    wav, rate = read_wav(packinfo.REPO_ROOT / "assets" / "demo_speech.wav")
    repeats = 4 if any(node["class_type"] == "AudioConcat" for node in graph.values()) else 1
    return math.ceil(repeats * len(wav) * 25 / rate - 1e-6)


@pytest.mark.parametrize("path", [p for p in API_WORKFLOWS if p.stem not in NEEDS_USER_FILES], ids=lambda p: p.name)
def test_api_workflow_runs_to_a_video_with_sound(path: Path, comfy_server, comfy_client: ComfyClient):
    graph = load_json(path)
    samplers = [node for node in graph.values() if node["class_type"] == "PortraitTalkSampler"]
    assert len(samplers) == 1
    samplers[0]["inputs"]["steps"] = RUN_STEPS
    for node in graph.values():  # a prefix of our own, so the file is this run's
        if node["class_type"] == "SaveVideo":
            node["inputs"]["filename_prefix"] = f"test_{path.stem}_{uuid.uuid4().hex[:6]}"
    result = comfy_client.run(graph, timeout=900, expect=None)
    assert result.outcome == "execution_success", result.describe_error()
    (video,) = [f for f in result.output_files(comfy_server.output_dir) if f.suffix == ".mp4"]
    summary = _video_summary(video)
    frames = _expected_frames(graph)
    assert summary["frames"] == frames and summary["audio_streams"] == 1, summary
    assert summary["width"] % 2 == 0 and summary["height"] % 2 == 0
    assert abs(summary["audio_seconds"] - frames / 25) <= 1 / 25 + 0.03, summary
    sampler_id = next(i for i, node in graph.items() if node["class_type"] == "PortraitTalkSampler")
    assert [p for p in result.of("progress") if p["node"] == sampler_id], "no progress from the sampler"
