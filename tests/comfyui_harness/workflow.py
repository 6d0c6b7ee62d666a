"""Workflow JSON helpers: UI format (what users drag onto the canvas) and API format.

Pure functions over parsed JSON and an `/object_info` dict; no server needed::

    wf = load_json("workflows/talk.json")
    kind = workflow_format(wf)                       # "ui" | "api" | None
    types = ui_node_types(wf)                        # backend node types the graph uses
    problems = check_ui_workflow(wf, object_info)    # [] when every node exists and every
                                                     # widget value is accepted
    values = widget_values_by_name(node, object_info[node["type"]])  # {"seed": 5, ...}
    graph = ui_to_api(wf, object_info)               # API graph for ComfyClient.queue
    problems = check_api_workflow(graph, object_info)

How `widgets_values` lines up (frontend 1.32.9, the one ComfyUI 0.3.75 pins):
* One entry per widget input, in `input_order` order: "required" then "optional". A widget
  input is INT, FLOAT, STRING, BOOLEAN, a combo (a list, or "COMBO" with options) or another
  frontend widget type (MARKDOWN, COLOR, ...), unless `forceInput` is set. Linked widget
  inputs keep their entry.
* INT inputs get one more entry right after them, the "control_after_generate" mode
  (fixed/increment/decrement/randomize), when their options say `control_after_generate`,
  or, when that key is absent/null, when the input is named "seed" or "noise_seed".
* Combos with `control_after_generate` get two more: the mode and a "control_filter_list"
  string.
* Upload combos (`image_upload`, `audio_upload`, `video_upload`, `animated_image_upload`)
  get extra trailing entries for the upload button / preview widgets (LoadImage: 1,
  LoadAudio: 2): they are accepted unchecked at the end of the list.
* `widgets_values` may be a dict (some packs, e.g. VideoHelperSuite): keyed by input name.

Frontend-only node types (Note, MarkdownNote, Reroute, PrimitiveNode) are not in
/object_info and are skipped; subgraph instances (type = a subgraph id from
definitions.subgraphs) are checked through their inner nodes.

A combo whose value is a file name (models, inputs) is only valid on a server that has the
file; such mismatches are reported with kind "missing_file" so a test can decide (put a
dummy file there with ComfyServer.add_model / add_input, or accept it).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

FRONTEND_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
SOCKET_ONLY_HINT = "forceInput"
# Widget input types of frontend 1.32.9: ComfyWidgets, plus those its core extensions add.
WIDGET_TYPES = frozenset(
    {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "MARKDOWN", "COLOR", "TEXTAREA",
     "IMAGECOMPARE", "CHART", "GALLERIA", "AUDIO_RECORD", "WEBCAM", "LOAD_3D", "LOAD_3D_ANIMATION"}
)
# Core nodes whose frontend extension appends display widgets that are saved in
# widgets_values (3D previews, GetImageSize's text, the recorder's state).
TRAILING_EXTRAS = {"Preview3D": 1, "Preview3DAnimation": 1, "SaveGLB": 1, "GetImageSize": 1, "RecordAudio": 1}
UPLOAD_FLAGS = ("image_upload", "audio_upload", "video_upload", "animated_image_upload")
MAX_UPLOAD_EXTRAS = 3
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize", "increment-wrap")
FILE_EXTENSIONS = frozenset(
    {".safetensors", ".ckpt", ".pt", ".pt2", ".pth", ".bin", ".pkl", ".sft", ".gguf", ".onnx",
     ".json", ".yaml", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".wav", ".mp3", ".flac",
     ".ogg", ".m4a", ".aac", ".mp4", ".webm", ".mov", ".mkv", ".avi", ".npy", ".npz", ".txt"}
)
MODE_NORMAL, MODE_MUTED, MODE_BYPASSED = 0, 2, 4


def load_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def workflow_format(data: Any) -> str | None:
    """"ui" (has nodes + links), "api" ({id: {"class_type", "inputs"}}), or None."""
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        return "ui"
    if isinstance(data, dict) and data and all(
        isinstance(v, dict) and "class_type" in v and isinstance(v.get("inputs", {}), dict) for v in data.values()
    ):
        return "api"
    return None


# ---- object_info inputs -------------------------------------------------------------

def input_spec(node_info: dict, name: str) -> tuple[str, Any, dict] | None:
    """(section, type, options) of one input ("required"/"optional"/"hidden")."""
    for section in ("required", "optional", "hidden"):
        spec = node_info.get("input", {}).get(section, {}).get(name)
        if spec is not None:
            typ = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
            opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
            return section, typ, opts
    return None


def input_names(node_info: dict, sections: tuple[str, ...] = ("required", "optional")) -> list[str]:
    order = node_info.get("input_order")
    names: list[str] = []
    for section in sections:
        if order and section in order:
            names += list(order[section])
        else:
            names += list(node_info.get("input", {}).get(section, {}).keys())
    return names


def combo_options(typ: Any, opts: dict) -> list | None:
    if isinstance(typ, list):
        return typ
    if typ == "COMBO":
        return list(opts.get("options") or [])
    return None


def is_widget(typ: Any, opts: dict) -> bool:
    if opts.get(SOCKET_ONLY_HINT):
        return False
    return isinstance(typ, list) or typ in WIDGET_TYPES


@dataclass
class Slot:
    name: str                 # input name, or "<input>.control_after_generate" etc.
    kind: str                 # "input" | "control" | "filter"
    type: Any = None
    options: dict = field(default_factory=dict)


def widget_slots(node_info: dict, trailing_extras: dict[str, int] | None = None) -> tuple[list[Slot], int]:
    """The positional meaning of `widgets_values`, and how many unchecked trailing extras
    (upload and display widgets) may follow. `trailing_extras` adds {node type: count} for
    nodes whose JS (e.g. the pack's web/) appends widgets."""
    slots: list[Slot] = []
    extras_table = {**TRAILING_EXTRAS, **(trailing_extras or {})}
    uploads = extras_table.get(node_info.get("name"), 0)
    for name in input_names(node_info):
        spec = input_spec(node_info, name)
        if spec is None:
            continue
        _, typ, opts = spec
        if not is_widget(typ, opts):
            continue
        slots.append(Slot(name, "input", typ, opts))
        cag = opts.get("control_after_generate")
        if typ == "INT":
            if cag is None:
                cag = name in ("seed", "noise_seed")
            if cag:
                slots.append(Slot(f"{name}.control_after_generate", "control"))
        elif combo_options(typ, opts) is not None and cag:
            slots.append(Slot(f"{name}.control_after_generate", "control"))
            slots.append(Slot(f"{name}.control_filter_list", "filter"))
        if any(opts.get(f) for f in UPLOAD_FLAGS):
            uploads = max(uploads, MAX_UPLOAD_EXTRAS)
    return slots, uploads


def widget_values_by_name(node: dict, node_info: dict) -> dict[str, Any]:
    """{input name: value} for the widget inputs of one UI node (controls left out)."""
    values = node.get("widgets_values")
    if values is None:
        return {}
    if isinstance(values, dict):
        return {k: v for k, v in values.items() if input_spec(node_info, k) is not None}
    slots, _ = widget_slots(node_info)
    return {s.name: v for s, v in zip(slots, values) if s.kind == "input"}


def check_value(typ: Any, opts: dict, value: Any) -> tuple[str, str] | None:
    """None if the value is accepted, else (kind, message); kind is "invalid" or "missing_file"."""
    options = combo_options(typ, opts)
    if options is not None:
        if opts.get("multi_select"):
            vals = value if isinstance(value, list) else [value]
        else:
            vals = [value]
        for v in vals:
            if v in options:
                continue
            if isinstance(v, str) and (Path(v).suffix.lower() in FILE_EXTENSIONS or any(opts.get(f) for f in UPLOAD_FLAGS)):
                return "missing_file", f"{v!r} is not among the {len(options)} files the server lists"
            shown = options if len(options) <= 12 else options[:12] + ["..."]
            return "invalid", f"{v!r} not in {shown}"
        return None
    if typ == "INT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            return "invalid", f"{value!r} is not an integer"
    elif typ == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "invalid", f"{value!r} is not a finite number"
    elif typ == "BOOLEAN":
        if not isinstance(value, bool):
            return "invalid", f"{value!r} is not a boolean"
        return None
    elif typ in ("STRING", "MARKDOWN", "TEXTAREA"):
        if not isinstance(value, str):
            return "invalid", f"{value!r} is not a string"
        return None
    else:
        return None
    lo, hi = opts.get("min"), opts.get("max")
    if lo is not None and value < lo:
        return "invalid", f"{value!r} < min {lo}"
    if hi is not None and value > hi:
        return "invalid", f"{value!r} > max {hi}"
    return None


# ---- UI format ------------------------------------------------------------------------

def _subgraphs(workflow: dict) -> dict[str, dict]:
    return {sg["id"]: sg for sg in (workflow.get("definitions") or {}).get("subgraphs") or [] if "id" in sg}


def iter_ui_nodes(workflow: dict) -> Iterator[tuple[str, dict]]:
    """(path, node) for every node, inner nodes of subgraph definitions included
    (path: "12" or "subgraph <id>/3")."""
    for node in workflow.get("nodes", []):
        yield str(node.get("id")), node
    for sg_id, sg in _subgraphs(workflow).items():
        for node in sg.get("nodes", []):
            yield f"subgraph {sg_id}/{node.get('id')}", node


def ui_node_types(workflow: dict, include_frontend_only: bool = False) -> set[str]:
    """Node types a UI workflow uses (subgraph instances resolved to their inner nodes)."""
    sgs = _subgraphs(workflow)
    out = set()
    for _, node in iter_ui_nodes(workflow):
        t = node.get("type")
        if t in sgs:
            continue
        if t in FRONTEND_ONLY_TYPES and not include_frontend_only:
            continue
        out.add(t)
    return out


@dataclass
class Problem:
    node: str        # node path, e.g. "12" or "subgraph abc/3"
    node_type: str
    kind: str        # "unknown_node" | "invalid" | "missing_file" | "widget_count" | "link" | ...
    message: str

    def __str__(self) -> str:
        return f"node {self.node} ({self.node_type}): [{self.kind}] {self.message}"


def check_ui_node(path: str, node: dict, object_info: dict,
                  trailing_extras: dict[str, int] | None = None) -> list[Problem]:
    t = node.get("type")
    info = object_info.get(t)
    if info is None:
        return [Problem(path, t, "unknown_node", f"node type {t!r} is not in /object_info")]
    problems: list[Problem] = []
    values = node.get("widgets_values")
    if values is None:
        return problems
    if isinstance(values, dict):
        for name, v in values.items():
            spec = input_spec(info, name)
            if spec is None:
                continue  # packs store extra UI state there
            bad = check_value(spec[1], spec[2], v)
            if bad:
                problems.append(Problem(path, t, bad[0], f"{name}: {bad[1]}"))
        return problems
    slots, extras = widget_slots(info, trailing_extras)
    if not (len(slots) <= len(values) <= len(slots) + extras):
        problems.append(Problem(
            path, t, "widget_count",
            f"{len(values)} widgets_values for {len(slots)} widget slots "
            f"{[s.name for s in slots]}{f' (+ up to {extras} upload extras)' if extras else ''}: {values}",
        ))
        return problems
    for slot, v in zip(slots, values):
        if slot.kind == "control":
            if v not in CONTROL_VALUES:
                problems.append(Problem(path, t, "invalid", f"{slot.name}: {v!r} not in {list(CONTROL_VALUES)}"))
        elif slot.kind == "filter":
            if not isinstance(v, str):
                problems.append(Problem(path, t, "invalid", f"{slot.name}: {v!r} is not a string"))
        else:
            bad = check_value(slot.type, slot.options, v)
            if bad:
                problems.append(Problem(path, t, bad[0], f"{slot.name}: {bad[1]}"))
    return problems


def check_ui_workflow(workflow: dict, object_info: dict,
                      trailing_extras: dict[str, int] | None = None) -> list[Problem]:
    """Every backend node type exists and every widget value is accepted."""
    if workflow_format(workflow) != "ui":
        return [Problem("-", "-", "format", "not a UI-format workflow (needs 'nodes' and 'links')")]
    sgs = _subgraphs(workflow)
    problems: list[Problem] = []
    for path, node in iter_ui_nodes(workflow):
        t = node.get("type")
        if t in FRONTEND_ONLY_TYPES or t in sgs:
            continue
        problems += check_ui_node(path, node, object_info, trailing_extras)
    return problems


def _links(workflow: dict) -> dict[int, tuple[int, int, int, int, Any]]:
    """link id -> (origin node, origin slot, target node, target slot, type)."""
    out = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            out[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"], link.get("type"))
        else:
            lid, o, os_, t, ts, typ = link[:6]
            out[lid] = (o, os_, t, ts, typ)
    return out


def ui_to_api(workflow: dict, object_info: dict) -> dict[str, dict]:
    """Convert a UI workflow to an API graph, as the frontend's "Queue" does for simple
    graphs: widget values by input name, links as [source id, output slot], Reroutes
    followed, PrimitiveNode values inlined, muted nodes (mode 2) dropped with their links,
    bypassed nodes (mode 4) passed through (first input of the output's type). Subgraphs
    and group nodes are not supported (ValueError)."""
    if workflow_format(workflow) != "ui":
        raise ValueError("not a UI-format workflow")
    if _subgraphs(workflow):
        raise ValueError("subgraphs are not supported by ui_to_api")
    nodes = {n["id"]: n for n in workflow["nodes"]}
    links = _links(workflow)

    def resolve(link_id: int, depth: int = 0) -> Any:
        """[source id, slot], a literal value, or None (dropped)."""
        if depth > 64:
            raise ValueError("link cycle")
        if link_id not in links:
            return None
        origin, slot, _, _, typ = links[link_id]
        src = nodes.get(origin)
        if src is None:
            return None
        st = src.get("type")
        mode = src.get("mode", MODE_NORMAL)
        if st == "Reroute":
            ins = src.get("inputs") or []
            return resolve(ins[0]["link"], depth + 1) if ins and ins[0].get("link") is not None else None
        if st == "PrimitiveNode":
            vals = src.get("widgets_values") or []
            return vals[0] if vals else None
        if mode == MODE_MUTED:
            return None
        if mode == MODE_BYPASSED:
            out_type = (src.get("outputs") or [{}] * (slot + 1))[slot].get("type", typ)
            for inp in src.get("inputs") or []:
                if inp.get("link") is not None and inp.get("type") == out_type:
                    return resolve(inp["link"], depth + 1)
            return None
        if st.startswith("workflow>") or st.startswith("workflow/"):
            raise ValueError(f"group node {st!r} is not supported by ui_to_api")
        return [str(origin), slot]

    graph: dict[str, dict] = {}
    for nid, node in nodes.items():
        t = node.get("type")
        if t in FRONTEND_ONLY_TYPES or node.get("mode", MODE_NORMAL) in (MODE_MUTED, MODE_BYPASSED):
            continue
        info = object_info.get(t)
        if info is None:
            raise ValueError(f"node {nid}: type {t!r} is not in /object_info")
        inputs: dict[str, Any] = dict(widget_values_by_name(node, info))
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            name = (inp.get("widget") or {}).get("name") or inp.get("name")
            value = resolve(inp["link"])
            if value is None:
                inputs.pop(name, None)
            else:
                inputs[name] = value
        entry: dict[str, Any] = {"class_type": t, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        graph[str(nid)] = entry
    return graph


# ---- API format -----------------------------------------------------------------------

def check_api_workflow(graph: dict, object_info: dict) -> list[Problem]:
    """Node types exist, required inputs are present, literal values are accepted and
    links point at existing nodes and output slots."""
    problems: list[Problem] = []
    for nid, node in graph.items():
        t = node.get("class_type")
        info = object_info.get(t)
        if info is None:
            problems.append(Problem(nid, t, "unknown_node", f"class_type {t!r} is not in /object_info"))
            continue
        inputs = node.get("inputs", {})
        for name in input_names(info, ("required",)):
            if name not in inputs:
                problems.append(Problem(nid, t, "missing_input", f"required input {name!r} is missing"))
        for name, v in inputs.items():
            spec = input_spec(info, name)
            if spec is None:
                continue  # ComfyUI ignores unknown inputs
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int):
                src = graph.get(v[0])
                if src is None:
                    problems.append(Problem(nid, t, "link", f"{name}: links to missing node {v[0]!r}"))
                    continue
                src_info = object_info.get(src.get("class_type"), {})
                n_out = len(src_info.get("output", []))
                if src_info and not (0 <= v[1] < n_out):
                    problems.append(Problem(nid, t, "link", f"{name}: output slot {v[1]} of node {v[0]} (has {n_out})"))
                continue
            bad = check_value(spec[1], spec[2], v)
            if bad:
                problems.append(Problem(nid, t, bad[0], f"{name}: {bad[1]}"))
    return problems
