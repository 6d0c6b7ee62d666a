"""Loading user-supplied metric weights without ever unpickling.

``.safetensors`` files load with safetensors. Anything else loads with
``torch.load(..., weights_only=True)``, which refuses arbitrary Python objects. A
missing file raises an error that names the path and what was expected.
"""

from __future__ import annotations

import os


def load_state_dict(path: str | os.PathLike | None, what: str) -> dict:
    """The tensors in ``path``, for the model described by ``what`` (used in errors)."""
    if path is None:
        raise ValueError(f"{what}: no weights file given. These weights are user-supplied local files; "
                         "nothing is downloaded")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: weights file not found at {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        import torch
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # not a plain tensor archive: refuse rather than unpickle
            raise ValueError(f"{what}: {path!r} is not loadable with weights_only=True "
                             f"(convert it to .safetensors): {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{what}: {path!r} holds a {type(state).__name__}, expected a state dict")
    # Checkpoints saved from DataParallel prefix every key with "module.".
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def load_into(model, path, what: str):
    """Load ``path`` into ``model`` strictly; mismatches are reported by name."""
    state = load_state_dict(path, what)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Checkpoints from old PyTorch versions have no batch-norm step counters; those are unused in eval.
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{what}: {os.fspath(path)!r} does not match the expected layout; "
                         f"missing keys {list(missing)[:8]}, unexpected keys {list(unexpected)[:8]}")
    return model.eval()
