"""ComfyUI model folders used by the pack, registered through `folder_paths`."""

import os

import folder_paths

PORTRAITTALK = "portraittalk"


def register() -> None:
    """Add `models/portraittalk` (idempotent), so extra_model_paths.yaml can extend it too."""
    if PORTRAITTALK not in folder_paths.folder_names_and_paths:
        folder_paths.add_model_folder_path(PORTRAITTALK, os.path.join(folder_paths.models_dir, PORTRAITTALK))
