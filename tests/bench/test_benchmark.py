"""The benchmark harness runs and reports its fields; the analytic FLOP count equals PyTorch's count.

No timing assertions: `portraittalk bench` is a command that prints figures (docs/performance.md).
"""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from comfyui_portraittalk.bench.benchmark import GENERATION_STAGES
from comfyui_portraittalk.models.config import load_config
from comfyui_portraittalk.bench.flops import (count_flops, denoiser_flops, identity_kv_flops,
                                               identity_net_flops)
from comfyui_portraittalk.models.sampling.sampler import WindowDenoiser, guidance_passes


@pytest.fixture(scope="module")
def tiny_streams(tiny_pipe, reference_images, speechlike):
    """A prompt, one reference's IDENTITY and 8 frames of audio for the shared tiny pipeline."""
    pipe = tiny_pipe
    text, null = pipe.encode_prompt("a face with glasses")
    latents, pixels = pipe.encode_references([reference_images[0]])
    tokens = pipe.identity_tokens(pixels)
    identity = pipe.encode_identity(latents, tokens, text, null)
    wave, sr = speechlike
    audio = pipe.encode_audio(wave[: 8 * 640], sr)
    return {"text": text, "null": null, "identity": identity, "audio": audio, "latents": latents, "tokens": tokens}


@pytest.mark.parametrize("s_txt,s_a", [(1.0, 1.0), (2.5, 1.0), (2.5, 2.0)])
def test_analytic_flops_equal_flop_counter_on_tiny(tiny_pipe, tiny_streams, s_txt, s_a):
    s = tiny_streams
    cond = tiny_pipe.conditioning(null_text=s["null"], text=s["text"], identity=s["identity"], audio=s["audio"])
    passes = guidance_passes(s_txt, s_a, True, True)
    denoiser = WindowDenoiser(tiny_pipe.components.animate_net, cond, passes, torch.float32, torch.device("cpu"))
    latents = torch.randn(8, *tiny_pipe.latent_shape(), generator=torch.Generator().manual_seed(0))
    analytic = denoiser_flops(tiny_pipe.config, frames=8, passes=len(passes))
    kv = identity_kv_flops(tiny_pipe.config, conditions=2)
    with torch.no_grad():
        first, _ = count_flops(denoiser, latents, 999, 0, 8, cond.scales, None)  # projects IdentityNet's K/V
        later, _ = count_flops(denoiser, latents, 999, 0, 8, cond.scales, None)  # K/V cached
    assert later == analytic.total
    assert first == analytic.total + kv
    assert analytic.per_frame_pass == analytic.total / (8 * len(passes))
    assert set(analytic.ops) == {"conv", "linear", "attention"}
    assert sum(analytic.ops.values()) == pytest.approx(analytic.total)


def test_identity_net_flops_equal_flop_counter(tiny_pipe, tiny_streams):
    s = tiny_streams
    counted, _ = count_flops(tiny_pipe.encode_identity, s["latents"], s["tokens"], s["text"], s["null"])
    assert counted == identity_net_flops(tiny_pipe.config, references=1, conditions=2).total


SD_LAYOUT = {"unet": {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 2, "use_linear_projection": True,
                      "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                      "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}}


