"""What the Evaluate node computes, without a ComfyUI server: evaluate_each, finite, message_image."""

import json

import numpy as np
import pytest
import torch

from comfyui_portraittalk.evaluation import evaluate_each, finite, message_image, to_mono_16k
from comfyui_portraittalk.evaluation.testing import clip_for_audio, speech_like_audio

FPS = 25.0


@pytest.fixture(scope="module")
def clip():
    audio = speech_like_audio(2.0, seed=5)
    frames, _ = clip_for_audio(audio, size=64)
    return frames, audio


def test_evaluate_each_reports_every_metric_in_order_and_errors_by_name(clip, tmp_path):
    frames, audio = clip
    r = evaluate_each(frames, audio, 16000, FPS, ["csim", "adfd", "lmd"], "colour", cache_dir=tmp_path)
    assert list(r["metrics"]) == ["csim", "adfd", "lmd"]
    assert "skipped" in r["metrics"]["csim"] and "skipped" in r["metrics"]["lmd"]
    assert 0.0 <= r["metrics"]["adfd"]["score"] <= 1.0 and "series" in r
    short = evaluate_each(frames[:2], audio[:1280], 16000, FPS, ["adfd", "csim"], "colour")
    assert "error" in short["metrics"]["adfd"] and "skipped" in short["metrics"]["csim"]
    assert "series" not in short


def test_evaluate_each_without_any_measured_metric_still_names_the_video(clip):
    frames, audio = clip
    r = evaluate_each(frames[:2], audio[:1280], 16000, FPS, ["adfd"], "colour")
    assert r["frames"] == 2 and r["fps"] == FPS and list(r["metrics"]) == ["adfd"]
    assert set(r["metrics"]["adfd"]) == {"error"}


def test_finite_makes_results_json_safe():
    value = {"a": float("nan"), "b": [np.float32(1.5), np.int64(3), (float("inf"), 2)], "c": "x"}
    clean = finite(value)
    assert clean == {"a": None, "b": [1.5, 3, [None, 2]], "c": "x"}
    assert type(clean["b"][0]) is float and type(clean["b"][1]) is int
    json.loads(json.dumps(clean, allow_nan=False))


def test_message_image_is_a_white_plot_sized_image_with_dark_wrapped_text():
    img = message_image("word " * 60)
    assert img.shape == (320, 900, 3) and img.dtype == np.uint8
    assert (img[0] == 255).all() and (img[-1] == 255).all()  # white margins
    rows = np.flatnonzero((img < 128).all(axis=-1).any(axis=1))
    assert rows.min() >= 20 and rows.max() > 44 + 16  # the heading and at least two wrapped lines
    assert (img[..., 0] > 120).any() and ((img[..., 0] > 120) & (img[..., 1] < 60)).any()  # the red heading
    assert message_image("x", width=200, height=100).shape == (100, 200, 3)


def test_a_comfy_audio_dict_is_its_first_clip():
    rate = 16000
    t = np.arange(rate) / rate
    first = np.stack([np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 300 * t)]).astype(np.float32) * 0.3
    batch = torch.from_numpy(np.stack([first, np.zeros_like(first)]))
    mono = to_mono_16k({"waveform": batch, "sample_rate": rate}, None)
    np.testing.assert_array_equal(mono, first.mean(axis=0))
