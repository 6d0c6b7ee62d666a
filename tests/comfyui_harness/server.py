"""A real ComfyUI server in a throw-away base directory, and a client for its HTTP/websocket API.

Usage in tests (fixtures in tests/nodes/conftest.py; put server tests under tests/nodes/
so they see the fixtures, and mark them ``@pytest.mark.comfyui``)::

    def test_something(comfy_server, comfy_client):
        comfy_server.add_model("portraittalk", src_path_or_bytes, "tiny.safetensors")
        comfy_server.add_input(some_png_path)                  # -> input/<name>
        pid = comfy_client.queue(api_graph)                    # POST /prompt
        msgs = comfy_client.wait(pid, timeout=300)             # websocket messages of that prompt
        assert messages_of(msgs, "execution_success")
        files = comfy_server.output_files("my_prefix*")        # files under the temp output/
        entry = comfy_client.history(pid)                      # {"outputs": ..., "status": ...}

Layout of the base directory (``ComfyServer.base_dir``, passed as ``--base-directory``)::

    custom_nodes/ComfyUI-PortraitTalk -> the repository root (symlink; hyphenated, as users clone)
    custom_nodes/portraittalk-testnodes -> tests/comfyui_harness/testnodes (PTTest* helper nodes)
    models/<folder>/...     models_dir of folder_paths: checkpoints, clip_vision, audio_encoders,
                            portraittalk (once the pack registers it) ...
    input/ output/ temp/ user/   (user/comfyui.db via --database-url: the tree stays untouched)
    server.log               stdout+stderr of the server

Model files and the server's cache (from folder_paths.py of 0.3.75): `get_filename_list`
caches a listing together with the mtime of every folder it walked, and drops the cache as
soon as one of those mtimes changes or a registered folder appears. `/object_info` and
validation call it on every request, so a file added at any time (before or while the server
runs) is visible on the next request. `add_model` also bumps the folder's mtime, so that a
listing made within the same timestamp tick cannot hide the new file. A folder name that no
one registered (not core, not by the pack) stays invisible whatever files it holds.

Protocol notes (server.py / execution.py / main.py of 0.3.75):
* POST /prompt {"prompt", "client_id"} -> 200 {"prompt_id", "number", "node_errors"} or
  400 {"error": {"type", "message", "details", "extra_info"}, "node_errors": {id: {"errors",
  "dependent_outputs", "class_type"}}}. Without a client_id no progress/execution messages are
  sent at all (only `execution_interrupted` is broadcast), so the client always sends its id.
* Websocket /ws?clientId=ID, JSON text frames {"type", "data"}; binary frames are previews.
  Per prompt, in order: execution_start {prompt_id, timestamp}, execution_cached {nodes,
  prompt_id, timestamp}, then per node executing {node, display_node, prompt_id},
  progress {value, max, prompt_id, node} (only from comfy.utils.ProgressBar / the global
  progress hook), progress_state {prompt_id, nodes: {id: {value, max, state, ...}}},
  executed {node, display_node, output (the node's ui dict), prompt_id}; then exactly one of
  execution_success {prompt_id, timestamp}, execution_error {prompt_id, node_id, node_type,
  executed, exception_message, exception_type, traceback, current_inputs, current_outputs,
  timestamp} or execution_interrupted {prompt_id, node_id, node_type, executed, timestamp}.
  Finally executing {node: null, prompt_id} comes after the history entry is stored: `wait`
  returns on that message, so `history()` is complete right after it.
* Progress in V3 nodes: `comfy.utils.ProgressBar(total).update(1)` calls the hook installed
  by main.py (hijack_progress): it raises InterruptProcessingException when an interrupt is
  pending, sends `progress`, and updates the progress registry (-> `progress_state`).
  `ComfyAPI.execution.set_progress(...)` (comfy_api.latest) only updates the registry: it
  sends `progress_state`, no `progress`, and is NOT an interrupt point.
* POST /interrupt {} interrupts whatever runs; {"prompt_id": id} only if that prompt runs.
  `execute_async` clears the interrupt flag when the next prompt starts, so an interrupt
  sent while idle does not leak into the next prompt.
* An identical resubmitted prompt is served from the cache and runs nothing (outputs are
  still reported in `executed`): vary an input, or start a server with `--cache-none`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import requests

PACK_FOLDER_NAME = "ComfyUI-PortraitTalk"
TESTNODES_FOLDER_NAME = "portraittalk-testnodes"
REPO_ROOT = Path(__file__).resolve().parents[2]
TESTNODES_SRC = Path(__file__).resolve().parent / "testnodes"

#: Websocket message types `wait` collects by default (those that carry our prompt_id).
EXECUTION_MESSAGE_TYPES = frozenset(
    {
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "progress_state",
        "executed",
        "execution_error",
        "execution_interrupted",
        "execution_success",
    }
)
TERMINAL_TYPES = ("execution_success", "execution_error", "execution_interrupted")

SERVER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}

# "Import times for custom nodes:" table, e.g. "   0.0 seconds (IMPORT FAILED): /x/custom_nodes/Pack"
IMPORT_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?) seconds( \(IMPORT FAILED\))?: (.+?)\s*$")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def messages_of(messages: Iterable[dict], type_: str) -> list[dict]:
    """The `data` of every message of one type."""
    return [m["data"] for m in messages if m.get("type") == type_]


def outcome(messages: Iterable[dict]) -> str | None:
    """'execution_success', 'execution_error' or 'execution_interrupted' (or None)."""
    for m in messages:
        if m.get("type") in TERMINAL_TYPES:
            return m["type"]
    return None


class PromptRejected(RuntimeError):
    """POST /prompt answered 400: `.body` has "error" and per-node "node_errors"."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        super().__init__(f"POST /prompt -> {status}: {json.dumps(body, indent=1)[:4000]}")

    @property
    def node_errors(self) -> dict:
        return self.body.get("node_errors", {}) if isinstance(self.body, dict) else {}


