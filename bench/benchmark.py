"""`portraittalk bench`: where the time and memory of a generation go. A command that prints figures, not a test.

    portraittalk bench                                    tiny (64 px) and sd15 (128 px) on this machine
    portraittalk bench --config tiny --frames 48 --scale 1 2 4 --seconds 6 60 --json bench.json
    portraittalk bench --config sd15 --size 512 --frames 16 --device cuda --dtype bf16 --channels-last
    portraittalk bench --config hallo --size 512 --frames 16 --device cuda --dtype fp16 --memory-cap-gb 8 --offload
    portraittalk bench curve                              speed against quality (bench/speed_quality.py)
    portraittalk bench train                              training speed and memory, 1 and 2 processes (training/bench.py)

Every run is one whole generation (text → references → IdentityNet → audio → sampling → decode) in a
fresh Python process, so runs do not share caches or memory. A run reports:

- the time and memory of each stage, and the sampler's time per frame per step, split into the UNet
  (AnimateNet calls) and everything else (scheduler, blending, conditioning, Python);
- the overhead ratio: sampling time / (denoiser calls × one bare AnimateNet call on the same inputs,
  warmed up, median of `--repeats`), in wall time and in process CPU time. CPU time counts only this
  process's work, so on a machine shared with other jobs it is the steadier figure (use `--threads 1`,
  so that idle worker threads add nothing);
- peak memory: RSS after the model is loaded (baseline) and the peak during the generation (on Linux,
  each stage's peak, from VmHWM reset per stage); on a GPU, CUDA's peak allocation per stage;
- the analytic FLOPs of a denoiser call (bench/flops.py), the count from `FlopCounterMode`, and the
  achieved TFLOP/s; on a GPU, model FLOP utilisation against the device's peak;
- time to the first frame (from the generation's start to its first decoded frames) and s/frame.

`--offload` runs AnimateNet and IdentityNet under group offloading (models/sampling/offload.py); `--memory-cap-gb`
caps CUDA's allocator as on a smaller card. tools/gpu_plan.py runs the GPU matrix of issue 14 with these.

Scaling (`--scale 1 2 4`, multiples of `--frames`) and long audio (`--seconds 6 60`) are runs too; the
summary compares their time (both clocks) and peak memory, and checks the issue's targets. `--json` writes
everything. The sampler uses the model config's scheduler (DDIM) and step count unless told otherwise.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..models.config import codec_factor
from .flops import count_flops, denoiser_flops, identity_kv_flops, identity_net_flops

SCHEMA = "portraittalk-bench/1"
RESULT_PREFIX = "PORTRAITTALK-BENCH-RESULT "
ROOT = Path(__file__).resolve().parents[1]  # the repository
PACKAGE = __package__.rsplit(".", 1)[0]  # comfyui_portraittalk

# Dense peak TFLOP/s (no sparsity) by GPU name fragment and dtype, for model FLOP utilisation.
PEAK_TFLOPS = {
    "H200": {"bfloat16": 989.0, "float16": 989.0, "float32": 494.0},  # fp32 matmuls run as TF32 when allowed
    "H100": {"bfloat16": 989.0, "float16": 989.0, "float32": 494.0},
    "A100": {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0},
    "L40S": {"bfloat16": 362.0, "float16": 362.0, "float32": 183.0},
    "RTX 4090": {"bfloat16": 165.0, "float16": 165.0, "float32": 82.6},
}

GENERATION_STAGES = ("text", "references", "identity_net", "audio", "sampling", "decode")
TARGETS = {"overhead_ratio": 1.10, "double_time": 2.1, "double_memory": 1.15, "long_memory": 0.15,
           "import_seconds": 0.5}


# ------------------------------------------------------------------------------------------- clocks


def clocks() -> tuple[float, float]:
    """(wall, process CPU) time now. CPU time counts this process's threads only, so it is the steadier
    figure on a machine shared with other work (with one torch thread it is the work itself)."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


# ------------------------------------------------------------------------------------------- memory


def _proc_status() -> dict[str, int] | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return {k: int(v) * 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}


