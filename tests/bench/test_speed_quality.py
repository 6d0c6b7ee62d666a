"""The speed/quality curve (`portraittalk bench curve`): settings parse strictly, and each row times the
sampler and scores the video it made."""

from __future__ import annotations

import pytest

from comfyui_portraittalk.bench.speed_quality import Setting, held_out_clips, measure, table
from comfyui_portraittalk.cli.bench_curve import main as curve_main


@pytest.mark.parametrize("text, expected", [("ddim:20", Setting("ddim", 20)),
                                            ("dpmpp_2m+karras:8", Setting("dpmpp_2m", 8, True))])
def test_settings_parse(text, expected):
    assert Setting.parse(text) == expected and Setting.parse(text).label == text


@pytest.mark.parametrize("text", ["ddim", "ddim:0", "ddim:x", "euler+fast:8", ""])
def test_malformed_settings_are_refused(text):
    with pytest.raises(ValueError, match="scheduler\\[\\+karras\\]:steps"):
        Setting.parse(text)


def test_unknown_scheduler_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        curve_main(["--settings", "heun:8"])
    assert stop.value.code == 2 and "unknown scheduler heun" in capsys.readouterr().err


def test_fewer_steps_cost_less_and_every_row_is_scored(tiny_pipe):
    clips = held_out_clips(1, 1.0, tiny_pipe.size)
    rows = [measure(tiny_pipe, Setting("ddim", 4), clips), measure(tiny_pipe, Setting("dpmpp_2m", 1, True), clips)]
    assert [r["setting"] for r in rows] == ["ddim:4", "dpmpp_2m+karras:1"]
    # four denoiser passes per frame against one: the CPU time must show it, whatever else the machine does
    assert rows[0]["cpu_seconds_per_frame"] > 1.5 * rows[1]["cpu_seconds_per_frame"]
    for row in rows:
        assert 0.0 <= row["adfd"] <= 1.0 and -1.0 <= row["lip_sync_r"] <= 1.0 and len(row["per_clip"]) == 1
    assert "dpmpp_2m+karras:1" in table(rows)


def test_the_fast_setting_runs_from_the_command_line(tiny_pipe, tmp_path, capsys):
    from comfyui_portraittalk.bundled import ASSETS
    from comfyui_portraittalk.cli import main

    with pytest.raises(SystemExit) as stop:  # Karras sigmas need a sigma-based scheduler, not DDIM
        main(["generate", "--image", "x.png", "--audio", "y.wav", "--karras"])
    assert stop.value.code == 2 and "--karras needs --scheduler" in capsys.readouterr().err
    model = tiny_pipe.save_pretrained(tmp_path / "tiny.safetensors")
    out = tmp_path / "fast.mp4"
    assert main(["generate", "--image", str(ASSETS / "demo_reference.png"), "--audio", str(ASSETS / "demo_speech.wav"),
                 "--model", str(model), "--scheduler", "dpmpp_2m", "--karras", "--steps", "2", "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and "frames at 25 fps, with audio" in capsys.readouterr().out
