"""What the pack itself declares, found two ways, for comparison with the server's /object_info.

    static_node_ids()            # node_id="..." literals of io.Schema(...) calls under nodes/
                                 # (cheap, no ComfyUI: used to parametrise tests at collection)
    pack_nodes(comfy_root)       # what comfy_entrypoint() -> get_node_list() really returns,
                                 # run in a subprocess with the ComfyUI tree on sys.path and the
                                 # pack imported the way ComfyUI imports it (full path as module
                                 # name), so nothing of ComfyUI leaks into the pytest process.
    repo_workflows()             # workflows/*.json split into UI and API format
    repo_web_files()             # web/**/*.js

Why not just read the log: in ComfyUI 0.3.75 (nodes.py load_custom_node) an exception in
comfy_entrypoint() or get_node_list() is caught and logged as a one-line WARNING
"Error while calling comfy_entrypoint in <path>: <exc>" (no traceback); the pack then shows
"(IMPORT FAILED)" in the table. A node whose node_id clashes with a core node is dropped
silently, and ComfyExtension.on_load() is never called by 0.3.75 at all. Only comparing the
node lists catches all of that.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from .server import PACK_FOLDER_NAME, REPO_ROOT, SERVER_ENV

_PROBE = r"""
import asyncio, importlib.util, json, os, sys, tempfile, traceback
comfy_root, pack_dir, base = sys.argv[1], sys.argv[2], sys.argv[3]
sys.argv = [sys.argv[0]]
sys.path.insert(0, comfy_root)
from comfy.cli_args import args
args.cpu = True
args.base_directory = base
out = {"nodes": [], "error": None}
try:
    name = pack_dir.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, os.path.join(pack_dir, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    out["has_entrypoint"] = hasattr(module, "comfy_entrypoint")
    out["has_mappings"] = hasattr(module, "NODE_CLASS_MAPPINGS")
    out["web_directory"] = getattr(module, "WEB_DIRECTORY", None)
    async def main():
        ext = module.comfy_entrypoint()
        if asyncio.iscoroutine(ext):
            ext = await ext
        out["extension"] = type(ext).__name__
        for cls in await ext.get_node_list():
            s = cls.GET_SCHEMA()
            out["nodes"].append({"node_id": s.node_id, "display_name": s.display_name,
                                 "class": cls.__module__ + "." + cls.__qualname__})
    asyncio.run(main())
except BaseException:
    out["error"] = traceback.format_exc()
print("@@PACKINFO@@" + json.dumps(out))
"""


def static_node_ids(pack_root: Path = REPO_ROOT) -> list[str]:
    """node_id string literals passed as keywords under nodes/ (sorted, unique)."""
    ids = set()
    for path in sorted((pack_root / "nodes").rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "node_id" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        ids.add(kw.value.value)
    return sorted(ids)


def pack_nodes(comfy_root: Path, base_dir: Path, pack_root: Path = REPO_ROOT, python: str = sys.executable,
               timeout: float = 300) -> dict:
    """{"nodes": [{"node_id", "display_name", "class"}], "error": traceback|None, ...}.
    The pack is linked as <base_dir>/custom_nodes/ComfyUI-PortraitTalk, as on the server."""
    pack_dir = base_dir / "custom_nodes" / PACK_FOLDER_NAME
    if not pack_dir.exists():
        pack_dir.parent.mkdir(parents=True, exist_ok=True)
        pack_dir.symlink_to(pack_root, target_is_directory=True)
    env = dict(os.environ)
    env.update(SERVER_ENV)
    proc = subprocess.run(
        [python, "-c", _PROBE, str(comfy_root), str(pack_dir), str(base_dir)],
        cwd=comfy_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("@@PACKINFO@@"):
            data = json.loads(line[len("@@PACKINFO@@"):])
            data["output"] = proc.stdout
            return data
    return {"nodes": [], "error": f"probe exited {proc.returncode}:\n{proc.stdout[-6000:]}", "output": proc.stdout}


def repo_workflows(pack_root: Path = REPO_ROOT) -> tuple[list[Path], list[Path]]:
    """(UI-format files, API-format files): workflows/*.json by content (a top-level
    *_api.json counts as API), plus workflows/api/*.json (always API)."""
    from .workflow import load_json, workflow_format

    ui, api = [], []
    wf_dir = pack_root / "workflows"
    for path in sorted(wf_dir.glob("*.json")):
        try:
            kind = workflow_format(load_json(path))
        except ValueError:
            kind = None
        if kind == "api" or path.name.endswith("_api.json"):
            api.append(path)
        else:
            ui.append(path)  # unparsable files land here and fail the UI checks loudly
    api += sorted((wf_dir / "api").glob("*.json"))
    return ui, api


def repo_web_files(pack_root: Path = REPO_ROOT) -> list[Path]:
    web = pack_root / "web"
    return sorted(p for p in web.rglob("*.js") if p.is_file()) if web.is_dir() else []
