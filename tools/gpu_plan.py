"""The GPU plan (issue 14): hallo and sd15 at 512², one 16-frame window, random weights of the real layouts,
in fp16 and bf16, eager and `torch.compile`d, and under memory caps of 12 GB and 8 GB; one table of
s/frame, time to the first frame, MFU (bench/flops.py) and peak VRAM, then the issue's targets.

    python tools/gpu_plan.py                      # on a CUDA GPU; about 8 minutes on an H100 (see SIZING)
    python tools/gpu_plan.py --json plan.json     # also every run's full record
    python tools/gpu_plan.py --smoke              # CPU, tiny models at 64 px, 1 step: checks the plan end to end

Every run is one `portraittalk bench` run (bench/benchmark.py) in a fresh process. hallo runs 40 DDIM steps with its
joint guidance (2 passes: unconditional, audio + face) and no prompt (Hallo has no text); sd15 runs 25 steps
with text guidance 3.5 (2 passes). A capped run decides offloading from memory measured in this plan: without
offloading when the uncapped fp16 run's peak (reserved by the allocator) fits the cap with 5% to spare, else
with block-level group offloading (models/sampling/offload.py); a run without it that still runs out of memory is
run again with it. The caps run fp16, eager: the cap is about memory, which fp16 and bf16 share.

SIZING (an estimate, not a measurement: no GPU was available to write this). One hallo or sd15 call (2 passes
× 16 frames at 64×64 latents) is about 40 TFLOP (bench/flops.py): at 40% of an H100's 989 TFLOP/s, 0.1 s, so
hallo's 40 steps take ~4 s and sd15's 25 ~2.5 s; with the process start (~10 s), the model built on the GPU
(~5 s), a 1-step warm-up, VAE decode and 3 bare forwards, an eager run is ~25 s. A compiled run adds the
UNet's compilation, guessed at ~60-90 s. 8 eager/capped runs (~25-40 s each, offloaded ones slower) and 4
compiled runs make ~7 minutes. The FlopCounterMode cross-check and import timings are left out to save time.
Whatever the real times, the plan keeps to `--budget-s` (480 s): runs are ordered by importance, each gets
the time left as its timeout, and a run whose rough estimate does not fit is listed as skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from comfyui_portraittalk.cli.bench import parser as bench_parser
from comfyui_portraittalk.bench.benchmark import environment, plan, run_case, run_in_subprocess

TARGETS = {"hallo_peak_gb": 9.7, "hallo_s_per_frame": 0.4, "hallo_mfu": 0.40, "sd15_s_per_frame": 0.25}
ESTIMATE_S = {"eager": 30, "compile": 120, "offload": 60}  # rough seconds per run on an H100, for the budget
SMOKE_ESTIMATE_S = {"eager": 1, "compile": 1, "offload": 1}


def family_args(family: str, smoke: Path | None) -> list[str]:
    """The bench arguments of a family: the real layout at 512² (or a tiny model of that layout with `--smoke`)."""
    if smoke is None:
        size, frames, window = "512", "16", "16"
        steps = {"hallo": "40", "sd15": "25"}[family]
        config = family
    else:
        size, frames, window, steps = "64", "4", "4", "1"
        config = str(smoke / family / "model.json")
    args = ["--config", config, "--size", size, "--frames", frames, "--window", window, "--steps", steps,
            "--scale", "1", "--seconds", "--repeats", "3" if smoke is None else "1", "--no-flop-count"]
    if smoke is not None:  # no warm-up: nothing compiles in the smoke plan
        args += ["--threads", "1", "--no-warmup"]
    if family == "hallo":
        return args + ["--prompt", "", "--overlap", "0"]  # joint guidance; Hallo has no text stream
    return args + ["--overlap", "0" if smoke is None else "1"]  # one 16-frame window: no overlap to blend


def smoke_configs(folder: Path) -> Path:
    """Tiny models of the two layouts: sd15 is the tiny family with sd15's guidance; hallo is the tiny family with the
    hallo family's options (face embedding, audio modules, motion frames, joint guidance, skipped layers)."""
    from comfyui_portraittalk.models.config import load_config, merge

    hallo = load_config("hallo")
    blocks = len(load_config("tiny")["unet"]["block_out_channels"])
    overrides = {
        "temporal": {**hallo["temporal"], "skip": [f"down_blocks.{blocks - 1}", "up_blocks.0"]},
        "structure": {"in_channels": hallo["structure"]["in_channels"]},
        "audio": {k: hallo["audio"][k] for k in ("attention", "weights")},
        "identity": {"embed_dim": 32, "encoder": hallo["identity"]["encoder"]},
        "attention": hallo["attention"],
        "sampling": {k: hallo["sampling"][k] for k in ("guidance", "audio_guidance", "text_guidance", "long_audio")},
    }
    sd15 = {"sampling": {k: load_config("sd15")["sampling"][k] for k in ("text_guidance", "audio_guidance")}}
    for family, config in (("sd15", load_config("tiny", sd15)), ("hallo", load_config("tiny", merge({}, overrides)))):
        (folder / family).mkdir(parents=True, exist_ok=True)
        (folder / family / "model.json").write_text(json.dumps(config))
    return folder


