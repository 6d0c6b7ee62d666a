"""ADFD orderings and guards on clips with known truth: synthetic, SynthTalk and real speech."""

import importlib.util
import json
import math
import os

import numpy as np
import pytest

from comfyui_portraittalk.evaluation import adfd, evaluate, onset_envelope, to_mono_16k
from comfyui_portraittalk.models.audio_contract import SAMPLE_RATE, level_normalised_loudness_envelope
from comfyui_portraittalk.evaluation.testing import clip_for_audio, delay_audio, speech_like_audio
from comfyui_portraittalk.faces import analyze_synthtalk

FPS = 25.0


def _speech_wavs():
    spec = importlib.util.find_spec("pytest_audioeval")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = os.path.join(list(spec.submodule_search_locations)[0], "samples", "audio", "en")
    return sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".wav")) if os.path.isdir(root) else []


def _orderings(obs, audio16):
    """ADFD of the clip, of it with audio 8 frames late, frozen, and with shuffled frames."""
    perm = np.random.default_rng(1).permutation(len(obs))
    return {
        "truth": adfd(obs, audio16, FPS),
        "shifted": adfd(obs, delay_audio(audio16, 8), FPS),
        "frozen": adfd([obs[0]] * len(obs), audio16, FPS),
        "shuffled": adfd([obs[i] for i in perm], audio16, FPS),
    }


def _assert_orderings(r):
    for name, res in r.items():
        for key in ("score", "spatial", "temporal", "jitter"):
            assert math.isfinite(res[key]) and 0.0 <= res[key] <= 1.0, (name, key, res[key])
    truth = r["truth"]["score"]
    assert truth > r["shifted"]["score"] + 0.1, r
    assert truth > r["frozen"]["score"] + 0.3, r
    assert truth > r["shuffled"]["score"] + 0.1, r
    assert r["frozen"]["score"] <= 0.25
    assert r["truth"]["lag"] == 0


def test_adfd_orderings_on_synthetic_speech():
    audio = speech_like_audio(6.0, seed=3)
    frames, _ = clip_for_audio(audio, head_motion=0.01)
    _assert_orderings(_orderings(analyze_synthtalk(frames), audio))


@pytest.mark.parametrize("wav", _speech_wavs() or [pytest.param(None, marks=pytest.mark.skip("pytest-audioeval not installed"))])
def test_adfd_orderings_on_real_speech(wav):
    import soundfile as sf
    audio, sr = sf.read(wav, dtype="float32")
    audio16 = to_mono_16k(audio, sr)
    frames, _ = clip_for_audio(audio16, head_motion=0.01)
    r = _orderings(analyze_synthtalk(frames), audio16)
    _assert_orderings(r)
    assert r["truth"]["aperture_loudness_r"] > 0.95


def test_adfd_orderings_on_synthtalk_clip():
    synthtalk = pytest.importorskip("comfyui_portraittalk.training.synthtalk")
    clip = synthtalk.make_clip(5, 6.0, size=64)
    audio16 = to_mono_16k(clip.audio, clip.sample_rate)
    obs = analyze_synthtalk(clip.frames)
    _assert_orderings(_orderings(obs, audio16))
    # Our loudness envelope is SynthTalk's openness (same window and dB mapping), up to the
    # level normalisation: a shift of a few dB.
    openness = np.array(clip.meta["per_frame"]["mouth_height"])
    ours = level_normalised_loudness_envelope(audio16, SAMPLE_RATE, FPS, len(openness))
    assert np.corrcoef(openness, ours)[0, 1] > 0.95


@pytest.mark.parametrize("shift", [-7, -4, 3, 6])
def test_reported_lag_recovers_a_known_shift(shift):
    audio = speech_like_audio(8.0, seed=11)
    frames, _ = clip_for_audio(audio)
    obs = analyze_synthtalk(frames)
    # The audio moved `shift` frames later: the video now leads it, i.e. lags by -shift.
    r = adfd(obs, delay_audio(audio, shift), FPS, wide_lag=10)
    assert r["best_lag_wide"] == -shift
    assert r["temporal_r_wide"] > 0.5


@pytest.mark.parametrize("shift", [-2, 1, 2])
def test_small_shift_is_found_within_the_scoring_window(shift):
    audio = speech_like_audio(8.0, seed=12)
    obs = analyze_synthtalk(clip_for_audio(audio)[0])
    r = adfd(obs, delay_audio(audio, shift), FPS)
    assert r["lag"] == -shift and r["temporal"] > 0.5


def test_adfd_with_ground_truth_uses_landmark_distance():
    audio = speech_like_audio(5.0, seed=4)
    obs = analyze_synthtalk(clip_for_audio(audio)[0])
    same = adfd(obs, audio, FPS, ground_truth=obs)
    assert same["spatial_mode"] == "ground truth" and same["spatial"] == pytest.approx(1.0)
    assert same["jitter"] == pytest.approx(1.0)
    frozen = adfd([obs[0]] * len(obs), audio, FPS, ground_truth=obs)
    assert frozen["spatial"] < 0.8 * same["spatial"] and frozen["score"] < same["score"]


def test_no_nan_on_constant_video_and_silence():
    audio = speech_like_audio(3.0, seed=5)
    obs = analyze_synthtalk(clip_for_audio(audio)[0])
    silence = np.zeros_like(audio)
    for o, a in [([obs[0]] * len(obs), audio), (obs, silence), ([obs[0]] * len(obs), silence)]:
        r = adfd(o, a, FPS)
        json.dumps(r, allow_nan=False)  # raises on NaN or inf anywhere
        assert all(math.isfinite(r[k]) for k in ("score", "spatial", "temporal", "jitter"))
    r = adfd([obs[0]] * len(obs), silence, FPS)
    assert r["spatial"] == pytest.approx(1.0)  # a still mouth is right for silence
    assert any("undefined" in n for n in r["notes"])
    assert np.all(onset_envelope(silence, FPS, 10) == 0)
    assert np.all(level_normalised_loudness_envelope(silence, SAMPLE_RATE, FPS, 10) == 0)


def test_missing_faces_are_interpolated_and_reported():
    audio = speech_like_audio(4.0, seed=6)
    obs = analyze_synthtalk(clip_for_audio(audio)[0])
    obs[5] = obs[6] = None
    r = adfd(obs, audio, FPS)
    assert math.isfinite(r["score"]) and any("interpolated" in n for n in r["notes"])


def test_guards_give_clear_errors():
    audio = speech_like_audio(1.0)
    obs = analyze_synthtalk(clip_for_audio(audio)[0])
    with pytest.raises(ValueError, match="at least 5 frames"):
        adfd(obs[:3], audio, FPS)
    with pytest.raises(ValueError, match="zero samples"):
        adfd(obs, np.zeros(0, np.float32), FPS)
    with pytest.raises(ValueError, match="fps"):
        adfd(obs, audio, 0)
    with pytest.raises(ValueError, match="no frames"):
        evaluate(np.zeros((0, 8, 8, 3), np.uint8), audio, 16000, FPS, backend="colour")
    with pytest.raises(ValueError, match="empty"):
        evaluate(np.zeros((6, 8, 8, 3), np.uint8), np.zeros(0), 16000, FPS, backend="colour")
    with pytest.raises(ValueError, match="mediapipe"):
        evaluate(clip_for_audio(audio)[0], audio, 16000, FPS, backend="fallback")
    with pytest.raises(ValueError, match="no face"):
        adfd([None] * 10, audio, FPS)