def rss_bytes() -> int:
    status = _proc_status()
    if status and "VmRSS" in status:
        return status["VmRSS"]
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """The process's RSS high-water mark (since the last `reset_peak_rss`)."""
    status = _proc_status()
    if status and "VmHWM" in status:
        return status["VmHWM"]
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Linux: reset the RSS high-water mark (VmHWM and ru_maxrss) to the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _mb(n: float | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


class Stages:
    """Times and memory per stage of one generation."""

    def __init__(self, device):
        import torch

        self.torch, self.device = torch, device
        self.cuda = device.type == "cuda"
        self.records: dict[str, dict] = {}
        self.can_reset = reset_peak_rss()

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self, name: str):
        self.sync()
        self.can_reset = reset_peak_rss() and self.can_reset
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)
        start = clocks()
        record: dict = {}
        yield record
        self.sync()
        record["seconds"], record["cpu_seconds"] = since(start)
        record["rss_mb"] = _mb(rss_bytes())
        record["rss_peak_mb"] = _mb(peak_rss_bytes())
        if self.cuda:
            record["cuda_peak_mb"] = _mb(self.torch.cuda.max_memory_allocated(self.device))
            record["cuda_allocated_mb"] = _mb(self.torch.cuda.memory_allocated(self.device))
            record["cuda_reserved_peak_mb"] = _mb(self.torch.cuda.max_memory_reserved(self.device))
        self.records[name] = record


# ------------------------------------------------------------------------------------------- inputs


def speechlike(seconds: float, sr: int = 16000):
    """A deterministic speech-like test signal: syllable-rate bursts of a voiced tone."""
    import numpy as np

    t = np.arange(int(round(seconds * sr))) / sr
    envelope = (np.sin(2 * np.pi * 3.1 * t) > 0.1).astype(np.float32) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.37 * t))
    wave = (0.3 * np.sin(2 * np.pi * 160 * t) + 0.1 * np.sin(2 * np.pi * 640 * t)) * envelope
    return wave.astype(np.float32), sr


def reference_image(size: int):
    import numpy as np

    yy, xx = np.mgrid[:size, :size] / max(1, size - 1)
    face = ((xx - 0.5) ** 2 + (yy - 0.45) ** 2 < 0.1).astype(np.float32)
    return np.stack([0.3 + 0.5 * face * xx, 0.3 + 0.4 * face, 0.5 * yy], -1).astype(np.float32)


@contextmanager
def _no_context():
    yield


def build_pipeline(spec: dict, device):
    """The model of a run: random weights from the config (the compute does not depend on them). The
    sd15 family brings no text or image encoder of its own (ComfyUI's CLIP provides them), so its
    runs take random text and image embeddings; its VAE and wav2vec2 are built from their configs."""
    import torch

    from ..models.files.components import build_components
    from ..models.config import load_config
    from ..models.families import family_of
    from ..models.pipeline import PortraitTalkPipeline

    overrides = {"video": {"size": spec["size"]}} if spec.get("size") else None
    config = load_config(spec["config"], overrides)
    torch.manual_seed(0)
    family = family_of(config)
    # on a GPU, initialise there: the full-size families' random init takes minutes on a CPU
    with torch.device(device) if device.type == "cuda" else _no_context():
        components = build_components(config, with_codec=True)
    audio_encoder = None
    if family.pretrained_audio_encoder:  # its weights are the user's: a random one of the configured shape
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        from ..models.networks.audio import Wav2Vec2Encoder

        audio_encoder = Wav2Vec2Encoder(Wav2Vec2Model(Wav2Vec2Config(**config["audio"]["wav2vec2"])).to(device))
    pipe = PortraitTalkPipeline(components, device=device, audio_encoder=audio_encoder)
    own = not family.pretrained_encoders
    pipe.benchmark_notes = [] if own else ["text and image embeddings are random (no own encoders)"]
    return pipe


# ------------------------------------------------------------------------------------------ one run


class DenoiserTimer:
    """Wraps AnimateNet's forward: times every call (wall and CPU, synchronised on a GPU) and keeps the
    inputs of the widest call for the bare-forward measurement."""

    def __init__(self, module, stages: Stages):
        self.module, self.stages = module, stages
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.captured = None

    def __enter__(self):
        original = self.module.forward
        self.previous = self.module.__dict__.get("forward")  # a hook's wrapper (e.g. diffusers'), kept

        def timed(latents, *args, **kwargs):
            if self.captured is None or latents.shape[1] > self.captured[0][0].shape[1]:
                self.captured = ((latents.clone(), *args), kwargs)
            self.stages.sync()
            start = clocks()
            out = original(latents, *args, **kwargs)
            self.stages.sync()
            wall, cpu = since(start)
            self.times.append(wall)
            self.cpu_times.append(cpu)
            return out

        self.module.forward = timed
        return self

    def __exit__(self, *exc):
        if self.previous is None:
            del self.module.forward
        else:
            self.module.forward = self.previous


