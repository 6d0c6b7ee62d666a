"""tools/gpu_plan.py: the GPU plan's runs are the issue's (checked without a GPU), and its smoke version runs end
to end on a CPU and prints sane figures. No timing assertions: these are figures, not targets."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_plan():
    spec = importlib.util.spec_from_file_location("gpu_plan", ROOT / "tools" / "gpu_plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_plan_runs_the_issues_matrix_at_512(gpu_plan):
    runs = gpu_plan.matrix()
    assert len(runs) == 12
    assert {(r["family"], r["dtype"], r["compile"]) for r in runs if r["cap"] is None} == {
        (f, d, c) for f in ("hallo", "sd15") for d in ("fp16", "bf16") for c in (False, True)}
    assert {(r["family"], r["cap"]) for r in runs if r["cap"]} == {(f, c) for f in ("hallo", "sd15") for c in (8.0, 12.0)}
    hallo = gpu_plan.spec_for({"family": "hallo", "dtype": "fp16", "compile": False, "cap": 8.0}, "cuda", None, True)
    assert (hallo["config"], hallo["size"], hallo["frames"], hallo["steps"], hallo["window"]) == ("hallo", 512, 16, 40, 16)
    assert hallo["prompt"] == "" and hallo["offload"] and hallo["memory_cap_gb"] == 8.0 and hallo["dtype"] == "fp16"
    sd15 = gpu_plan.spec_for({"family": "sd15", "dtype": "bf16", "compile": True, "cap": None}, "cuda", None, False)
    assert (sd15["config"], sd15["size"], sd15["frames"], sd15["steps"]) == ("sd15", 512, 16, 25)
    assert sd15["prompt"] and sd15["compile"] == "default" and not sd15["offload"] and sd15["memory_cap_gb"] is None
    # a cap offloads unless the uncapped run measurably fits it with 5% to spare
    run = {"family": "hallo", "cap": 8.0}
    assert gpu_plan.wants_offload(run, {}) and gpu_plan.wants_offload(run, {"hallo": 7.9})
    assert not gpu_plan.wants_offload(run, {"hallo": 7.5}) and not gpu_plan.wants_offload({"family": "x", "cap": None}, {})


@pytest.mark.parametrize("family", ["hallo", "sd15"])
def test_the_real_layouts_build_and_split_into_offload_groups(family):
    """Built on the meta device (no memory): the layouts the GPU plan runs, and their offload groups."""
    from comfyui_portraittalk.models.files.components import build_components
    from comfyui_portraittalk.models.config import load_config
    from comfyui_portraittalk.models.sampling.offload import offload_groups

    with torch.device("meta"):
        components = build_components(load_config(family), with_codec=True)
    for name in ("animate_net", "identity_net"):
        unet = getattr(components, name).unet
        groups = offload_groups(unet)
        total = sum(p.numel() * 4 for p in unet.parameters()) + sum(b.numel() * b.element_size() for b in unet.buffers())
        assert sum(size for _, size in groups) == total and len(groups) == 9  # resident + 4 down + 4 up blocks
        assert max(size for _, size in groups[1:]) < total / 3  # one block group is a fraction of the UNet
    params = sum(p.numel() for p in components.animate_net.parameters())
    assert params > 1.2e9  # SD-1.5 + AnimateDiff's motion modules (+ Hallo's audio modules)


def test_bench_refuses_a_memory_cap_without_cuda(capsys):
    from comfyui_portraittalk.cli.bench import main as bench_main

    with pytest.raises(SystemExit):
        bench_main(["--config", "tiny", "--device", "cpu", "--memory-cap-gb", "8", "--quiet"])
    assert "--memory-cap-gb 8 needs --device cuda" in capsys.readouterr().err


def test_the_smoke_plan_runs_end_to_end_on_a_cpu(gpu_plan, tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert gpu_plan.main(["--smoke", "--dtypes", "bf16", "--caps", "8", "--quiet", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for column in ("s/frame", "1st frame s", "MFU", "peak GB", "offload"):
        assert column in printed
    assert "targets: not checked (smoke plan" in printed
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["family"], r["cap"], r["offload"], r["compile"]) for r in rows] == [
        ("hallo", None, False, False), ("sd15", None, False, False), ("hallo", 8.0, True, False),
        ("sd15", 8.0, True, False), ("hallo", None, False, True), ("sd15", None, False, True)]
    assert [r["status"] for r in rows[:4]] == ["ok", "ok", "ok (cap not applied: cpu)", "ok (cap not applied: cpu)"]
    assert all(r["status"].startswith("skipped") for r in rows[4:])
    for row in rows[:4]:
        r, f = row["result"], gpu_plan.figures(row)
        assert r["frames"] == 4 and r["steps"] == 1 and r["size"] == 64 and r["dtype"] == "bfloat16"
        assert r["passes"] == 2  # hallo: joint guidance (unconditional + conditional); sd15: text guidance
        assert 0 < f["sampling_s_per_frame"] < f["s_per_frame"] and math.isfinite(f["s_per_frame"])
        before = sum(r["stages"][k]["seconds"] for k in ("text", "references", "identity_net", "audio", "sampling"))
        # the first frames come after the sampler (the stage clocks leave out the short gaps between stages)
        assert before < f["first_frame_s"] <= r["generation_seconds"] + 0.25
        assert f["tflops"] > 0 and f["mfu"] is None and f["peak_gb"] is None  # no GPU: no MFU, no VRAM
        assert (r["offload"] is not None) == row["offload"]
        if row["offload"]:
            assert r["offload"]["device"] == "cpu" and r["offload"]["use_stream"] is False
            assert r["memory"]["offload_min_device_mb"] > 0
    hallo = rows[0]["result"]
    assert hallo["config"] == "tiny" and hallo["spec"]["prompt"] == ""
