"""`portraittalk bench train` (training/bench.py) and the shipped Accelerate configs (training/accelerate/).

No timing assertions: the bench is a command that prints figures (docs/training.md). The slow test checks
that the figures exist, are positive and agree with each other.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from comfyui_portraittalk.training import bench
from comfyui_portraittalk.training.train import load_train_config

ACCELERATE_DIR = Path(bench.__file__).parent / "accelerate"


def _records(stage: int, seconds: list[float], rss: list[float], cuda: list[float] | None = None) -> list[dict]:
    return [{"stage": stage, "step": i + 1, "seconds": s, "loss": 0.1, "peak_rss_mb": r,
             **({"peak_cuda_mb": cuda[i]} if cuda else {})} for i, (s, r) in enumerate(zip(seconds, rss))]


def test_stage_figures_leave_out_warm_up_and_count_global_samples():
    # stage 1: slow first two steps (warm-up), then 0.5 s a step; stage 2: 0.25 s a step
    records = _records(1, [3.0, 4.0, 4.5, 5.0, 5.5], [900, 1000, 1010, 1005, 1000]) + \
        _records(2, [1.0, 2.0, 2.25, 2.5], [950, 990, 995, 991], cuda=[10, 30, 20, 20])
    figures = bench.stage_figures(records, rows={1: 2, 2: 1}, frames={1: 3, 2: 6}, processes=2, warmup=2)
    one, two = figures
    assert one["stage"] == 1 and one["timed_steps"] == 3 and one["seconds_per_step"] == pytest.approx(0.5)
    assert one["global_rows"] == 4 and one["samples_per_step"] == 12
    assert one["samples_per_second"] == pytest.approx(24.0)
    assert one["peak_rss_mb"] == 1010 and "peak_cuda_mb" not in one  # warm-up included in the peak
    assert two["seconds_per_step"] == pytest.approx(0.25) and two["samples_per_second"] == pytest.approx(2 * 6 / 0.25)
    assert two["peak_cuda_mb"] == 30
    text = bench.table("tiny_smoke", "cpu", 2, figures)
    assert "first 2 steps of each stage are warm-up" in text and "one target frame of one row" in text
    assert "peak CUDA MiB" in text and "24.00" in text


def test_stage_figures_need_a_line_after_warm_up():
    records = _records(1, [1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="step 2 .*after it"):
        bench.stage_figures(records, {1: 1}, {1: 1}, 1, warmup=2)
    sparse = [r for r in _records(1, [1.0, 2.0, 3.0, 4.0], [1] * 4) if r["step"] % 3 == 0]  # logged every 3 steps
    with pytest.raises(ValueError, match="log every step"):
        bench.stage_figures(sparse, {1: 1}, {1: 1}, 1, warmup=2)


def test_launch_commands(tmp_path):
    args = (tmp_path / "c.json", tmp_path / "o", tmp_path / "d", "1:5,2:5")
    one = bench.launch_command(1, *args, None, [])
    assert one[:4] == [sys.executable, "-m", "comfyui_portraittalk.training", "train"]
    assert one[one.index("--log-every") + 1] == "1" and "--no-resume" in one
    two = bench.launch_command(2, *args, None, ["--foo", "1"])
    assert two[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert two[-2:] == ["--foo", "1"]
    yaml = ACCELERATE_DIR / "multi_gpu.yaml"
    acc = bench.launch_command(4, *args, yaml, [])
    assert acc[1:7] == ["-m", "accelerate.commands.launch", "--config_file", str(yaml), "--num_processes", "4"]
    assert bench.run_env("cpu", 1)["ACCELERATE_USE_CPU"] == "true"
    assert bench.run_env("cuda", None).get("ACCELERATE_USE_CPU") == os.environ.get("ACCELERATE_USE_CPU")


EXPECTED = {"multi_gpu.yaml": "MULTI_GPU", "fsdp_full_shard.yaml": "FSDP", "deepspeed_zero2.yaml": "DEEPSPEED"}


def test_every_shipped_accelerate_config_loads_with_accelerate():
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    shipped = sorted(p.name for p in ACCELERATE_DIR.glob("*.yaml"))
    assert shipped == sorted(EXPECTED)
    readme = (ACCELERATE_DIR / "README.md").read_text()
    for name, kind in EXPECTED.items():
        config = load_config_from_file(str(ACCELERATE_DIR / name))
        assert isinstance(config, ClusterConfig), name
        assert config.distributed_type.value == kind and config.mixed_precision == "bf16", name
        assert not config.use_cpu and name in readme
    fsdp = load_config_from_file(str(ACCELERATE_DIR / "fsdp_full_shard.yaml")).fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True  # FULL_SHARD
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    zero = load_config_from_file(str(ACCELERATE_DIR / "deepspeed_zero2.yaml")).deepspeed_config
    # the YAML's path is relative to the repository root, where users launch
    ds_json = json.loads((ACCELERATE_DIR.parent.parent / zero["deepspeed_config_file"]).read_text())
    assert ds_json["zero_optimization"]["stage"] == 2
    assert isinstance(ds_json["train_micro_batch_size_per_gpu"], int)  # no DataLoader to infer it from


def test_the_fsdp_wrap_classes_are_blocks_of_the_model():
    """accelerate raises at `prepare` if a class named in fsdp_transformer_layer_cls_to_wrap is not in the model."""
    import yaml

    from comfyui_portraittalk.models.files.components import build_components
    from comfyui_portraittalk.models.config import load_config

    names = yaml.safe_load((ACCELERATE_DIR / "fsdp_full_shard.yaml").read_text())["fsdp_config"][
        "fsdp_transformer_layer_cls_to_wrap"].split(",")
    components = build_components(load_config("tiny"))
    for net in (components.identity_net.unet, components.animate_net.unet):
        present = {type(m).__name__ for m in net.modules()}
        assert set(names) <= present, (type(net).__name__, set(names) - present)


@pytest.mark.slow
def test_bench_train_prints_consistent_figures_for_one_and_two_processes(tmp_path):
    out, report = tmp_path / "bench", tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    result = subprocess.run([sys.executable, "-m", "comfyui_portraittalk.cli", "bench", "train", "--steps", "2",
                             "--warmup", "1", "--processes", "1", "2", "--device", "cpu", "--out", str(out),
                             "--json", str(report)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    config = load_train_config("tiny_smoke")
    stages = {s["stage"]: s for s in config["stages"]}
    rows = [line.split() for line in result.stdout.splitlines() if re.match(r"\s+[12]\s+[12]\s", line)]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for processes, stage, size, steps, per_step, rate, peak in rows:
        s = stages[int(stage)]
        assert size == f"{s['rows'] * int(processes)}×{s['frames']}" and int(steps) == 1
        assert float(per_step) > 0 and float(rate) > 0 and float(peak) > 100
        # samples/s = global rows × frames / s/step (to the printed rounding)
        assert float(rate) == pytest.approx(s["rows"] * int(processes) * s["frames"] / float(per_step), rel=2e-3)
    runs = json.loads(report.read_text())["runs"]
    assert [(r["processes"], r["distributed_type"]) for r in runs] == [(1, "NO"), (2, "MULTI_CPU")]
    for run in runs:
        for f in run["figures"]:
            assert f["samples_per_second"] == pytest.approx(f["samples_per_step"] / f["seconds_per_step"])
            assert f["peak_rss_mb"] > 100 and "peak_cuda_mb" not in f
    log = [json.loads(line) for line in (out / "run_2p" / "train_log.jsonl").read_text().splitlines()]
    assert all(r["peak_rss_mb"] > 0 for r in log)