def _generate(pipe, spec: dict, stages: Stages, num_frames: int, steps: int, prefix: str = ""):
    """The stages of `PortraitTalkPipeline.__call__`, one by one, under the stage recorder."""
    import torch

    from ..models.files.components import image_embed_dim
    from ..models.sampling.sampler import SamplingOptions

    defaults = pipe.config["sampling"]
    fps = pipe.fps
    wave, sr = speechlike(num_frames / fps)
    own_text = pipe.components.text_encoder is not None and pipe.components.text_encoder._tokenize is not None
    gen = torch.Generator().manual_seed(0)
    stages.sync()
    started, first = clocks()[0], []
    with stages(prefix + "text"):
        if own_text:
            text, null_text = pipe.encode_prompt(spec.get("prompt"))
        else:
            shape = (1, int(pipe.config["text"]["max_length"]), int(pipe.config["unet"]["cross_attention_dim"]))
            null_text = torch.randn(shape, generator=gen).to(pipe.device, pipe.dtype)
            text = torch.randn(shape, generator=gen).to(pipe.device, pipe.dtype) if spec.get("prompt") else None
    regions = None
    with stages(prefix + "references"):
        latents, pixels = pipe.encode_references([reference_image(pipe.size)] * int(spec.get("references", 1)))
        if pipe.family.arcface_identity:  # Hallo: a face embedding and the face regions
            from ..models.networks.hallo_masks import region_masks

            regions = region_masks(pipe.size, pipe.size)  # the centre box, as without a face landmarker
        if pipe.components.image_encoder is not None and regions is None:
            tokens = pipe.identity_tokens(pixels)
        else:
            dim = image_embed_dim(pipe.config)
            tokens = pipe.identity_tokens(image_embeds=torch.randn(pixels.shape[0], dim, generator=gen))
    with stages(prefix + "identity_net"):
        identity = pipe.encode_identity(latents, tokens, text, null_text, regions)
    with stages(prefix + "audio"):
        embeds = pipe.encode_audio(wave, sr)
    if embeds.num_frames != num_frames:
        raise RuntimeError(f"audio gave {embeds.num_frames} frames, expected {num_frames}")
    cond = pipe.conditioning(null_text=null_text, text=text, identity=identity, audio=embeds,
                             identity_scale=float(spec.get("identity_scale", 1.0)))
    options = SamplingOptions(
        num_frames=num_frames, steps=steps, scheduler=spec.get("scheduler") or defaults["scheduler"], seed=0,
        text_guidance=defaults["text_guidance"] if spec.get("text_guidance") is None else spec["text_guidance"],
        audio_guidance=defaults["audio_guidance"] if spec.get("audio_guidance") is None else spec["audio_guidance"],
        window=spec.get("window") or defaults["window"],
        overlap=defaults["overlap"] if spec.get("overlap") is None else spec["overlap"])
    with stages(prefix + "sampling"):
        out = pipe.sample(cond, options)
    with stages(prefix + "decode"):
        frames = pipe.decode(out, chunk=int(spec.get("decode_chunk", 8)),
                             on_chunk=lambda done, total: first or first.append(clocks()[0] - started))
    stages.records[prefix + "decode"]["first_frame_s"] = first[0] if first else None
    return cond, options, frames


