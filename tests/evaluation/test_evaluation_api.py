"""evaluate(), the plot, the folder batch and the command line, on small files made here."""

import json

import numpy as np
import pytest

from comfyui_portraittalk.cli.eval import main as eval_main
from comfyui_portraittalk.evaluation import evaluate, evaluate_folder, plot_mouth_vs_audio
from comfyui_portraittalk.media import read_video, write_video
from comfyui_portraittalk.evaluation.testing import clip_for_audio, delay_audio, speech_like_audio
from comfyui_portraittalk.faces.testing import draw_face

FPS = 25.0


@pytest.fixture(scope="module")
def clip():
    audio = speech_like_audio(3.0, seed=21)
    frames, _ = clip_for_audio(audio, size=64, head_motion=0.01)
    return frames, audio


def test_evaluate_returns_json_with_models_and_skips(clip):
    frames, audio = clip
    ref = draw_face(64, 0)
    r = evaluate(frames, audio, 16000, FPS, reference=ref, ground_truth=frames, backend="colour")
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text)["frames"] == len(frames)
    m = r["metrics"]
    assert m["adfd"]["model"]["name"] == "synthtalk colour analyser" and m["adfd"]["version"]
    assert m["lmd"]["value"] == 0.0 and m["lmd"]["model"] and m["lmd"]["version"]
    assert m["csim"]["value"] > 0.9 and m["csim"]["model"] and m["csim"]["version"]
    assert len(r["series"]["mouth_open"]) == len(frames)

    bare = evaluate(frames, audio, 16000, FPS, backend="colour")
    assert "skipped" in bare["metrics"]["lmd"] and "skipped" in bare["metrics"]["csim"]
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate(frames, audio, 16000, FPS, metrics=("psnr",), backend="colour")
    with pytest.raises(ValueError, match="weights"):
        evaluate(frames, audio, 16000, FPS, metrics=("sync",), backend="colour")


def test_evaluate_accepts_other_rates_stereo_float_frames_and_comfy_audio(clip):
    import librosa
    frames, audio = clip
    stereo44 = np.stack([librosa.resample(audio, orig_sr=16000, target_sr=44100)] * 2)
    a = evaluate(frames.astype(np.float32) / 255.0, stereo44, 44100, FPS, backend="colour")
    b = evaluate(frames, {"waveform": stereo44[None], "sample_rate": 44100}, None, FPS, backend="colour")
    c = evaluate(frames, audio, 16000, FPS, backend="colour")
    assert a["metrics"]["adfd"]["score"] == pytest.approx(b["metrics"]["adfd"]["score"])
    assert a["metrics"]["adfd"]["score"] == pytest.approx(c["metrics"]["adfd"]["score"], abs=0.05)


def test_plot_shows_mouth_and_audio(clip):
    frames, audio = clip
    r = evaluate(frames, audio, 16000, FPS, metrics=("adfd",), backend="colour")
    img = plot_mouth_vs_audio(r, width=600, height=240)
    assert img.shape == (240, 600, 3) and img.dtype == np.uint8
    colours = {tuple(c) for c in img.reshape(-1, 3)[::7]}
    assert (200, 40, 60) in colours and (40, 90, 200) in colours
    with pytest.raises(ValueError, match="series"):
        plot_mouth_vs_audio({"metrics": {}})


def test_folder_batch_writes_csv_and_markdown(tmp_path, clip):
    frames, audio = clip
    results = tmp_path / "results"
    results.mkdir()
    write_video(results / "in_sync.mp4", frames, FPS, audio)
    write_video(results / "late_audio.mp4", frames, FPS, delay_audio(audio, 8))
    rows = evaluate_folder(results, backend="colour", metrics=("adfd",))
    assert [r["video"] for r in rows] == ["in_sync.mp4", "late_audio.mp4"]
    assert rows[0]["adfd"] > rows[1]["adfd"]
    csv_text = (results / "metrics.csv").read_text().splitlines()
    assert csv_text[0].startswith("video,frames,adfd") and csv_text[-1].startswith("mean,")
    md = (results / "metrics.md").read_text()
    assert md.startswith("| video |") and "| mean |" in md
    assert set(json.loads((results / "metrics.json").read_text())) == {"in_sync.mp4", "late_audio.mp4"}


def test_eval_main_reads_the_videos_own_audio(tmp_path, clip, capsys):
    frames, audio = clip
    video = tmp_path / "talk.mp4"
    write_video(video, frames, FPS, audio)
    back = read_video(video)
    assert back.frames.shape == frames.shape and back.fps == pytest.approx(FPS) and back.audio is not None
    out = tmp_path / "result.json"
    plot = tmp_path / "plot.png"
    code = eval_main(["--video", str(video), "--backend", "colour", "--json", str(out), "--plot", str(plot),
                      "--metrics", "adfd,lmd"])
    assert code == 0 and plot.is_file()
    result = json.loads(out.read_text())
    assert result["metrics"]["adfd"]["score"] > 0.5
    assert "adfd" in capsys.readouterr().out


def test_eval_main_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        eval_main(["--video", str(tmp_path / "nowhere.mp4")])