class PromptTimeout(TimeoutError):
    def __init__(self, prompt_id: str, timeout: float, messages: list[dict]):
        self.prompt_id = prompt_id
        self.messages = messages
        seen = [m.get("type") for m in messages]
        super().__init__(f"prompt {prompt_id} did not finish in {timeout} s; messages so far: {seen}")


class ComfyClient:
    """HTTP + websocket client for one ComfyUI server. One websocket per client (its client_id).

    The websocket is opened on first use and read by a background thread, so messages are
    never lost between `queue` and `wait`, and several prompts can be queued before waiting.
    """

    def __init__(self, base_url: str, client_id: str | None = None, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout
        self.http = requests.Session()
        self._ws = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._messages: list[dict] = []
        self._ws_error: BaseException | None = None
        self._closed = False

    # ---- plumbing -------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        return self.http.get(self.url(path), **kw)

    def post(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        return self.http.post(self.url(path), **kw)

    def get_json(self, path: str, **kw) -> Any:
        r = self.get(path, **kw)
        r.raise_for_status()
        return r.json()

    def connect(self, timeout: float = 30.0) -> None:
        """Open the websocket and wait for the server's first `status` message (sent once
        the socket is registered, so nothing sent to our client_id afterwards is missed)."""
        if self._ws is not None:
            return
        import websocket  # websocket-client

        ws_url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self._ws = websocket.create_connection(f"{ws_url}/ws?clientId={self.client_id}", timeout=timeout)
        self._ws.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name=f"comfy-ws-{self.client_id[:8]}", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(m.get("type") == "status" for m in self._messages):
                left = deadline - time.monotonic()
                if left <= 0 or self._ws_error is not None:
                    raise RuntimeError(f"no status message on the websocket: {self._ws_error!r}")
                self._cond.wait(left)

    def _read_loop(self) -> None:
        import websocket

        try:
            while True:
                opcode, payload = self._ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    try:
                        msg = json.loads(payload.decode("utf-8"))
                    except ValueError:
                        continue
                elif opcode == websocket.ABNF.OPCODE_BINARY:
                    # 4-byte big-endian event type (1: preview image, 3: text, 4: preview
                    # with metadata), then the payload. Kept small: type and size only.
                    event = int.from_bytes(payload[:4], "big") if len(payload) >= 4 else -1
                    msg = {"type": "binary", "data": {"event": event, "size": len(payload) - 4}}
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                else:
                    continue
                msg["received"] = time.monotonic()
                with self._cond:
                    self._messages.append(msg)
                    self._cond.notify_all()
        except Exception as e:  # closed by close(), or the server went away
            if not self._closed:
                with self._cond:
                    self._ws_error = e
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._cond.notify_all()

    def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:
                pass
            self._ws = None
        self.http.close()

    def all_messages(self) -> list[dict]:
        with self._cond:
            return list(self._messages)

    # ---- API ------------------------------------------------------------------------
    def system_stats(self) -> dict:
        return self.get_json("/system_stats")

    def object_info(self, node_class: str | None = None) -> dict:
        """All nodes, or `{node_class: info}` ({} if unknown)."""
        return self.get_json(f"/object_info/{node_class}" if node_class else "/object_info")

    def models(self, folder: str | None = None) -> list[str] | None:
        """GET /models (registered folder names) or /models/<folder> (files; None if unknown)."""
        r = self.get(f"/models/{folder}" if folder else "/models")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return r.json()

    def workflow_templates(self) -> dict[str, list[str]]:
        return self.get_json("/workflow_templates")

    def queue(self, prompt: dict, extra_data: dict | None = None, front: bool = False,
              prompt_id: str | None = None) -> str:
        """POST an API-format graph; returns its prompt_id. Raises PromptRejected on 400."""
        self.connect()
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            body["extra_data"] = extra_data
        if front:
            body["front"] = True
        if prompt_id:
            body["prompt_id"] = prompt_id
        r = self.post("/prompt", json=body)
        if r.status_code == 400:
            try:
                payload = r.json()
            except ValueError:
                payload = r.text
            raise PromptRejected(400, payload)
        r.raise_for_status()
        data = r.json()
        if data.get("node_errors"):
            # Accepted with errors on some outputs: those outputs are not run.
            print(f"[comfy-client] prompt {data['prompt_id']} accepted with node_errors: {data['node_errors']}")
        return data["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0,
             types: Iterable[str] | None = EXECUTION_MESSAGE_TYPES) -> list[dict]:
        """Block until the prompt is finished; return its messages ({"type", "data"}) in order.

        Finished means the closing `executing` with node None (after which its history entry
        exists). `types=None` returns every message type that carries this prompt_id.
        Raises PromptTimeout (with the messages so far) after `timeout` seconds and
        RuntimeError if the websocket dies first.
        """
        self.connect()
        wanted = None if types is None else set(types)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                mine = [m for m in self._messages if isinstance(m.get("data"), dict) and m["data"].get("prompt_id") == prompt_id]
                done = any(
                    m["type"] == "executing" and m["data"].get("node") is None for m in mine
                )
                if done:
                    return [m for m in mine if wanted is None or m["type"] in wanted]
                if self._ws_error is not None:
                    raise RuntimeError(f"websocket failed while waiting for {prompt_id}: {self._ws_error!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PromptTimeout(prompt_id, timeout, mine)
                self._cond.wait(min(left, 1.0))

    def run(self, prompt: dict, timeout: float = 300.0, expect: str | None = "execution_success",
            **queue_kw) -> "RunResult":
        """queue + wait + history. With `expect` set, assert that outcome (with details)."""
        pid = self.queue(prompt, **queue_kw)
        msgs = self.wait(pid, timeout=timeout)
        result = RunResult(pid, msgs, self.history(pid))
        if expect is not None and result.outcome != expect:
            raise AssertionError(f"prompt {pid}: expected {expect}, got {result.outcome}\n{result.describe_error()}")
        return result

    def history(self, prompt_id: str) -> dict:
        """The history entry of one prompt ({"prompt", "outputs", "status", "meta"}) or {}."""
        return self.get_json(f"/history/{prompt_id}").get(prompt_id, {})

    def queue_state(self) -> dict:
        return self.get_json("/queue")

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt: the running prompt (or only `prompt_id` if it is the running one)."""
        r = self.post("/interrupt", json={"prompt_id": prompt_id} if prompt_id else {})
        r.raise_for_status()

    def clear_queue(self) -> None:
        self.post("/queue", json={"clear": True}).raise_for_status()

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        self.post("/free", json={"unload_models": unload_models, "free_memory": free_memory}).raise_for_status()

    def upload(self, path: str | os.PathLike, kind: str = "image", subfolder: str = "",
               overwrite: bool = True) -> dict:
        """POST /upload/image (any file type is stored; the name decides what lists it).
        Returns {"name", "subfolder", "type"}. Copying into `ComfyServer.input_dir` is
        equivalent and simpler."""
        path = Path(path)
        with open(path, "rb") as fh:
            r = self.post(
                f"/upload/{kind}",
                files={"image": (path.name, fh)},
                data={"subfolder": subfolder, "overwrite": "true" if overwrite else "false", "type": "input"},
            )
        r.raise_for_status()
        return r.json()

    def view(self, filename: str, subfolder: str = "", type_: str = "output") -> bytes:
        r = self.get("/view", params={"filename": filename, "subfolder": subfolder, "type": type_})
        r.raise_for_status()
        return r.content


class RunResult:
    def __init__(self, prompt_id: str, messages: list[dict], history: dict):
        self.prompt_id = prompt_id
        self.messages = messages
        self.history = history

    @property
    def outcome(self) -> str | None:
        return outcome(self.messages)

    def of(self, type_: str) -> list[dict]:
        return messages_of(self.messages, type_)

    def outputs(self, node_id: str | None = None) -> dict:
        """`ui` outputs from the history: {node_id: {"images": [...], ...}} (or one node's)."""
        outs = self.history.get("outputs", {})
        return outs.get(str(node_id), {}) if node_id is not None else outs

    def output_files(self, output_dir: str | os.PathLike) -> list[Path]:
        """Paths of every file the ui outputs name with type 'output' (images, audio, video...)."""
        files = []
        for node_out in self.outputs().values():
            for items in node_out.values():
                if not isinstance(items, list):
                    continue
                for it in items:
                    if isinstance(it, dict) and "filename" in it and it.get("type", "output") == "output":
                        files.append(Path(output_dir) / it.get("subfolder", "") / it["filename"])
        return files

    def describe_error(self) -> str:
        for m in self.messages:
            if m["type"] == "execution_error":
                d = m["data"]
                tb = "".join(d.get("traceback") or [])
                return f"{d.get('node_type')} (node {d.get('node_id')}): {d.get('exception_type')}: {d.get('exception_message')}\n{tb}"
            if m["type"] == "execution_interrupted":
                return f"interrupted in {m['data'].get('node_type')} (node {m['data'].get('node_id')})"
        return f"messages: {[m['type'] for m in self.messages]}"


class ComfyServer:
    """One ComfyUI process: `prepare()` lays out the base dir, `start()` runs and waits for it,
    `stop()` ends it (SIGTERM to its process group, then SIGKILL)."""

    def __init__(
        self,
        comfy_root: str | os.PathLike,
        base_dir: str | os.PathLike,
        pack_root: str | os.PathLike = REPO_ROOT,
        *,
        python: str = sys.executable,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Iterable[str] = (),
        extra_model_paths: dict[str, dict[str, str]] | None = None,
        with_testnodes: bool = True,
        link_pack: bool = True,
        env: dict[str, str] | None = None,
    ):
        self.comfy_root = Path(comfy_root).resolve()
        self.base_dir = Path(base_dir).resolve()
        self.pack_root = Path(pack_root).resolve()
        self.python = python
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = list(extra_args)
        self.extra_model_paths = extra_model_paths
        self.with_testnodes = with_testnodes
        self.link_pack = link_pack
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self._log_fh = None
        self.started_in: float | None = None

    # ---- layout ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def custom_nodes_dir(self) -> Path:
        return self.base_dir / "custom_nodes"

    @property
    def pack_dir(self) -> Path:
        return self.custom_nodes_dir / PACK_FOLDER_NAME

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def temp_dir(self) -> Path:
        return self.base_dir / "temp"

    @property
    def user_dir(self) -> Path:
        return self.base_dir / "user"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "server.log"

    @property
    def extra_model_paths_path(self) -> Path:
        return self.base_dir / "extra_model_paths.yaml"

    def prepare(self) -> None:
        for d in (self.custom_nodes_dir, self.models_dir, self.input_dir, self.output_dir, self.temp_dir, self.user_dir):
            d.mkdir(parents=True, exist_ok=True)
        if self.link_pack and not self.pack_dir.exists():
            _link_or_copy(self.pack_root, self.pack_dir)
        if self.with_testnodes and not (self.custom_nodes_dir / TESTNODES_FOLDER_NAME).exists():
            _link_or_copy(TESTNODES_SRC, self.custom_nodes_dir / TESTNODES_FOLDER_NAME)
        if self.extra_model_paths:
            self.extra_model_paths_path.write_text(_yaml(self.extra_model_paths), encoding="utf-8")

    def command(self) -> list[str]:
        cmd = [
            self.python, "main.py", "--cpu",
            "--listen", self.host, "--port", str(self.port),
            # Everything (models, custom_nodes, input, output, temp, user) under base_dir.
            "--base-directory", str(self.base_dir),
            # The default database lives in <tree>/user/comfyui.db whatever the base dir is.
            "--database-url", f"sqlite:///{self.user_dir / 'comfyui.db'}",
        ]
        if self.extra_model_paths:
            cmd += ["--extra-model-paths-config", str(self.extra_model_paths_path)]
        return cmd + self.extra_args

    # ---- models and inputs ----------------------------------------------------------
    def add_model(self, folder: str, src: str | os.PathLike | bytes, name: str | None = None,
                  root: str | os.PathLike | None = None) -> Path:
        """Put a model file into `models/<folder>/<name>` (or `<root>/<folder>/<name>`), from a
        path (hard-linked when possible, else copied) or bytes. Visible to a running server
        on its next request (see module docstring). Returns the new path."""
        folder_dir = Path(root) / folder if root is not None else self.models_dir / folder
        if name is None:
            if isinstance(src, (bytes, bytearray)):
                raise ValueError("name is required when src is bytes")
            name = Path(src).name
        dest = folder_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        _place(src, dest)
        _bump_mtime(dest.parent)
        return dest

    def add_input(self, src: str | os.PathLike | bytes, name: str | None = None, subfolder: str = "") -> Path:
        """Put a file into `input/[subfolder/]name` (what LoadImage/LoadAudio list)."""
        if name is None:
            if isinstance(src, (bytes, bytearray)):
                raise ValueError("name is required when src is bytes")
            name = Path(src).name
        dest = self.input_dir / subfolder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        _place(src, dest)
        _bump_mtime(dest.parent)
        return dest

    def output_files(self, pattern: str = "**/*") -> list[Path]:
        return sorted(p for p in self.output_dir.glob(pattern) if p.is_file())

    # ---- process --------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        if self.proc is not None:
            raise RuntimeError("already started")
        self.prepare()
        env = dict(os.environ)
        env.update(SERVER_ENV)
        env.update(self.env)
        self._log_fh = open(self.log_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.comfy_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() ends it and its children
            preexec_fn=_die_with_parent,
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - t0

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"ComfyUI exited with {self.proc.returncode} before answering; {self.command()}\n"
                    f"--- log tail ---\n{self.log_tail()}"
                )
            try:
                r = requests.get(f"{self.url}/system_stats", timeout=5)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.25)
        raise TimeoutError(
            f"ComfyUI gave no HTTP 200 on /system_stats within {timeout} s (last: {last})\n"
            f"--- log tail ---\n{self.log_tail()}"
        )

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        proc, self.proc = self.proc, None
        rc = None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(10)
            rc = proc.returncode
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        return rc

    def __enter__(self) -> "ComfyServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def client(self, client_id: str | None = None) -> ComfyClient:
        return ComfyClient(self.url, client_id)

    # ---- log ------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def import_times(self) -> dict[str, tuple[float, bool]]:
        """The startup table: {custom node path: (seconds, import_failed)}. Seconds are
        printed with one decimal. The time covers the module import AND comfy_entrypoint()
        AND get_node_list() (nodes.py load_custom_node), so node modules count too."""
        out: dict[str, tuple[float, bool]] = {}
        in_table = False
        for line in self.log_text().splitlines():
            if line.strip() == "Import times for custom nodes:":
                in_table = True
                continue
            if in_table:
                m = IMPORT_LINE.match(line)
                if not m:
                    if line.strip() == "" and out:
                        in_table = False
                    continue
                out[m.group(3)] = (float(m.group(1)), bool(m.group(2)))
        return out


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        dest.symlink_to(src, target_is_directory=src.is_dir())
    except OSError:
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", ".cache"))
        else:
            shutil.copy2(src, dest)


def _place(src: str | os.PathLike | bytes, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    if isinstance(src, (bytes, bytearray)):
        tmp.write_bytes(src)
    else:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    os.replace(tmp, dest)  # appears complete, never half-written


def _bump_mtime(folder: Path) -> None:
    """Give `folder` an mtime that no earlier listing can have recorded."""
    st = folder.stat()
    new = max(time.time_ns(), st.st_mtime_ns + 1_000_000)
    os.utime(folder, ns=(st.st_atime_ns, new))


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the test process dies without stopping us (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group we created with start_new_session
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def _yaml(sections: dict[str, dict[str, str]]) -> str:
    """extra_model_paths.yaml: {"section": {"base_path": "/x", "checkpoints": "checkpoints", ...}}."""
    lines = []
    for section, entries in sections.items():
        lines.append(f"{section}:")
        for k, v in entries.items():
            if isinstance(v, bool):
                lines.append(f"    {k}: {'true' if v else 'false'}")
                continue
            v = str(v)
            if "\n" in v:
                lines.append(f"    {k}: |")
                lines.extend(f"        {x}" for x in v.splitlines())
            else:
                lines.append(f"    {k}: {json.dumps(v)}")
    return "\n".join(lines) + "\n"