def run_case(spec: dict) -> dict:
    """One generation, measured; returns a JSON-able dict. Meant to run in a fresh process."""
    started = time.perf_counter()
    import torch

    from .acceleration import accelerate
    from ..models.sampling.sampler import context_windows

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
    stages = Stages(device)
    with stages("load"):
        pipe = build_pipeline(spec, device)
    accel = None
    if spec.get("dtype") not in (None, "fp32") or spec.get("channels_last") or spec.get("compile"):
        with stages("accelerate"):
            accel = accelerate(pipe, dtype=spec.get("dtype"), channels_last=bool(spec.get("channels_last")),
                               compile=spec.get("compile") or False)
    offload = None
    if spec.get("offload"):  # last: after the dtype, channels-last and compile (models/sampling/offload.py)
        from ..models.sampling.offload import offload_pipeline

        with stages("offload"):
            offload = offload_pipeline(pipe, device, num_blocks_per_group=int(spec.get("offload_blocks") or 1))
    cap = _memory_cap(spec, device)
    baseline_rss = rss_bytes()
    baseline_cuda = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
    frames, steps = int(spec["frames"]), int(spec.get("steps") or pipe.config["sampling"]["steps"])
    if spec.get("warmup", True):  # a small generation first: one window, one step
        window = int(spec.get("window") or pipe.config["sampling"]["window"])
        _generate(pipe, spec, stages, min(frames, window), 1, prefix="warmup_")
    warm_rss = rss_bytes()
    with DenoiserTimer(pipe.components.animate_net, stages) as timer, _profiler(spec, device, pipe, frames):
        cond, options, video = _generate(pipe, spec, stages, frames, steps)
    del video
    bare, bare_cpu, counted = _bare_forward(pipe.components.animate_net, timer.captured, stages, spec)
    generation = [k for k in stages.records if k in GENERATION_STAGES]
    dtype = str(pipe.dtype).replace("torch.", "")
    memory = {
        "baseline_rss_mb": _mb(baseline_rss),  # after the model is loaded
        "warm_rss_mb": _mb(warm_rss),  # after the warm-up generation (libraries loaded, caches filled)
        # the peak of the warm-up and the measured generation (the same in every run of a comparison)
        "peak_rss_mb": max(r["rss_peak_mb"] for k, r in stages.records.items() if k not in ("load", "accelerate", "offload")),
        "per_stage_peaks": stages.can_reset,
    }
    memory["growth_mb"] = round(memory["peak_rss_mb"] - _mb(baseline_rss), 1)
    if device.type == "cuda":
        memory["cuda_baseline_mb"] = _mb(baseline_cuda)
        memory["cuda_peak_mb"] = max(stages.records[k].get("cuda_peak_mb", 0) for k in generation)
        # what the allocator held (the cap bounds this one), and what it gives back: the driver's view is higher
        memory["cuda_reserved_peak_mb"] = max(stages.records[k].get("cuda_reserved_peak_mb", 0) for k in generation)
    memory["cap_gb"] = cap
    if offload is not None:
        memory["offload_min_device_mb"] = _mb(offload["min_device_bytes"])
    refs = int(spec.get("references", 1))
    conditions = 2 if cond.text is not None else 1
    latent = pipe.size // codec_factor(pipe.config)
    return {
        "spec": spec,
        "config": pipe.family.name,
        "size": pipe.size,
        "latent": [int(pipe.config["unet"]["in_channels"]), latent, latent],
        "frames": frames,
        "audio_seconds": frames / pipe.fps,
        "steps": steps,
        "scheduler": options.scheduler,
        "passes": timer.captured[0][0].shape[0],
        "window": options.window,
        "overlap": options.overlap,
        "windows": len(context_windows(frames, options.window, options.overlap)),
        "device": str(device),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "acceleration": accel,
        "notes": getattr(pipe, "benchmark_notes", []),
        "stages": stages.records,
        "sampling": sampling_figures(pipe.config, latent, cond, options, stages.records["sampling"], timer,
                                     bare, bare_cpu, counted, refs, spec.get("peak_tflops") or _device_peak(device, dtype)),
        "memory": memory,
        "identity_net": {"seconds": stages.records["identity_net"]["seconds"],
                         "rss_peak_mb": stages.records["identity_net"]["rss_peak_mb"],
                         "cuda_peak_mb": stages.records["identity_net"].get("cuda_peak_mb"),
                         "flops": identity_net_flops(pipe.config, latent, references=refs, conditions=conditions).total,
                         "kv_flops_once": identity_kv_flops(pipe.config, latent, references=refs, conditions=conditions)},
        "generation_seconds": sum(stages.records[k]["seconds"] for k in generation),
        # from the generation's start until its first frames are decoded (on the CPU)
        "first_frame_s": stages.records["decode"].get("first_frame_s"),
        "offload": None if offload is None else {k: v for k, v in offload.items() if k != "groups"},
        "generation_cpu_seconds": sum(stages.records[k]["cpu_seconds"] for k in generation),
        "wall_seconds": time.perf_counter() - started,
    }