def matrix(families=("hallo", "sd15"), dtypes=("fp16", "bf16"), caps=(8.0, 12.0)) -> list[dict]:
    """The runs, most important first: eager in the first dtype, the caps (first dtype, eager), eager in the
    other dtypes, then the compiled runs."""
    first, *others = dtypes
    runs = [{"family": f, "dtype": first, "compile": False, "cap": None} for f in families]
    runs += [{"family": f, "dtype": first, "compile": False, "cap": float(c)} for c in caps for f in families]
    runs += [{"family": f, "dtype": d, "compile": False, "cap": None} for d in others for f in families]
    runs += [{"family": f, "dtype": d, "compile": True, "cap": None} for d in dtypes for f in families]
    return runs


def spec_for(run: dict, device: str, smoke: Path | None, offload: bool) -> dict:
    argv = family_args(run["family"], smoke) + ["--device", device, "--dtype", run["dtype"]]
    if run["compile"]:
        argv.append("--compile")
    if offload:
        argv.append("--offload")
    if run["cap"] is not None and device == "cuda":
        argv += ["--memory-cap-gb", str(run["cap"])]
    (spec,) = plan(bench_parser().parse_args(argv))
    return spec


def wants_offload(run: dict, measured: dict) -> bool:
    """Offload under a cap unless the same family's uncapped fp16 run measurably fits it."""
    if run["cap"] is None:
        return False
    peak = measured.get(run["family"])
    return peak is None or peak > 0.95 * run["cap"]


def execute(run: dict, spec: dict, timeout: float, in_process: bool) -> dict:
    try:
        result = run_case(spec) if in_process else run_in_subprocess(spec, timeout=timeout)
        return {**run, "status": "ok", "result": result}
    except subprocess.TimeoutExpired:
        return {**run, "status": f"timed out after {timeout:.0f} s"}
    except (RuntimeError, ValueError) as err:
        text = str(err)
        oom = "out of memory" in text.lower() or "OutOfMemoryError" in text
        return {**run, "status": "out of memory" if oom else "failed", "error": text[-2000:]}


