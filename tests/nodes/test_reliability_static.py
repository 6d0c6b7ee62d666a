"""Nothing in the pack's source can run code from a file: a scan of every module's syntax tree (no server
needed). torch.load only with weights_only=True; no pickle, marshal, dill or joblib loading; no
eval/exec; no TorchScript loading; numpy only without pickles; YAML only through safe_load;
transformers/diffusers never with trust_remote_code=True."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP = {"tests", ".venv", ".cache", ".git", "build", "dist", "node_modules", "web"}
UNSAFE_MODULE_LOADS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("cPickle", "load"),
                       ("marshal", "load"), ("marshal", "loads"), ("dill", "load"), ("dill", "loads"),
                       ("joblib", "load"), ("shelve", "open"), ("jit", "load")}


def sources() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.py") if not SKIP & set(p.relative_to(REPO).parts[:-1]))


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        where = f"{path.relative_to(REPO)}:{node.lineno}"
        if isinstance(func, ast.Name) and func.id in ("eval", "exec", "compile", "__import__"):
            found.append(f"{where}: {func.id}()")
        if not isinstance(func, ast.Attribute):
            continue
        owner = func.value.id if isinstance(func.value, ast.Name) else (
            func.value.attr if isinstance(func.value, ast.Attribute) else None)
        if owner == "torch" and func.attr == "load" and not _is_true(_keyword(node, "weights_only")):
            found.append(f"{where}: torch.load without weights_only=True")
        if (owner, func.attr) in UNSAFE_MODULE_LOADS:
            found.append(f"{where}: {owner}.{func.attr}")
        if owner in ("np", "numpy") and func.attr == "load" and _is_true(_keyword(node, "allow_pickle")):
            found.append(f"{where}: numpy.load(allow_pickle=True)")
        if owner == "yaml" and func.attr in ("load", "load_all", "unsafe_load", "full_load"):
            found.append(f"{where}: yaml.{func.attr} (use yaml.safe_load)")
        if func.attr == "from_pretrained" and _is_true(_keyword(node, "trust_remote_code")):
            found.append(f"{where}: from_pretrained(trust_remote_code=True)")
    return found


def test_the_scan_sees_the_source():
    names = {p.relative_to(REPO).as_posix() for p in sources()}
    assert {"models/files/weights.py", "nodes/loaders.py", "models/pipeline.py"} <= names


@pytest.mark.parametrize("path", sources(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_code_runs_from_files(path: Path):
    assert problems(path) == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch, pickle, yaml, numpy as np\n"
                   "torch.load('x')\ntorch.load('x', weights_only=False)\npickle.loads(b'')\neval('1')\n"
                   "yaml.load('a')\nnp.load('a', allow_pickle=True)\ntorch.jit.load('m')\n"
                   "M.from_pretrained('x', trust_remote_code=True)\ntorch.load('ok', weights_only=True)\n"
                   "model.eval()\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        found = problems(bad)
    finally:
        REPO = saved
    assert len(found) == 8, found