def _memory_cap(spec: dict, device) -> float | None:
    """`--memory-cap-gb`: the CUDA allocator may hold at most this many GB (10⁹ bytes) from here on, as on a
    smaller card (the CUDA context is not counted). The cache is emptied first, so that the model's build
    does not count against the generation."""
    cap = spec.get("memory_cap_gb")
    if cap is None:
        return None
    if device.type != "cuda":
        raise ValueError(f"--memory-cap-gb {cap}: a memory cap needs a CUDA device, not {device}")
    import torch

    total = torch.cuda.get_device_properties(device).total_memory
    if not 0 < cap * 1e9 <= total:
        raise ValueError(f"--memory-cap-gb {cap}: must be above 0 and at most the device's {total / 1e9:.1f} GB")
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap * 1e9 / total, device)
    return float(cap)


def _bare_forward(net, captured, stages: Stages, spec: dict) -> tuple[list[float], list[float], float | None]:
    """AnimateNet alone on the captured call's inputs, warmed up: wall and CPU seconds of `repeats` runs,
    and `FlopCounterMode`'s count of one call (None with `count_flops` off)."""
    import torch

    args, kwargs = captured
    wall, cpu = [], []
    with torch.no_grad():
        for _ in range(int(spec.get("bare_warmup", 1))):
            net(*args, **kwargs)
        for _ in range(int(spec.get("repeats", 5))):
            stages.sync()
            start = clocks()
            net(*args, **kwargs)
            stages.sync()
            w, c = since(start)
            wall.append(w)
            cpu.append(c)
        counted = count_flops(net, *args, **kwargs)[0] if spec.get("count_flops", True) else None
    return wall, cpu, counted


def sampling_figures(config: dict, latent: int, cond, options, record: dict, timer: DenoiserTimer, bare: list[float],
                     bare_cpu: list[float], counted: float | None, references: int, peak_tflops: float | None) -> dict:
    """The sampler's time per frame per step (UNet and the rest), overhead ratios and FLOP rates."""
    from ..models.sampling.sampler import context_windows

    passes = timer.captured[0][0].shape[0]  # the guidance passes batched in one call (the sampler decides them)

    def flops(frames: int):
        return denoiser_flops(config, latent, frames, passes, references=references, text=cond.scales.text != 0,
                              identity=cond.scales.identity != 0, audio=cond.scales.audio != 0)

    analytic = flops(timer.captured[0][0].shape[1])
    windows = context_windows(options.num_frames, options.window, options.overlap)
    flops_sampling = sum(flops(end - start).total for start, end in windows) * options.steps
    calls = len(timer.times)
    seconds, cpu_seconds = record["seconds"], record["cpu_seconds"]
    unet, unet_cpu = sum(timer.times), sum(timer.cpu_times)
    bare_s, bare_cpu_s = statistics.median(bare), statistics.median(bare_cpu)
    frame_steps = options.num_frames * options.steps
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "unet_seconds": unet,
        "unet_cpu_seconds": unet_cpu,
        "other_seconds": seconds - unet,
        "per_frame_step_s": seconds / frame_steps,
        "unet_per_frame_step_s": unet / frame_steps,
        "other_per_frame_step_s": (seconds - unet) / frame_steps,
        "denoiser_calls": calls,
        "calls_per_step": len(windows),
        "call_median_s": statistics.median(timer.times),
        "bare_forward_s": bare_s,
        "bare_forward_runs_s": bare,
        "bare_forward_cpu_s": bare_cpu_s,
        # the figure: sampling / (calls × one bare forward), on each clock
        "overhead_ratio": seconds / (calls * bare_s),
        "overhead_ratio_cpu": cpu_seconds / (calls * bare_cpu_s),
        # sampling / its own UNet time: the loop's overhead within one period (robust to load changes)
        "loop_overhead": seconds / unet,
        "flops_per_call": analytic.total,
        "flops_per_call_counted": counted,
        "flops_per_frame_pass": analytic.per_frame_pass,
        "flops_parts": analytic.as_dict()["parts"],
        "bare_tflops": analytic.total / bare_s / 1e12,
        "sampling_tflops": flops_sampling / seconds / 1e12,
        "peak_tflops": peak_tflops,
        "mfu": analytic.total / bare_s / 1e12 / peak_tflops if peak_tflops else None,
    }