def run_plan(args) -> dict:
    smoke = None
    if args.smoke:
        smoke = smoke_configs(Path(tempfile.mkdtemp(prefix="gpu_plan_")))
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("gpu_plan: no CUDA GPU here; run with --smoke to check the plan on a CPU")
    estimates = SMOKE_ESTIMATE_S if args.smoke else ESTIMATE_S
    started = time.monotonic()
    measured: dict[str, float] = {}  # family → uncapped fp16 eager peak reserved, GB
    rows = []
    for run in matrix(args.families, args.dtypes, args.caps):
        if args.smoke and run["compile"]:  # compiling takes minutes on a CPU; the GPU plan runs it
            rows.append({**run, "offload": False, "status": "skipped (smoke: no compile on a CPU)"})
            continue
        offload = wants_offload(run, measured)
        for attempt in range(2):
            kind = "compile" if run["compile"] else ("offload" if offload else "eager")
            left = args.budget_s - (time.monotonic() - started)
            if left < estimates[kind]:
                row = {**run, "offload": offload, "status": f"skipped (budget: {left:.0f} s left)"}
                break
            cap = f" cap {run['cap']:g} GB" if run["cap"] else ""
            say(args, f"[plan] {run['family']} {run['dtype']}{' compile' if run['compile'] else ''}{cap}"
                      f"{' offload' if offload else ''} ({left:.0f} s left)")
            row = execute({**run, "offload": offload}, spec_for(run, device, smoke, offload), left, args.smoke)
            if row["status"] == "ok" and run["cap"] is not None and device == "cpu":
                row["status"] = "ok (cap not applied: cpu)"
            if row["status"] == "out of memory" and not offload and run["cap"] is not None:
                rows.append(row)
                offload = True
                continue
            break
        if row["status"] == "ok" and run["cap"] is None and run["dtype"] == args.dtypes[0] and not run["compile"]:
            memory = row["result"]["memory"]
            peak = memory.get("cuda_reserved_peak_mb") or memory.get("cuda_peak_mb")
            if peak:
                measured[run["family"]] = peak * 2**20 / 1e9
        rows.append(row)
    return {"schema": "portraittalk-gpu-plan/1", "smoke": bool(args.smoke), "device": device,
            "budget_s": args.budget_s, "seconds": time.monotonic() - started, "environment": environment(),
            "targets": TARGETS, "rows": rows}


