"""SynthTalk: the mouth colour contract, the audio envelope, attributes, determinism and the writer."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from comfyui_portraittalk.models.audio_contract import absolute_loudness_envelope
from comfyui_portraittalk.training import synthtalk as st
from comfyui_portraittalk.training.layout import read_clip, read_index

MOUTH = np.array(st.MOUTH_RGB, np.uint8)
ASSETS = Path(__file__).resolve().parents[2] / "assets"


def mouth_hits(frames):
    return np.all(np.asarray(frames) == MOUTH, axis=-1)


@pytest.fixture(scope="module")
def clip():
    return st.make_clip(1234, 4.0, 64)


# ---------------------------------------------------------------- the mouth colour contract


def test_mouth_colour_only_inside_the_mouth(clip):
    hits = mouth_hits(clip.frames)
    assert hits.any()
    # Every MOUTH_RGB pixel lies in the lip mask, which lies in the face.
    assert not (hits & (clip.lip_mask == 0)).any()
    assert not (hits & (clip.face_mask == 0)).any()
    openness = np.array(clip.meta["per_frame"]["mouth_height"])
    counts = hits.sum(axis=(1, 2))
    assert (counts[openness == 0] == 0).all(), "a closed mouth shows no MOUTH_RGB pixels"
    assert (counts[openness > 0.15] > 0).all()


def test_mouth_pixels_grow_monotonically_with_height():
    ident = st.make_identity(3)
    heights = np.linspace(0.0, 1.0, 26)
    for size in (64, 128, 256):
        for pose in (st.NEUTRAL_POSE, (0.015, -0.01, 1.03, 2.5)):
            frames, _, _ = st.render_frames(ident, {"smiling": size == 128}, size, heights, 0.4, 0.0,
                                            np.tile(pose, (len(heights), 1)))
            counts = mouth_hits(frames).sum(axis=(1, 2))
            assert counts[0] == 0
            assert (np.diff(counts) >= 0).all(), counts
            assert counts[-1] > counts[len(counts) // 2] > 0
            # The vertical extent of the colour is the drawn height, to within a pixel or two.
            rows = mouth_hits(frames).any(axis=2).sum(axis=1)
            expected = heights * st.MOUTH_MAX_HEIGHT * size * pose[2]
            assert np.abs(rows - expected).max() <= 2.0


def test_colour_mouth_height_tracks_the_audio_envelope(clip):
    # The envelope recomputed from the audio as stored on disk (read_wav scale), not from meta.
    envelope = absolute_loudness_envelope(clip.audio, clip.sample_rate, clip.fps, clip.num_frames)
    assert np.allclose(envelope, clip.meta["per_frame"]["mouth_height"], atol=1e-3)
    rows = st.measure_mouth(clip.frames)["height"]
    assert envelope.std() > 0.1
    assert np.corrcoef(rows, envelope)[0, 1] > 0.95


def test_colour_is_unique_even_when_a_feature_has_it():
    # Lips and hair painted in MOUTH_RGB itself: the renderer must still keep the colour to the interior.
    ident = st.make_identity(0)
    ident.lip = ident.hair = st.MOUTH_RGB
    frames, _, lip = st.render_frames(ident, {"smiling": True}, 64, [0.0, 0.6], 0.5, 0.0, [st.NEUTRAL_POSE] * 2)
    hits = mouth_hits(frames)
    assert not hits[0].any()
    assert hits[1].any() and not (hits[1] & (lip[1] == 0)).any()
    # The open interior is an ellipse, so its rows are contiguous and its pixel count is modest.
    assert hits[1].sum() < 0.1 * 64 * 64


# ---------------------------------------------------------------- the envelope definition


def test_envelope_window_is_the_frame_interval():
    sr, fps = st.SAMPLE_RATE, st.FPS
    hop = sr // fps
    audio = np.zeros(10 * hop, np.float32)
    level_db = -20.0
    tone = np.sin(2 * np.pi * 200.0 * np.arange(hop) / sr)  # exactly 8 periods in one frame
    audio[5 * hop:6 * hop] = tone / np.sqrt(np.mean(tone ** 2)) * 10 ** (level_db / 20)
    env = absolute_loudness_envelope(audio, sr, fps, 10)
    expected = (level_db - st.CLOSED_DB) / (st.OPEN_DB - st.CLOSED_DB)
    assert env[5] == pytest.approx(expected, abs=1e-4)
    assert np.count_nonzero(env) == 1
    # Past the end of the audio counts as silence; loud audio saturates at 1.
    assert absolute_loudness_envelope(audio, sr, fps, 12)[10:].tolist() == [0.0, 0.0]
    assert absolute_loudness_envelope(np.full(hop, 0.5, np.float32), sr, fps, 1)[0] == 1.0


def test_silences_give_closed_mouths(clip):
    syllables = clip.meta["speech"]["syllables"]
    openness = np.array(clip.meta["per_frame"]["mouth_height"])
    counts = mouth_hits(clip.frames).sum(axis=(1, 2))
    fps = clip.fps
    silent = [f for f in range(clip.num_frames)
              if all(f / fps >= s["start"] + s["duration"] or (f + 1) / fps <= s["start"] for s in syllables)]
    assert len(silent) >= 5
    assert (openness[silent] == 0).all()
    assert (counts[silent] == 0).all()
    assert (absolute_loudness_envelope(np.zeros(16000, np.float32)) == 0).all()


def test_vowels_set_the_width():
    widths = {v: [] for v in st.VOWEL_FORMANTS}
    for seed in range(4):
        c = st.make_clip(seed, 4.0, 64)
        w = np.array(c.meta["per_frame"]["mouth_width"])
        for s in c.meta["speech"]["syllables"]:
            mid = int((s["start"] + s["duration"] / 2) * c.fps)
            widths[s["vowel"]].append(w[mid])
    mean = {v: np.mean(x) for v, x in widths.items() if x}
    assert mean["i"] > mean["a"] > mean["u"]
    assert mean["i"] - mean["u"] > 0.4


# ---------------------------------------------------------------- speech


def test_syllables_and_pitch_within_their_ranges():
    durations, f0s = [], []
    for seed in range(6):
        audio, syllables = st.synth_speech(4 * st.SAMPLE_RATE, np.random.default_rng(seed), f0_base=120 + 25 * seed)
        assert len(syllables) >= 5
        durations += [s["duration"] for s in syllables]
        f0s += [s["f0_start"] for s in syllables] + [s["f0_end"] for s in syllables]
        ends = [s["start"] + s["duration"] for s in syllables]
        assert all(e <= 4.0 for e in ends)
        assert all(b["start"] >= e for e, b in zip(ends, syllables[1:])), "syllables overlap"
    assert 0.08 <= min(durations) and max(durations) <= 0.30
    assert 90.0 <= min(f0s) and max(f0s) <= 260.0
    assert np.std(durations) > 0.03


def test_synthetic_pitch_is_what_the_metadata_says():
    audio, syllables = st.synth_speech(2 * st.SAMPLE_RATE, np.random.default_rng(7), f0_base=150)
    s = max(syllables, key=lambda s: s["duration"])
    a, n = int(s["start"] * st.SAMPLE_RATE), int(s["duration"] * st.SAMPLE_RATE)
    seg = audio[a:a + n].astype(np.float64)
    # Autocorrelation peak within the 90-260 Hz lag range gives the mean f0.
    ac = np.correlate(seg, seg, "full")[n - 1:]
    lo, hi = int(st.SAMPLE_RATE / 260), int(st.SAMPLE_RATE / 90)
    f0 = st.SAMPLE_RATE / (lo + np.argmax(ac[lo:hi]))
    assert f0 == pytest.approx(0.5 * (s["f0_start"] + s["f0_end"]), rel=0.08)


# ---------------------------------------------------------------- attributes and captions


def test_background_is_exactly_the_palette_colour():
    ident = st.make_identity(5)
    for name, rgb in st.BACKGROUNDS.items():
        f = st.render_frame(ident, {"background": name, "hat": True, "glasses": True}, size=64,
                            pose=(0.02, 0.01, 1.03, 3.0))
        corners = f[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert (corners == rgb).all(), name


def test_attributes_change_their_regions():
    ident = st.make_identity(9)
    base = st.render_frame(ident, {}, size=64).astype(int)

    def changed(attrs):
        return np.any(st.render_frame(ident, attrs, size=64).astype(int) != base, axis=-1)

    s = 64
    eyes, top, mouth = (slice(int(0.36 * s), int(0.52 * s)), slice(0, int(0.34 * s)), slice(int(0.6 * s), s))
    g = changed({"glasses": True})
    assert g[eyes].sum() > 30 and not g[mouth].any() and not g[top].any()
    h = changed({"hat": True})
    assert h[top].sum() > 60 and not h[mouth].any()
    m = changed({"smiling": True})
    assert m[mouth].sum() > 20 and not m[top].any()


def test_reference_and_edited_reference_share_the_identity():
    c = st.make_clip(42, 1.0, 64, attributes={"glasses": True, "background": "blue"})
    with_glasses = st.reference_for_clip(c.meta)
    without = st.reference_for_clip(c.meta, {"glasses": False})
    diff = np.any(with_glasses != without, axis=-1)
    assert 0 < diff.sum() < 0.2 * diff.size
    assert (with_glasses[0, 0] == st.BACKGROUNDS["blue"]).all()
    assert not mouth_hits(with_glasses).any(), "a reference has a closed mouth"


def test_captions_and_vocabulary():
    assert st.caption_for({"glasses": True, "background": "blue", "smiling": True}) == \
        "a face with glasses on a blue background, smiling"
    assert st.caption_for({"glasses": True, "hat": True, "background": "red"}) == \
        "a face with glasses and a hat on a red background"
    assert st.caption_for({"background": "gray"}) == "a face on a gray background"
    vocab = st.caption_vocabulary()
    assert len(vocab) == len(set(vocab))
    seen = set()
    for g in (False, True):
        for h in (False, True):
            for sm in (False, True):
                for bg in st.BACKGROUNDS:
                    attrs = {"glasses": g, "hat": h, "smiling": sm, "background": bg}
                    cap = st.caption_for(attrs)
                    tokens = st.tokenize_caption(cap)
                    assert set(tokens) <= set(vocab), cap
                    seen |= set(tokens)
                    assert st.attributes_from_caption(cap) == attrs
    assert seen == set(vocab)
    with pytest.raises(ValueError):
        st.caption_for({"background": "orange"})


# ---------------------------------------------------------------- determinism, sizes


def test_same_seed_same_clip_other_seed_other_clip(clip):
    again = st.make_clip(1234, 4.0, 64)
    for name in ("frames", "audio", "face_mask", "lip_mask"):
        assert np.array_equal(getattr(clip, name), getattr(again, name)), name
    assert json.dumps(clip.meta) == json.dumps(again.meta)
    other = st.make_clip(1235, 4.0, 64)
    assert not np.array_equal(clip.audio, other.audio)
    assert not np.array_equal(clip.frames, other.frames)


@pytest.mark.parametrize("size", [128, 256])
def test_larger_sizes(size):
    c = st.make_clip(77, 0.5, size)
    assert c.frames.shape == (13, size, size, 3) and c.frames.dtype == np.uint8
    assert c.face_mask.shape == c.lip_mask.shape == (13, size, size)
    assert set(np.unique(c.face_mask)) <= {0, 255} and set(np.unique(c.lip_mask)) <= {0, 255}
    # The face covers about the same share of the image at any size.
    small = st.make_clip(77, 0.5, 64)
    assert abs(c.face_mask.mean() - small.face_mask.mean()) / 255 < 0.01


def test_motion_and_blinks_happen():
    c = st.make_clip(8, 8.0, 64)
    pose = np.array(c.meta["per_frame"]["pose"])
    assert 0 < np.abs(pose[:, :2]).max() <= 0.03 and np.abs(pose[:, 2] - 1).max() <= 0.04
    blink = np.array(c.meta["per_frame"]["blink"])
    assert blink.max() == 1.0 and (blink == 0).mean() > 0.8


# ---------------------------------------------------------------- the writer


def test_write_dataset_reads_back_and_resumes(tmp_path):
    out = tmp_path / "ds"
    st.write_dataset(out, 3, 1.3, size=64, seed=4)
    index = read_index(out)
    assert index["source"] == "synthtalk" and index["clips"] == ["clip_00000", "clip_00001", "clip_00002"]
    assert index["fps"] == 25 and index["sample_rate"] == 16000 and index["size"] == 64
    for clip_id in index["clips"]:
        c = read_clip(out, clip_id)
        F = c.num_frames
        assert F == math.ceil(1.3 * 25)
        assert c.frames.shape == (F, 64, 64, 3) and c.frames.dtype == np.uint8
        assert c.face_mask.shape == (F, 64, 64) and c.lip_mask.dtype == np.uint8
        assert c.sample_rate == 16000 and c.audio.dtype == np.float32
        assert len(c.audio) / c.sample_rate >= F / c.fps
        assert F >= math.ceil(len(c.audio) / c.sample_rate * c.fps) - 1
        assert c.caption == st.caption_for(c.meta["attributes"])
        for key in ("mouth_height", "mouth_width", "mouth_height_px", "mouth_width_px", "blink"):
            assert len(c.meta["per_frame"][key]) == F
        assert c.meta["identity_seed"] % 2 == 0
        rows = st.measure_mouth(c.frames)["height"]
        env = absolute_loudness_envelope(c.audio, c.sample_rate, c.fps, F)
        assert np.corrcoef(rows, env)[0, 1] > 0.95
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("clips/*/*")}
    st.write_dataset(out, 4, 1.3, size=64, seed=4)  # resume: one more clip, the others untouched
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert len(read_index(out)["clips"]) == 4
    assert not (out / ".partial").exists()
    with pytest.raises(ValueError):
        st.write_dataset(out, 4, 1.3, size=64, seed=5)  # other settings: refuse to mix
    # An interrupted clip (no meta.json) is made again.
    (out / "clips" / "clip_00001" / "meta.json").unlink()
    st.write_dataset(out, 4, 1.3, size=64, seed=4)
    assert (out / "clips" / "clip_00001" / "meta.json").is_file()


def test_workers_and_splits(tmp_path):
    st.write_dataset(tmp_path / "one", 3, 0.6, seed=2)
    st.write_dataset(tmp_path / "two", 3, 0.6, seed=2, workers=2)
    for name in ("frames.npy", "audio.wav", "meta.json"):
        a = (tmp_path / "one" / "clips" / "clip_00002" / name).read_bytes()
        assert a == (tmp_path / "two" / "clips" / "clip_00002" / name).read_bytes(), name
    st.write_dataset(tmp_path / "test", 3, 0.6, seed=2, split="test")
    train_ids = {read_clip(tmp_path / "one", c).meta["identity_seed"] for c in read_index(tmp_path / "one")["clips"]}
    test_ids = {read_clip(tmp_path / "test", c).meta["identity_seed"] for c in read_index(tmp_path / "test")["clips"]}
    assert not train_ids & test_ids
    assert all(s % 2 == 1 for s in test_ids)
    assert read_index(tmp_path / "test")["split"] == "test"


def test_synth_main(tmp_path, capsys):
    from comfyui_portraittalk.cli.synth import main as synth_main

    assert synth_main([str(tmp_path / "cli"), "--clips", "2", "--seconds", "0.4", "--size", "64",
                          "--seed", "3", "--split", "test"]) == 0
    index = read_index(tmp_path / "cli")
    assert len(index["clips"]) == 2 and index["synthtalk"]["seed"] == 3
    assert "2 clips" in capsys.readouterr().out


# ---------------------------------------------------------------- TTS and assets


def test_tts_falls_back_without_espeak(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # module-wide, so synthtalk.speech sees it too
    assert not st.tts_available()
    with pytest.warns(UserWarning, match="espeak-ng"):
        c = st.make_clip(5, 1.0, 64, tts=True)
    assert c.meta["speech"]["kind"] == "synthetic" and c.meta["speech"]["tts_fallback"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_tts_clip_follows_its_own_audio():
    c = st.make_clip(11, 3.0, 64, tts=True)
    assert c.meta["speech"]["kind"] == "tts" and c.meta["speech"]["text"]
    env = absolute_loudness_envelope(c.audio, c.sample_rate, c.fps, c.num_frames)
    assert env.std() > 0.1 and (env == 0).any()
    rows = st.measure_mouth(c.frames)["height"]
    assert np.corrcoef(rows, env)[0, 1] > 0.95


def test_bundled_assets_match_their_generator():
    from PIL import Image

    from comfyui_portraittalk.training.layout import read_wav

    ref = np.asarray(Image.open(ASSETS / "demo_reference.png").convert("RGB"))
    assert np.array_equal(ref, st.demo_reference(64))
    assert not mouth_hits(ref).any()
    audio, rate = read_wav(ASSETS / "demo_speech.wav")
    assert rate == 16000 and 4.0 <= len(audio) / rate <= 6.5
    assert (ASSETS / "demo_speech.wav").stat().st_size < 300_000
    env = absolute_loudness_envelope(audio, rate)
    assert (env > 0.5).mean() > 0.3 and (env == 0).any()
