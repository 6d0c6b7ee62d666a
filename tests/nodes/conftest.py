"""Fixtures for tests against a real ComfyUI 0.3.75 server (built lazily, shared by every test
under tests/nodes/: comfyui_root is session-scoped, the rest package-scoped).

    comfyui_root   Path of the ComfyUI tree: $COMFYUI_PATH, or built into
                   $PORTRAITTALK_CACHE (default ~/.cache/comfyui-portraittalk); ComfyUI's Python
                   requirements are pip-installed into this interpreter if missing.
    comfy_server   a started ComfyServer (server.py) with the pack linked as
                   custom_nodes/ComfyUI-PortraitTalk, a temp base dir (models/, input/,
                   output/, temp/, user/), stopped after the last test under tests/nodes/.
                   Its log tail is attached to the report of every failing test that used it.
    comfy_client   a ComfyClient (server.py) bound to comfy_server, one websocket.
    object_info    GET /object_info once (call comfy_client.object_info() again
                   after adding files if you need fresh combo lists).
    pack_info      what the pack's comfy_entrypoint()/get_node_list() return (packinfo.py).
    comfy_server_factory(before_start=None, **ComfyServer kwargs) -> an extra started server
                   (own base dir, stopped at the end of the module that made it, so that idle
                   servers of earlier modules do not share memory with a full-size one) for other flags (extra_args=
                   ["--cache-none"], extra_model_paths={...}); before_start(server) runs after
                   the layout exists and before the process starts (to place files first).

Tests that use these fixtures are marked `comfyui` automatically; mark them explicitly too.
Environment: COMFYUI_PATH, PORTRAITTALK_CACHE, PORTRAITTALK_NO_INSTALL=1,
PORTRAITTALK_SERVER_TIMEOUT (seconds to wait for the first HTTP 200, default 120),
PORTRAITTALK_SERVER_ARGS (extra main.py flags for comfy_server, space-separated).
"""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path

import pytest

from comfyui_harness import environment, packinfo
from comfyui_harness.server import ComfyClient, ComfyServer

SERVER_FIXTURES = {"comfyui_root", "comfy_server", "comfy_client", "object_info", "pack_info", "comfy_server_factory"}
HERE = Path(__file__).resolve().parent
# "package": one server for everything under tests/nodes/ (sub-packages included), stopped
# as soon as the last of those tests is done instead of idling through the rest of the run.
SCOPE = "package"


def _logger(config: pytest.Config):
    """Print to the terminal even while output is captured (fixture setup is captured, and
    what a passing test's setup prints is otherwise dropped)."""
    tr = config.pluginmanager.getplugin("terminalreporter")
    capman = config.pluginmanager.getplugin("capturemanager")

    def log(msg: str) -> None:
        ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
        with ctx:
            if tr is not None:
                tr.write_line(msg)
            else:  # pragma: no cover
                print(msg, flush=True)

    return log


def _timeout() -> float:
    return float(os.environ.get("PORTRAITTALK_SERVER_TIMEOUT", "120"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents and SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.comfyui)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        funcargs = getattr(item, "funcargs", {}) or {}
        server = funcargs.get("comfy_server")
        if isinstance(server, ComfyServer):
            rep.sections.append((f"ComfyUI server log (tail of {server.log_path})", server.log_tail(60)))


@pytest.fixture(scope="session")
def comfyui_root(request: pytest.FixtureRequest) -> Path:
    return environment.ensure_comfyui(log=_logger(request.config))


@pytest.fixture(scope=SCOPE)
def comfy_server(comfyui_root: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    log = _logger(request.config)
    server = ComfyServer(
        comfyui_root,
        tmp_path_factory.mktemp("comfy-base"),
        extra_args=shlex.split(os.environ.get("PORTRAITTALK_SERVER_ARGS", "")),
    )
    log(f"[comfyui] starting {' '.join(server.command())} (base {server.base_dir})")
    server.start(timeout=_timeout())
    log(f"[comfyui] server at {server.url} answered after {server.started_in:.1f} s")
    try:
        yield server
    finally:
        died = not server.is_running()
        rc = server.stop()
        log(f"[comfyui] server stopped (exit {rc}); log: {server.log_path}")
        if died:
            log(f"[comfyui] WARNING: the server had exited during the session; log tail:\n{server.log_tail(40)}")


@pytest.fixture(scope="module")
def comfy_server_factory(comfyui_root: Path, tmp_path_factory: pytest.TempPathFactory):
    started: list[ComfyServer] = []

    def make(before_start=None, **kw) -> ComfyServer:
        server = ComfyServer(comfyui_root, kw.pop("base_dir", None) or tmp_path_factory.mktemp("comfy-extra"), **kw)
        started.append(server)
        server.prepare()
        if before_start is not None:
            before_start(server)  # e.g. lambda s: s.add_model("portraittalk", path)
        server.start(timeout=_timeout())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope=SCOPE)
def comfy_client(comfy_server: ComfyServer):
    client = comfy_server.client()
    client.connect()
    yield client
    client.close()


@pytest.fixture(scope=SCOPE)
def object_info(comfy_client: ComfyClient) -> dict:
    return comfy_client.object_info()


@pytest.fixture(scope=SCOPE)
def pack_info(comfyui_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return packinfo.pack_nodes(comfyui_root, tmp_path_factory.mktemp("pack-probe"))