def say(args, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def figures(row: dict) -> dict:
    """The table's figures of one run (None where not measured)."""
    r = row.get("result")
    if r is None:
        return {}
    s, m = r["sampling"], r["memory"]
    peak_tflops = s.get("peak_tflops")
    gb = lambda mb: None if mb is None else mb * 2**20 / 1e9  # noqa: E731
    return {"s_per_frame": r["generation_seconds"] / r["frames"], "sampling_s_per_frame": s["seconds"] / r["frames"],
            "first_frame_s": r.get("first_frame_s"), "mfu": s.get("mfu"),
            "loop_mfu": s["sampling_tflops"] / peak_tflops if peak_tflops else None,
            "tflops": s["bare_tflops"], "peak_gb": gb(m.get("cuda_peak_mb")),
            "reserved_gb": gb(m.get("cuda_reserved_peak_mb")), "rss_peak_mb": m["peak_rss_mb"],
            "warmup_s": sum(v["seconds"] for k, v in r["stages"].items() if k.startswith("warmup_")) or None}


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def check_targets(rows: list[dict]) -> list[dict]:
    """The issue's targets, on the runs that bear on them (only where they ran)."""
    out = []
    ok = [r for r in rows if r["status"].startswith("ok")]
    for r in ok:
        f = figures(r)
        label = f"{r['family']} {r['dtype']}{' compile' if r['compile'] else ''}"
        if r["family"] == "hallo" and r["cap"] is None and not r["offload"] and r["dtype"] == "fp16" and not r["compile"]:
            if f["peak_gb"] is not None:
                out.append({"target": f"hallo 512² fp16 peak VRAM without offload <= {TARGETS['hallo_peak_gb']} GB",
                            "value": f["peak_gb"], "pass": f["peak_gb"] <= TARGETS["hallo_peak_gb"]})
        if r["cap"] is None:
            key = f"{r['family']}_s_per_frame"
            out.append({"target": f"{label}: s/frame <= {TARGETS[key]}", "value": f["s_per_frame"],
                        "pass": f["s_per_frame"] <= TARGETS[key]})
            if r["family"] == "hallo" and f["mfu"] is not None:
                out.append({"target": f"{label}: MFU >= {TARGETS['hallo_mfu']:.0%}", "value": f["mfu"],
                            "pass": f["mfu"] >= TARGETS["hallo_mfu"]})
    capped = [r for r in rows if r["family"] == "hallo" and r["cap"] == 8.0]
    if capped:
        done = any(r["status"].startswith("ok") for r in capped)
        out.append({"target": "hallo completes under an 8 GB cap (offloading where needed)",
                    "value": "; ".join(f"{'offload' if r['offload'] else 'no offload'}: {r['status']}" for r in capped),
                    "pass": done})
    return out


def table(result: dict) -> str:
    cols = ["family", "dtype", "compile", "cap GB", "offload", "status", "s/frame", "sampling s/frame",
            "1st frame s", "MFU", "loop MFU", "TFLOP/s", "peak GB", "reserved GB", "warm-up s"]
    rows = [cols]
    for r in result["rows"]:
        f = figures(r)
        rows.append([r["family"], r["dtype"], "yes" if r["compile"] else "no", _fmt(r["cap"]),
                     "yes" if r.get("offload") else "no", r["status"], _fmt(f.get("s_per_frame")),
                     _fmt(f.get("sampling_s_per_frame")), _fmt(f.get("first_frame_s")), _fmt(f.get("mfu")),
                     _fmt(f.get("loop_mfu")), _fmt(f.get("tflops")), _fmt(f.get("peak_gb")),
                     _fmt(f.get("reserved_gb")), _fmt(f.get("warmup_s"))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    env = result["environment"]
    lines.append("")
    lines.append(f"device: {result['device']} ({env.get('cuda') or 'CPU'}); torch {env['torch']}; "
                 f"plan took {result['seconds']:.0f} s of a {result['budget_s']:.0f} s budget")
    lines.append("s/frame: the whole generation (text to decoded frames) / frames; sampling s/frame: the sampler only;"
                 " 1st frame: from the generation's start to its first decoded frames; MFU: one bare denoiser call"
                 " (analytic FLOPs / time / the device's peak), loop MFU: the whole sampling loop; peak GB:"
                 " torch.cuda.max_memory_allocated, reserved GB: the allocator's peak (what a cap bounds);"
                 " warm-up: the 1-step warm-up generation (torch.compile compiles there)")
    if result["smoke"]:
        lines.append("targets: not checked (smoke plan: tiny models on a CPU)")
    for t in [] if result["smoke"] else check_targets(result["rows"]):
        lines.append(f"[{'PASS' if t['pass'] else 'FAIL'}] {t['target']}: {_fmt(t['value'], 4)}")
    for r in result["rows"]:
        if r.get("error"):
            lines.append(f"{r['family']} {r['dtype']} cap {r['cap']}: {r['error'].strip().splitlines()[-1]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny models at 64 px, 1 step, no compile or caps")
    p.add_argument("--budget-s", type=float, default=480.0, help="the whole plan's time limit (default 480)")
    p.add_argument("--families", nargs="+", choices=["hallo", "sd15"], default=["hallo", "sd15"])
    p.add_argument("--dtypes", nargs="+", choices=["fp16", "bf16"], default=["fp16", "bf16"],
                   help="the first also runs the caps")
    p.add_argument("--caps", nargs="*", type=float, default=[8.0, 12.0], metavar="GB")
    p.add_argument("--json", type=Path, default=None, help="write every run's record here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.budget_s <= 0:
        p.error(f"--budget-s must be above 0, got {args.budget_s:g}")
    if any(cap <= 0 for cap in args.caps):
        p.error(f"--caps must be above 0 GB, got {args.caps}")
    result = run_plan(args)
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