@pytest.mark.parametrize("overrides", [None, SD_LAYOUT], ids=["tiny", "sd15-layout"])
def test_analytic_flops_follow_the_unet_layout(reference_images, speechlike, overrides):
    """The SD-1.5 block layout (four levels, two layers per block, a plain last block) at tiny width,
    with linear projections; and several references."""
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from comfyui_portraittalk.models.config import load_config

    pipe = PortraitTalkPipeline.from_config(load_config("tiny", overrides), seed=0)
    latents, pixels = pipe.encode_references(list(reference_images))
    tokens = pipe.identity_tokens(pixels)
    _, null = pipe.encode_prompt(None)
    identity = pipe.encode_identity(latents, tokens, None, null)
    wave, sr = speechlike
    cond = pipe.conditioning(null_text=null, identity=identity, audio=pipe.encode_audio(wave[: 6 * 640], sr))
    passes = guidance_passes(1.0, 2.0, False, True)
    denoiser = WindowDenoiser(pipe.components.animate_net, cond, passes, torch.float32, torch.device("cpu"))
    window = torch.randn(6, *pipe.latent_shape(), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        counted, _ = count_flops(denoiser, window, 500, 0, 6, cond.scales, None)  # with the K/V projection
    assert counted == (denoiser_flops(pipe.config, frames=6, passes=2, references=2).total
                       + identity_kv_flops(pipe.config, references=2, conditions=1))
    counted, _ = count_flops(pipe.encode_identity, latents, tokens, None, null)
    assert counted == identity_net_flops(pipe.config, references=2, conditions=1).total


def test_sd15_frame_costs_about_1_2_tflop():
    """One 512² frame of one denoiser pass in the SD-1.5 layout (the issue's estimate: about 1.26 TFLOP)."""
    from comfyui_portraittalk.models.config import load_config

    count = denoiser_flops(load_config("sd15"), 64, 16, 1)
    assert 1.1e12 < count.per_frame_pass < 1.4e12
    assert count.parts["temporal"] > 0 and count.parts["identity_attention"] > 0 and count.parts["cross_audio"] > 0


def test_bench_runs_and_reports_its_fields(tmp_path, capsys):
    """Two runs in fresh processes (4 frames in one window; 8 frames in three windows of 4)."""
    from comfyui_portraittalk.bench.benchmark import SCHEMA
    from comfyui_portraittalk.cli.bench import main as bench_main

    out = tmp_path / "bench.json"
    assert bench_main(["--config", "tiny", "--frames", "4", "--scale", "1", "2", "--seconds", "--steps", "2",
                       "--window", "4", "--overlap", "1", "--repeats", "3", "--threads", "1", "--no-import-time",
                       "--quiet", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "s/frame/step" in printed and "ovh cpu" in printed and "scaling tiny 4 -> 8 frames" in printed
    result = json.loads(out.read_text())
    assert result["schema"] == SCHEMA
    assert {"python", "torch", "cpu_count", "torch_threads", "commit", "loadavg"} <= set(result["environment"])
    assert [(r["frames"], r["windows"]) for r in result["runs"]] == [(4, 1), (8, 3)]
    for run in result["runs"]:
        assert run["config"] == "tiny" and run["device"] == "cpu" and run["scheduler"] == "ddim"
        assert run["steps"] == 2 and run["passes"] == 1 and run["threads"] == 1
        for stage in ("text", "references", "identity_net", "audio", "sampling", "decode"):
            record = run["stages"][stage]
            assert record["seconds"] >= 0 and record["cpu_seconds"] >= 0 and record["rss_peak_mb"] > 0
        f = run["sampling"]
        for key in ("seconds", "cpu_seconds", "unet_seconds", "unet_cpu_seconds", "other_seconds", "per_frame_step_s",
                    "unet_per_frame_step_s", "other_per_frame_step_s", "bare_forward_s", "bare_forward_cpu_s",
                    "overhead_ratio", "overhead_ratio_cpu", "loop_overhead", "flops_per_call",
                    "flops_per_frame_pass", "bare_tflops", "sampling_tflops"):
            assert isinstance(f[key], float) and f[key] == f[key], key
        assert f["denoiser_calls"] == run["windows"] * run["steps"] and f["calls_per_step"] == run["windows"]
        assert f["per_frame_step_s"] == pytest.approx(f["seconds"] / (run["frames"] * run["steps"]))
        assert f["per_frame_step_s"] == pytest.approx(f["unet_per_frame_step_s"] + f["other_per_frame_step_s"])
        assert f["bare_forward_s"] == pytest.approx(statistics.median(f["bare_forward_runs_s"]))
        assert f["overhead_ratio"] == pytest.approx(f["seconds"] / (f["denoiser_calls"] * f["bare_forward_s"]))
        assert f["overhead_ratio_cpu"] == pytest.approx(f["cpu_seconds"] / (f["denoiser_calls"] * f["bare_forward_cpu_s"]))
        assert f["loop_overhead"] == pytest.approx(f["seconds"] / f["unet_seconds"]) and f["loop_overhead"] >= 1
        assert f["flops_per_call_counted"] == f["flops_per_call"]
        assert f["flops_per_call"] == denoiser_flops(load_config("tiny"), 16, 4, 1).total
        m = run["memory"]
        assert 0 < m["baseline_rss_mb"] <= m["peak_rss_mb"] and m["growth_mb"] == pytest.approx(
            m["peak_rss_mb"] - m["baseline_rss_mb"], abs=0.11)
        assert run["generation_seconds"] == pytest.approx(sum(run["stages"][s]["seconds"] for s in GENERATION_STAGES))
        assert run["identity_net"]["flops"] == identity_net_flops(load_config("tiny"), conditions=2).total
    small, large = result["runs"]
    (scaling,) = result["summary"]["scaling"]
    assert (scaling["frames"], scaling["frames_2x"]) == (4, 8)
    assert scaling["time_ratio"] == pytest.approx(large["sampling"]["seconds"] / small["sampling"]["seconds"])
    assert scaling["peak_rss_ratio"] == pytest.approx(large["memory"]["peak_rss_mb"] / small["memory"]["peak_rss_mb"])


def _fake_run(frames: int, wall: float, cpu: float, peak: float, *, scale: int | None = None,
              seconds: float | None = None, overhead: float = 1.0) -> dict:
    spec = {"scale": scale} if scale else {"seconds": seconds}
    return {"config": "tiny", "size": 64, "dtype": "float32", "device": "cpu", "frames": frames, "spec": spec,
            "sampling": {"seconds": wall, "cpu_seconds": cpu, "overhead_ratio": overhead,
                         "overhead_ratio_cpu": overhead - 0.05},
            "memory": {"peak_rss_mb": peak, "growth_mb": peak - 900}, "generation_seconds": wall + 1}


def test_summary_pairs_runs_and_checks_the_targets():
    from comfyui_portraittalk.bench.benchmark import summarise

    runs = [_fake_run(48, 10, 8, 1000, scale=1), _fake_run(96, 20, 17, 1100, scale=2, overhead=1.12),
            _fake_run(192, 45, 33, 1300, scale=4),
            _fake_run(150, 30, 25, 1000, seconds=6), _fake_run(384, 300, 250, 1200, seconds=60)]  # not a 2x partner
    summary = summarise(runs, {"module": "comfyui_portraittalk", "seconds": 0.2})
    assert [(s["frames"], s["frames_2x"]) for s in summary["scaling"]] == [(48, 96), (96, 192)]
    first, second = summary["scaling"]
    assert (first["time_ratio"], first["time_ratio_cpu"], first["peak_rss_ratio"]) == pytest.approx((2.0, 17 / 8, 1.1))
    assert (second["time_ratio"], second["time_ratio_cpu"]) == pytest.approx((2.25, 33 / 17))
    assert first["generation_time_ratio"] == pytest.approx(21 / 11) and first["growth_mb"] == [100, 200]
    (audio,) = summary["long_audio"]
    assert audio["seconds"] == [6, 60] and audio["peak_rss_ratio"] == pytest.approx(1.2)
    verdicts = {t["target"]: (t["value"], t["pass"]) for t in summary["targets"]}
    assert verdicts == {
        "overhead ratio <= 1.10 (tiny, CPU, wall; worst case)": (pytest.approx(1.12), False),
        "overhead ratio <= 1.10 (tiny, CPU, CPU time; worst case)": (pytest.approx(1.07), True),
        "2x frames (48 -> 96): sampling time <= 2.1x (wall)": (pytest.approx(2.0), True),
        "2x frames (48 -> 96): sampling time <= 2.1x (CPU time)": (pytest.approx(2.125), False),
        "2x frames (48 -> 96): peak memory <= 1.15x": (pytest.approx(1.1), True),
        "2x frames (96 -> 192): sampling time <= 2.1x (wall)": (pytest.approx(2.25), False),
        "2x frames (96 -> 192): sampling time <= 2.1x (CPU time)": (pytest.approx(33 / 17), True),
        "2x frames (96 -> 192): peak memory <= 1.15x": (pytest.approx(1300 / 1100), False),
        "60 s audio in the peak memory of 6 s (+-15%)": (pytest.approx(1.2), False),
        "import comfyui_portraittalk < 0.5 s": (0.2, True),
    }


def test_rounds_are_compared_by_their_medians():
    """With --rounds, one slow run (a busy moment on a shared machine) does not decide a target."""
    from comfyui_portraittalk.bench.benchmark import summarise

    runs = [_fake_run(48, 10, 8, 1000, scale=1), _fake_run(96, 20, 16, 1000, scale=2),
            _fake_run(48, 10, 8, 1000, scale=1), _fake_run(96, 30, 24, 1000, scale=2, overhead=1.5),
            _fake_run(48, 12, 9, 1000, scale=1), _fake_run(96, 21, 17, 1000, scale=2)]
    (scaling,) = summarise(runs, None)["scaling"]
    assert scaling["rounds"] == 3
    assert (scaling["time_ratio"], scaling["time_ratio_cpu"]) == pytest.approx((21 / 10, 17 / 8))
    verdicts = {t["target"]: t["value"] for t in summarise(runs, None)["targets"]}
    assert verdicts["overhead ratio <= 1.10 (tiny, CPU, wall; worst case)"] == pytest.approx(1.0)


def test_plan_runs_the_scales_and_audio_durations_at_the_config_rate():
    from comfyui_portraittalk.bench.benchmark import plan
    from comfyui_portraittalk.cli.bench import parser as _parser

    specs = plan(_parser().parse_args(["--config", "tiny", "--frames", "10", "--scale", "1", "3",
                                       "--seconds", "0.5", "2.01", "--steps", "3"]))
    assert [(s["frames"], s["role"]) for s in specs] == [(10, "scale 1x"), (30, "scale 3x"), (13, "audio 0.5s"),
                                                         (51, "audio 2.01s")]
    assert all(s["size"] == 64 and s["steps"] == 3 and s["config"] == "tiny" for s in specs)


def test_import_time_is_measured_in_a_fresh_interpreter():
    from comfyui_portraittalk.bench.benchmark import import_time

    info = import_time("comfyui_portraittalk", repeats=1)
    assert info["module"] == "comfyui_portraittalk" and info["seconds"] >= 0


def test_accelerate_reports_what_it_did_and_the_pipeline_still_samples(reference_images, speechlike):
    from comfyui_portraittalk.models import PortraitTalkPipeline
    from comfyui_portraittalk.bench.acceleration import accelerate

    pipe = PortraitTalkPipeline.from_config("tiny", seed=0)
    report = accelerate(pipe, dtype="bf16", channels_last=True)
    assert report["dtype"] == "bfloat16" and pipe.dtype == torch.bfloat16
    assert "animate_net.unet" in report["channels_last"] and report["compiled"] == []
    assert report["sdpa_everywhere"], report["attention"]
    assert report["attention"]["animate_net.unet"]["processors"]["IdentityAttnProcessor"] > 0
    conv = pipe.components.animate_net.unet.conv_in.weight
    assert conv.dtype == torch.bfloat16 and conv.is_contiguous(memory_format=torch.channels_last)
    wave, sr = speechlike
    out = pipe([reference_images[0]], wave[: 4 * 640], sr, num_inference_steps=1)
    assert out.frames.shape == (4, 64, 64, 3) and out.frames.dtype.name == "float32"
    assert torch.isfinite(torch.from_numpy(out.frames)).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bench_on_cuda_reports_cuda_memory_and_utilisation(tmp_path):
    from comfyui_portraittalk.cli.bench import main as bench_main

    out = tmp_path / "bench.json"
    assert bench_main(["--config", "tiny", "--frames", "16", "--scale", "1", "--seconds", "--steps", "2",
                       "--device", "cuda", "--dtype", "bf16", "--no-import-time", "--quiet", "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["memory"]["cuda_peak_mb"] > 0 and run["stages"]["identity_net"]["cuda_peak_mb"] > 0
    assert run["sampling"]["bare_tflops"] > 0
