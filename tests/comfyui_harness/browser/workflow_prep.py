"""Make a UI-format workflow runnable on a test server: model names the server lacks (the bundled demo
model before it ships) become the test's model, and long samplings are shortened."""

from __future__ import annotations

import copy

MODEL_LOADERS = ("PortraitTalkLoadIdentityNet", "PortraitTalkLoadAnimateNet", "PortraitTalkLoadTextEncoder",
                 "PortraitTalkLoadImageEncoder")
SAMPLER = "PortraitTalkSampler"
STEPS_INDEX = 0  # widgets_values of the sampler: steps, scheduler, karras, seed, control mode, ...


def runnable(workflow: dict, available_models: list[str], fallback_model: str, max_steps: int = 0) -> dict:
    """A copy of `workflow` whose model loaders name available files and whose samplers run at most
    `max_steps` steps (0 leaves them as they are)."""
    wf = copy.deepcopy(workflow)
    for node in wf.get("nodes", []):
        values = node.get("widgets_values")
        if not isinstance(values, list) or not values:
            continue
        if node.get("type") in MODEL_LOADERS and values[0] not in available_models:
            values[0] = fallback_model
        if node.get("type") == SAMPLER and max_steps and isinstance(values[STEPS_INDEX], int):
            values[STEPS_INDEX] = min(values[STEPS_INDEX], max_steps)
    return wf


def node_ids(workflow: dict, node_type: str) -> list[int]:
    return [n["id"] for n in workflow.get("nodes", []) if n.get("type") == node_type]