@contextmanager
def _profiler(spec: dict, device, pipe, frames: int):
    """torch.profiler over the measured generation when `--profile DIR` is given; its op table goes to DIR."""
    if not spec.get("profile"):
        yield
        return
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        yield
    path = Path(spec["profile"]) / f"profile_{pipe.config['family']}_{pipe.size}px_{frames}f.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.write_text(prof.key_averages().table(sort_by=sort, row_limit=40))


def _device_peak(device, dtype: str) -> float | None:
    if device.type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    for key, table in PEAK_TFLOPS.items():
        if key in name:
            return table.get(dtype)
    return None


# --------------------------------------------------------------------------------------- the command


def worker(spec_json: str) -> int:
    """A run in this process, its result on stdout: `portraittalk bench --worker SPEC` (run_in_subprocess)."""
    result = run_case(json.loads(spec_json))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def run_in_subprocess(spec: dict, timeout: float | None = None) -> dict:
    cmd = [sys.executable, "-m", f"{PACKAGE}.cli", "bench", "--worker", json.dumps(spec)]
    env = dict(os.environ)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"benchmark run {spec} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def import_time(module: str, repeats: int = 5, setup: str = "", label: str | None = None) -> dict:
    """Seconds to import `module` in a fresh interpreter (median of `repeats`), after running `setup`."""
    code = f"{setup}\nimport time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            return {"module": label or module, "error": out.stderr.strip().splitlines()[-1:]}
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return {"module": label or module, "seconds": statistics.median(times), "runs": times}


def comfyui_root() -> Path | None:
    """A ComfyUI tree to time the nodes' import in: $COMFYUI_PATH, or the one the test suite builds."""
    env = os.environ.get("COMFYUI_PATH")
    cache = Path(os.environ.get("PORTRAITTALK_CACHE") or Path.home() / ".cache" / "comfyui-portraittalk")
    for root in ([Path(env)] if env else []) + sorted(cache.glob("comfyui-*"), reverse=True):
        if (root / "comfy_api").is_dir():
            return root
    return None


def import_times(package: str) -> list[dict]:
    """What ComfyUI imports at start-up (the pack; its nodes, once torch and comfy_api are loaded, when a
    ComfyUI tree is at hand), and the model code that loads on first use (torch, diffusers)."""
    out = [import_time(package), import_time(f"{package}.models")]
    root = comfyui_root()
    if root is not None:
        setup = (f"import sys; sys.path.insert(0, {str(root)!r}); import torch, comfy.cli_args; "
                 "comfy.cli_args.args.cpu = True; import comfy_api.v0_0_2")
        out.append(import_time(f"{package}.nodes", 3, setup, label=f"{package}.nodes (after torch + comfy_api)"))
    out.append(import_time(f"{package}.models.pipeline", 3, label=f"{package}.models.pipeline (torch, diffusers)"))
    return out


def plan(args) -> list[dict]:
    """The runs: per config, the base frames × each scale, plus (tiny) each audio duration."""
    import torch

    from ..models.config import load_config

    cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    sizes = args.size or []
    specs = []
    for i, family in enumerate(args.config):
        tiny = family == "tiny"
        size = sizes[i] if i < len(sizes) else (64 if tiny else (512 if cuda else 128))
        frames = args.frames or (48 if tiny else (16 if cuda else 4))
        scales = args.scale if args.scale is not None else ([1, 2, 4] if tiny else [1])
        steps = args.steps or (None if tiny or cuda else 2)
        base = {"config": family, "size": size, "steps": steps, "scheduler": args.scheduler, "prompt": args.prompt,
                "text_guidance": args.text_guidance, "audio_guidance": args.audio_guidance, "window": args.window,
                "overlap": args.overlap, "references": args.references, "device": args.device, "dtype": args.dtype,
                "channels_last": args.channels_last, "compile": args.compile, "threads": args.threads,
                "repeats": args.repeats, "warmup": not args.no_warmup, "count_flops": not args.no_flop_count,
                "peak_tflops": args.peak_tflops, "profile": str(args.profile) if args.profile else None,
                "offload": args.offload, "offload_blocks": args.offload_blocks, "memory_cap_gb": args.memory_cap_gb}
        for scale in scales:
            specs.append({**base, "frames": frames * scale, "role": f"scale {scale}x", "scale": scale,
                          "base_frames": frames})
        fps = float(load_config(family)["video"]["fps"])
        for seconds in args.seconds if args.seconds is not None else ([6, 60] if tiny else []):
            specs.append({**base, "frames": math.ceil(seconds * fps - 1e-6), "role": f"audio {seconds:g}s",
                          "seconds": seconds})
    return specs


