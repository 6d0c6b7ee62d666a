"""The README's folder map is the one tools/folder_map.py generates from the git-tracked tree.

Fast and import-free (no torch): the map is read from docstrings with `ast` and from README files.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_folder_map():
    spec = importlib.util.spec_from_file_location("folder_map", ROOT / "tools" / "folder_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


folder_map = load_folder_map()


def git_tracked_files() -> list[str]:
    """The tracked files; the tests skip where there is no git checkout (an sdist, a bare copy)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the folder map is generated from `git ls-files`")
    try:
        files = folder_map.tracked_files(ROOT)
    except subprocess.CalledProcessError:
        pytest.skip(f"{ROOT} is not a git checkout: the folder map is generated from `git ls-files`")
    if not files:
        pytest.skip("git tracks no files here")
    return files


@pytest.fixture(scope="module")
def tracked() -> list[str]:
    return git_tracked_files()


@pytest.fixture(scope="module")
def generated(tracked) -> str:
    return folder_map.folder_map(ROOT, tracked)


def test_readme_holds_the_generated_folder_map(generated):
    block = folder_map.readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block == generated, (f"README.md's folder map is not the tree's: run `{folder_map.FIX_COMMAND}` "
                                "from the repository root and commit README.md")


def test_every_tracked_top_level_folder_and_module_is_in_the_map(tracked, generated):
    top_folders = {p.split("/")[0] for p in tracked if "/" in p}
    modules = {p for p in tracked if "/" not in p and p.endswith(".py")}
    missing = sorted(f"{f}/" for f in top_folders if f"- `{f}/`:" not in generated)
    missing += sorted(m for m in modules if f"- `{m}`:" not in generated)
    assert not missing, f"not in the folder map: {missing}"


def test_every_entry_has_a_purpose(tracked):
    without = [path for _, path, purpose in folder_map.entries(ROOT, tracked) if purpose == folder_map.NO_PURPOSE]
    assert not without, (f"no one-line purpose for {without}: give the package's __init__.py a docstring, or the "
                         f"folder a README.md whose first line says what it holds; then run `{folder_map.FIX_COMMAND}`")


def test_the_map_never_lists_ignored_folders(tracked):
    paths = [path for _, path, _ in folder_map.entries(ROOT, tracked)]
    listed = [path for path in paths if any(part in path for part in (".venv", ".cache", "__pycache__", ".egg-info"))]
    assert not listed, f"ignored folders in the folder map: {listed}"


def test_map_lists_sub_folders_of_python_folders_only():
    files = ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/deeper/__init__.py", "pkg/data/x.json",
             "web/app.js", "web/docs/page.md", "top.py", "README.md"]
    paths = [(depth, path) for depth, path, _ in folder_map.entries(ROOT / "no-such-folder", files)]
    assert paths == [(0, "pkg/"), (1, "pkg/data/"), (1, "pkg/sub/"), (0, "web/"), (0, "top.py")]


def test_purpose_is_the_first_sentence_of_a_docstring_or_the_first_heading(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('"""Things, e.g. widgets: made here.\nMore. Even more."""\n')
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "README.md").write_text("# The frontend\n\nText.\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("Notes the tools keep. Second sentence.\n")
    files = ["pkg/__init__.py", "web/README.md", "notes/README.md"]
    purposes = {path: purpose for _, path, purpose in folder_map.entries(tmp_path, files)}
    assert purposes == {"notes/": "Notes the tools keep.", "pkg/": "Things, e.g. widgets: made here.",
                        "web/": "The frontend"}


def test_readme_stays_a_first_read():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 15_000, f"README.md is {size} bytes: move detail to a page under docs/ (the limit is 15,000)"
