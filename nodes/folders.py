"""ComfyUI model folders used by the pack, registered through `folder_paths` so that
extra_model_paths.yaml works for them too."""

from __future__ import annotations

import os
from pathlib import Path

import folder_paths

PORTRAITTALK = "portraittalk"
ANIMATEDIFF = "animatediff_models"  # AnimateDiff-Evolved's folder name, so its users' motion modules are listed
DEMO_NAME = "portraittalk_demo.safetensors (bundled)"
DEMO_PATH = Path(__file__).resolve().parent.parent / "assets" / "portraittalk_demo.safetensors"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")  # models/files/weights.py refuses these too


def register() -> None:
    """Add `models/portraittalk` as the folder's default path and `models/animatediff_models` (idempotent),
    keeping any paths that extra_model_paths.yaml gave them, and accept the usual weight-file extensions."""
    folder_paths.add_model_folder_path(PORTRAITTALK, os.path.join(folder_paths.models_dir, PORTRAITTALK), is_default=True)
    # ComfyUI core has no animatediff_models; AnimateDiff-Evolved registers it too (its paths are kept)
    folder_paths.add_model_folder_path(ANIMATEDIFF, os.path.join(folder_paths.models_dir, ANIMATEDIFF))
    for folder in (PORTRAITTALK, ANIMATEDIFF):
        paths, extensions = folder_paths.folder_names_and_paths[folder]
        if not extensions:
            folder_paths.folder_names_and_paths[folder] = (paths, set(folder_paths.supported_pt_extensions))


def model_names(*, bundled: bool = True) -> list[str]:
    """PortraitTalk model files, the bundled demo first (when it is installed), and Hallo checkpoints
    (`net.pth`, read as weights only), which are converted on first use."""
    register()
    names = [n for n in folder_paths.get_filename_list(PORTRAITTALK) if n.endswith(".safetensors") or _is_hallo(n)]
    return ([DEMO_NAME] if bundled and DEMO_PATH.is_file() else []) + names


def _is_hallo(name: str) -> bool:
    if not name.endswith(".pth"):
        return False
    from ..models.files.hallo import is_hallo_checkpoint

    path = folder_paths.get_full_path(PORTRAITTALK, name)
    return path is not None and is_hallo_checkpoint(path)


def hallo_model_path(name: str) -> Path:
    """A Hallo checkpoint's PortraitTalk file in the first models/portraittalk folder, converted on first use:
    `hallo/net.pth` → `hallo_net.portraittalk.safetensors`."""
    from ..models.files.hallo import ensure_converted

    stem = os.path.splitext(name)[0].replace("\\", "/").strip("/").replace("/", "_")
    folder = folder_paths.get_folder_paths(PORTRAITTALK)[0]
    return ensure_converted(full_path(PORTRAITTALK, name), folder, stem)[0]


def unknown_name_message(folder: str, name, what: str) -> str:
    """Why `name` is not offered: a pickle file in the folder (never loaded: unpickling can run code), or
    no such file at all (a '../' path included: names are looked up, never joined onto a path)."""
    if isinstance(name, str) and name.lower().endswith(PICKLE_SUFFIXES) and name in folder_paths.get_filename_list(folder):
        hallo = " and Hallo's net.pth checkpoints (read as weights only)" if folder == PORTRAITTALK else ""
        return (f"'{name}' is a pickle file ({os.path.splitext(name)[1]}) that PortraitTalk does not load: it loads "
                f".safetensors files{hallo}, and never unpickles anything else, because unpickling a file can run "
                f"code from it. Convert it to .safetensors")
    return f"'{name}' is not {what} in ComfyUI's models/{folder} folders"


def model_path(name: str) -> Path:
    """A listed name → its file. Names are looked up, never joined onto a path, so '../' cannot escape."""
    if name == DEMO_NAME:
        if not DEMO_PATH.is_file():
            raise FileNotFoundError(f"the bundled demo model is missing from the pack: {DEMO_PATH}")
        return DEMO_PATH
    if isinstance(name, str) and _is_hallo(name):
        return hallo_model_path(name)
    return Path(full_path(PORTRAITTALK, name))


def full_path(folder: str, name: str) -> str:
    if not isinstance(name, str) or name not in folder_paths.get_filename_list(folder):
        raise FileNotFoundError(f"{name!r} is not a file in ComfyUI's '{folder}' model folders "
                                f"({', '.join(folder_paths.get_folder_paths(folder))})")
    return folder_paths.get_full_path_or_raise(folder, name)