def _median(runs: list[dict], *keys: str) -> float:
    """The median over repeated runs (`--rounds`) of one figure, found by its keys."""
    values = []
    for run in runs:
        for key in keys:
            run = run[key]
        values.append(run)
    return statistics.median(values)


def _ratio(later: list[dict], earlier: list[dict], *keys: str) -> float:
    return _median(later, *keys) / _median(earlier, *keys)


def summarise(runs: list[dict], import_info: dict | None) -> dict:
    """Scaling ratios (each run against the run with twice its frames), long-audio memory (each audio
    duration against the next longer one) and the issue's targets. With several rounds, each figure is
    the median of its runs."""
    scaling, long_audio, targets = [], [], []
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["config"], run["size"], run["dtype"]), []).append(run)
    for (family, size, _), group in groups.items():
        scaled: dict[int, list[dict]] = {}
        for r in group:
            if "scale" in r["spec"]:
                scaled.setdefault(r["frames"], []).append(r)
        for frames, base in sorted(scaled.items()):
            double = scaled.get(2 * frames)
            if double is not None:
                scaling.append({"config": family, "size": size, "frames": frames, "frames_2x": 2 * frames,
                                "rounds": min(len(base), len(double)),
                                "time_ratio": _ratio(double, base, "sampling", "seconds"),
                                "time_ratio_cpu": _ratio(double, base, "sampling", "cpu_seconds"),
                                "generation_time_ratio": _ratio(double, base, "generation_seconds"),
                                "peak_rss_ratio": _ratio(double, base, "memory", "peak_rss_mb"),
                                "growth_mb": [_median(base, "memory", "growth_mb"),
                                              _median(double, "memory", "growth_mb")]})
        timed: dict[float, list[dict]] = {}
        for r in group:
            if "seconds" in r["spec"]:
                timed.setdefault(r["spec"]["seconds"], []).append(r)
        durations = sorted(timed)
        for short_s, long_s in zip(durations, durations[1:]):
            short, long = timed[short_s], timed[long_s]
            long_audio.append({"config": family, "size": size, "seconds": [short_s, long_s],
                               "rounds": min(len(short), len(long)),
                               "peak_rss_mb": [_median(short, "memory", "peak_rss_mb"),
                                               _median(long, "memory", "peak_rss_mb")],
                               "growth_mb": [_median(short, "memory", "growth_mb"),
                                             _median(long, "memory", "growth_mb")],
                               "peak_rss_ratio": _ratio(long, short, "memory", "peak_rss_mb"),
                               "time_ratio": _ratio(long, short, "generation_seconds")})
    cases: dict[tuple, list[dict]] = {}  # the rounds of each tiny CPU case
    for r in runs:
        if r["config"] == "tiny" and r["device"] == "cpu":
            cases.setdefault((r["size"], r["dtype"], r["frames"], tuple(sorted(r["spec"]))), []).append(r)
    for clock, key in (("wall", "overhead_ratio"), ("CPU time", "overhead_ratio_cpu")):
        if cases:
            worst = max(_median(case, "sampling", key) for case in cases.values())
            targets.append({"target": f"overhead ratio <= 1.10 (tiny, CPU, {clock}; worst case)", "value": worst,
                            "pass": worst <= TARGETS["overhead_ratio"]})
    for s in (s for s in scaling if s["config"] == "tiny"):
        doubling = f"2x frames ({s['frames']} -> {s['frames_2x']})"
        for clock, key in (("wall", "time_ratio"), ("CPU time", "time_ratio_cpu")):
            targets.append({"target": f"{doubling}: sampling time <= 2.1x ({clock})", "value": s[key],
                            "pass": s[key] <= TARGETS["double_time"]})
        targets.append({"target": f"{doubling}: peak memory <= 1.15x", "value": s["peak_rss_ratio"],
                        "pass": s["peak_rss_ratio"] <= TARGETS["double_memory"]})
    for a in (a for a in long_audio if a["config"] == "tiny"):
        targets.append({"target": f"{a['seconds'][1]:g} s audio in the peak memory of {a['seconds'][0]:g} s (+-15%)",
                        "value": a["peak_rss_ratio"], "pass": abs(a["peak_rss_ratio"] - 1) <= TARGETS["long_memory"]})
    if import_info and "seconds" in import_info:
        targets.append({"target": "import comfyui_portraittalk < 0.5 s", "value": import_info["seconds"],
                        "pass": import_info["seconds"] < TARGETS["import_seconds"]})
    return {"scaling": scaling, "long_audio": long_audio, "targets": targets}


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(result: dict) -> str:
    runs = result["runs"]
    cols = [("config", lambda r: r["config"]), ("size", lambda r: r["size"]), ("frames", lambda r: r["frames"]),
            ("steps", lambda r: r["steps"]), ("passes", lambda r: r["passes"]), ("calls", lambda r: r["sampling"]["denoiser_calls"]),
            ("s/frame", lambda r: r["generation_seconds"] / r["frames"]), ("1st frame s", lambda r: r.get("first_frame_s")),
            ("s/frame/step", lambda r: r["sampling"]["per_frame_step_s"]),
            ("unet", lambda r: r["sampling"]["unet_per_frame_step_s"]),
            ("other", lambda r: r["sampling"]["other_per_frame_step_s"]),
            ("bare fwd s", lambda r: r["sampling"]["bare_forward_s"]),
            ("overhead", lambda r: r["sampling"]["overhead_ratio"]),
            ("ovh cpu", lambda r: r["sampling"]["overhead_ratio_cpu"]),
            ("loop", lambda r: r["sampling"]["loop_overhead"]),
            ("base MB", lambda r: r["memory"]["baseline_rss_mb"]), ("peak MB", lambda r: r["memory"]["peak_rss_mb"]),
            ("cuda MB", lambda r: r["memory"].get("cuda_peak_mb")),
            ("idnet s", lambda r: r["stages"]["identity_net"]["seconds"]),
            ("audio s", lambda r: r["stages"]["audio"]["seconds"]), ("decode s", lambda r: r["stages"]["decode"]["seconds"]),
            ("TFLOP/s", lambda r: r["sampling"]["bare_tflops"]), ("MFU", lambda r: r["sampling"]["mfu"])]
    rows = [[name for name, _ in cols]] + [[_fmt(get(r)) for _, get in cols] for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(cols))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("time per frame per step in seconds (sampling = unet + other); overhead = sampling / (calls x bare fwd)"
                 " in wall time, ovh cpu the same in process CPU time; loop = sampling / its UNet time; MB = RSS, MiB")
    for r in runs:
        f = r["sampling"]
        lines.append(f"{r['config']} {r['size']}px {r['frames']} frames: FLOPs/call analytic {f['flops_per_call'] / 1e9:.2f} G"
                     + (f", counted {f['flops_per_call_counted'] / 1e9:.2f} G" if f["flops_per_call_counted"] else "")
                     + f"; IdentityNet {r['stages']['identity_net']['seconds']:.3f} s, audio {r['stages']['audio']['seconds']:.3f} s,"
                     f" decode {r['stages']['decode']['seconds']:.3f} s (peak RSS {r['stages']['decode']['rss_peak_mb']} MB)")
    s = result["summary"]
    for row in s["scaling"]:
        lines.append(f"scaling {row['config']} {row['frames']} -> {row['frames_2x']} frames: sampling time x{row['time_ratio']:.3f}"
                     f" (CPU time x{row['time_ratio_cpu']:.3f}), peak RSS x{row['peak_rss_ratio']:.3f}")
    for row in s["long_audio"]:
        lines.append(f"long audio {row['config']} {row['seconds'][0]:g} s -> {row['seconds'][1]:g} s: peak RSS "
                     f"{row['peak_rss_mb'][0]} -> {row['peak_rss_mb'][1]} MB (x{row['peak_rss_ratio']:.3f}),"
                     f" time x{row['time_ratio']:.2f}")
    if result.get("import"):
        imp = result["import"]
        lines.append("import: " + ", ".join(f"{i['module']} {_fmt(i.get('seconds'))} s" for i in imp))
    for t in s["targets"]:
        lines.append(f"[{'PASS' if t['pass'] else 'FAIL'}] {t['target']}: {_fmt(t['value'], 4)}")
    return "\n".join(lines)


def environment() -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import diffusers

        env["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip() or None
    except OSError:
        env["commit"] = None
    env["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        env["loadavg"] = os.getloadavg()
    except OSError:
        pass
    return env


