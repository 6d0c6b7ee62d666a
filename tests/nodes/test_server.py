"""The pack loads in a real ComfyUI 0.3.75 server, and the harness's client works end to end."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import pytest

from comfyui_harness import packinfo
from comfyui_harness.server import PACK_FOLDER_NAME, ComfyClient, ComfyServer, PromptRejected, messages_of

pytestmark = pytest.mark.comfyui

PACK_MODULE = f"custom_nodes.{PACK_FOLDER_NAME}"
STATIC_NODE_IDS = packinfo.static_node_ids()
IMPORT_TIME_LIMIT_S = 0.5


def _our_import_line(server: ComfyServer) -> tuple[float, bool]:
    times = server.import_times()
    ours = {p: v for p, v in times.items() if Path(p).name == PACK_FOLDER_NAME}
    assert ours, f"{PACK_FOLDER_NAME} is not in the 'Import times for custom nodes' table: {times}\n{server.log_tail()}"
    assert len(ours) == 1, ours
    return next(iter(ours.values()))


# ---- startup -------------------------------------------------------------------------

def test_server_starts_and_reports_version(comfy_client: ComfyClient):
    stats = comfy_client.system_stats()
    assert stats["system"]["comfyui_version"] == "0.3.75"
    assert stats["devices"][0]["type"] == "cpu"


def test_pack_imports_without_failure(comfy_server: ComfyServer):
    seconds, failed = _our_import_line(comfy_server)
    log = comfy_server.log_text()
    pack_path = str(comfy_server.pack_dir)
    assert not failed, f"(IMPORT FAILED) for the pack:\n{comfy_server.log_tail()}"
    for bad in (f"Error while calling comfy_entrypoint in {pack_path}", f"Cannot import {pack_path}",
                f"comfy_entrypoint in {pack_path} did not return"):
        assert bad not in log, f"{bad!r} in the server log:\n{comfy_server.log_tail()}"


def test_pack_import_time(comfy_server: ComfyServer):
    # The table's time covers import + comfy_entrypoint() + get_node_list(), to 0.1 s.
    seconds, _ = _our_import_line(comfy_server)
    assert seconds < IMPORT_TIME_LIMIT_S, (
        f"pack import took {seconds} s (limit {IMPORT_TIME_LIMIT_S}); keep torch-heavy imports "
        "(diffusers, transformers, librosa) inside execute()"
    )


def test_object_info_has_core_and_helper_nodes(object_info: dict):
    assert "SaveImage" in object_info and object_info["SaveImage"]["python_module"] == "nodes"
    assert object_info["PTTestSleep"]["python_module"].startswith("custom_nodes.")


# ---- the pack's node list ---------------------------------------------------------------

def test_pack_entrypoint_returns_a_node_list(pack_info: dict):
    assert pack_info["error"] is None, pack_info["error"]
    assert pack_info["has_entrypoint"], "the pack must export comfy_entrypoint"
    assert not pack_info["has_mappings"], "export comfy_entrypoint or NODE_CLASS_MAPPINGS, not both"
    assert pack_info["web_directory"] == "./web"


def test_every_pack_node_is_served(pack_info: dict, object_info: dict):
    """Every class get_node_list() returns is in /object_info as ours (a core-name clash is
    dropped silently by ComfyUI), and the server has no other node of ours."""
    assert pack_info["error"] is None, pack_info["error"]
    expected = {n["node_id"] for n in pack_info["nodes"]}
    served = {k for k, v in object_info.items() if v.get("python_module") == PACK_MODULE}
    missing = sorted(expected - served)
    clashes = sorted(k for k in missing if k in object_info)
    assert not missing, f"not served: {missing} (of which clash with another node: {clashes})"
    assert served == expected, f"served but not in get_node_list(): {sorted(served - expected)}"


def test_every_schema_under_nodes_is_registered(pack_info: dict):
    """Every io.Schema(node_id=...) literal under nodes/ is returned by get_node_list()."""
    assert pack_info["error"] is None, pack_info["error"]
    dynamic = {n["node_id"] for n in pack_info["nodes"]}
    assert not set(STATIC_NODE_IDS) - dynamic, f"defined but not registered: {sorted(set(STATIC_NODE_IDS) - dynamic)}"


@pytest.mark.parametrize("node_id", STATIC_NODE_IDS)
def test_node_is_listed(node_id: str, object_info: dict):
    info = object_info.get(node_id)
    assert info is not None, f"{node_id} is not in /object_info"
    assert info["python_module"] == PACK_MODULE, f"{node_id} comes from {info['python_module']} (a name clash?)"
    assert info.get("display_name"), f"{node_id} has no display name"
    assert info.get("description"), f"{node_id} has no description"


@pytest.mark.parametrize("node_id", STATIC_NODE_IDS)
def test_node_inputs_have_tooltips(node_id: str, object_info: dict):
    info = object_info.get(node_id)
    assert info is not None, f"{node_id} is not in /object_info"
    missing = [
        name
        for section in ("required", "optional")
        for name, spec in (info.get("input", {}).get(section) or {}).items()
        if not (len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("tooltip"))
    ]
    assert not missing, f"{node_id}: inputs without tooltip: {missing}"


# ---- web extensions --------------------------------------------------------------------

@pytest.mark.parametrize("js", packinfo.repo_web_files(), ids=lambda p: p.name)
def test_web_extension_is_served(js: Path, comfy_client: ComfyClient):
    rel = js.relative_to(packinfo.REPO_ROOT / "web").as_posix()
    url = f"/extensions/{PACK_FOLDER_NAME}/{rel}"
    assert url in comfy_client.get_json("/extensions")
    r = comfy_client.get(url)
    assert r.status_code == 200 and r.content == js.read_bytes()


# ---- model folders -----------------------------------------------------------------------

@pytest.mark.parametrize("folder", ["checkpoints", "clip_vision", "audio_encoders"])
def test_new_model_files_are_visible_at_once(folder: str, comfy_server: ComfyServer, comfy_client: ComfyClient):
    """add_model() while the server runs: the next request lists the file (mtime-checked cache)."""
    before = comfy_client.models(folder)
    assert before is not None, f"{folder} is not a registered model folder"
    name = f"zz_harness_probe_{uuid.uuid4().hex[:8]}.safetensors"
    path = comfy_server.add_model(folder, b"not really a model", name)
    try:
        assert name in comfy_client.models(folder)
        if folder == "checkpoints":
            combo = comfy_client.object_info("CheckpointLoaderSimple")["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
            assert name in combo[0]
    finally:
        path.unlink()
        path.parent.touch()
    assert name not in comfy_client.models(folder)


def test_portraittalk_model_folder_is_registered(comfy_server: ComfyServer, comfy_client: ComfyClient):
    assert "portraittalk" in (comfy_client.models() or [])
    name = f"probe_{uuid.uuid4().hex[:8]}.safetensors"
    comfy_server.add_model("portraittalk", b"x", name)
    assert name in (comfy_client.models("portraittalk") or [])


@pytest.fixture(scope="module")
def extra_paths_server(comfy_server_factory, tmp_path_factory):
    """A second server with an extra_model_paths.yaml that adds <extra>/checkpoints and
    <extra>/portraittalk, as a user with a shared model folder would have."""
    extra = tmp_path_factory.mktemp("extra-models")
    server = comfy_server_factory(
        extra_model_paths={"shared": {"base_path": str(extra), "checkpoints": "checkpoints", "portraittalk": "portraittalk"}},
        with_testnodes=False,
    )
    server.extra_models_root = extra
    yield server
    server.stop()


def test_extra_model_paths_yaml_adds_core_folder(extra_paths_server: ComfyServer):
    s = extra_paths_server
    s.add_model("checkpoints", b"x", "in_base.safetensors")
    s.add_model("checkpoints", b"x", "in_extra.safetensors", root=s.extra_models_root)
    client = s.client()
    try:
        listed = client.models("checkpoints")
    finally:
        client.close()
    assert {"in_base.safetensors", "in_extra.safetensors"} <= set(listed), listed


def test_extra_model_paths_yaml_adds_portraittalk_folder(extra_paths_server: ComfyServer):
    s = extra_paths_server
    s.add_model("portraittalk", b"x", "pt_in_base.safetensors")
    s.add_model("portraittalk", b"x", "pt_in_extra.safetensors", root=s.extra_models_root)
    client = s.client()
    try:
        listed = client.models("portraittalk") or []
    finally:
        client.close()
    assert {"pt_in_base.safetensors", "pt_in_extra.safetensors"} <= set(listed), listed


# ---- running prompts -------------------------------------------------------------------

def _smoke_graph(prefix: str) -> dict:
    return {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": random.randrange(0, 0xFFFFFF)}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def test_smoke_prompt_with_core_nodes(comfy_server: ComfyServer, comfy_client: ComfyClient):
    prefix = f"smoke_{uuid.uuid4().hex[:8]}"
    result = comfy_client.run(_smoke_graph(prefix), timeout=120)
    types = [m["type"] for m in result.messages]
    assert types[0] == "execution_start" and "execution_success" in types, types
    executing = [d["node"] for d in result.of("executing")]
    assert executing[-1] is None and {"1", "2"} <= set(executing), executing
    images = result.of("executed")[0]["output"]["images"]
    assert images[0]["filename"].startswith(prefix) and images[0]["type"] == "output"
    files = result.output_files(comfy_server.output_dir)
    assert files and all(f.is_file() for f in files), files
    assert comfy_server.output_files(f"{prefix}*") == files
    assert result.history["status"]["completed"] is True
    assert comfy_client.view(images[0]["filename"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_identical_prompt_is_cached(comfy_client: ComfyClient):
    graph = {"1": {"class_type": "PTTestSleep", "inputs": {"steps": 3, "seconds_per_step": 0.0, "tag": uuid.uuid4().hex}}}
    first = comfy_client.run(graph, timeout=60)
    second = comfy_client.run(graph, timeout=60)
    assert first.of("progress") and not second.of("progress")
    assert second.of("execution_cached")[0]["nodes"] == ["1"]


def test_rejected_prompt_raises_with_node_errors(comfy_client: ComfyClient):
    graph = _smoke_graph("rejected")
    graph["1"]["inputs"]["width"] = -5  # below min
    with pytest.raises(PromptRejected) as exc:
        comfy_client.queue(graph)
    assert exc.value.status == 400
    assert "1" in exc.value.node_errors or "2" in exc.value.node_errors, exc.value.body
    with pytest.raises(PromptRejected) as exc:
        comfy_client.queue({"1": {"class_type": "NoSuchNodeAnywhere", "inputs": {}}})
    assert exc.value.body["error"]["type"] == "invalid_prompt"


def test_execution_error_is_reported(comfy_client: ComfyClient):
    msg = f"harness failure {uuid.uuid4().hex[:6]}"
    result = comfy_client.run({"1": {"class_type": "PTTestFail", "inputs": {"message": msg}}}, expect="execution_error")
    err = result.of("execution_error")[0]
    assert err["node_type"] == "PTTestFail" and err["exception_type"].endswith("ValueError")
    assert msg in err["exception_message"] and err["traceback"]
    assert result.history["status"]["status_str"] == "error"


def test_progress_then_interrupt(comfy_client: ComfyClient):
    graph = {"1": {"class_type": "PTTestSleep", "inputs": {"steps": 3000, "seconds_per_step": 0.01, "tag": uuid.uuid4().hex}}}
    pid = comfy_client.queue(graph)
    deadline = time.monotonic() + 60
    while not any(m["type"] == "progress" and m["data"].get("prompt_id") == pid for m in comfy_client.all_messages()):
        assert time.monotonic() < deadline, "no progress message within 60 s"
        time.sleep(0.05)
    comfy_client.interrupt(pid)
    msgs = comfy_client.wait(pid, timeout=60)
    types = [m["type"] for m in msgs]
    assert "execution_interrupted" in types and "execution_success" not in types, types
    progress = messages_of(msgs, "progress")
    assert progress[0]["max"] == 3000 and progress[0]["node"] == "1"
    values = [p["value"] for p in progress]
    assert values == sorted(values) and values[-1] < 3000, values[-5:]
    assert messages_of(msgs, "execution_interrupted")[0]["node_type"] == "PTTestSleep"


def test_interrupt_while_idle_does_not_leak(comfy_client: ComfyClient):
    comfy_client.interrupt()
    comfy_client.interrupt(prompt_id="not-running")
    graph = {"1": {"class_type": "PTTestSleep", "inputs": {"steps": 4, "seconds_per_step": 0.0, "tag": uuid.uuid4().hex}}}
    result = comfy_client.run(graph, timeout=60)
    assert [p["value"] for p in result.of("progress")] == [1, 2, 3, 4]
    assert result.outputs("1") == {"text": [f"4 steps {graph['1']['inputs']['tag']}"]}


def test_upload_lands_in_input_dir(comfy_server: ComfyServer, comfy_client: ComfyClient, tmp_path: Path):
    src = tmp_path / f"up_{uuid.uuid4().hex[:6]}.wav"
    src.write_bytes(b"RIFF....WAVE")
    info = comfy_client.upload(src, subfolder="harness")
    assert info == {"name": src.name, "subfolder": "harness", "type": "input"}
    assert (comfy_server.input_dir / "harness" / src.name).read_bytes() == src.read_bytes()
