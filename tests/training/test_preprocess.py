"""`portraittalk preprocess` on small synthetic talking-head videos: SynthTalk faces (128 px, drawn at 2x)
on a larger canvas, at 30 or 24 fps with 44.1 kHz speech, written with `media.write_video`."""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from comfyui_portraittalk.cli.preprocess import main as preprocess_main
from comfyui_portraittalk.faces import mediapipe_available, mouth_mask
from comfyui_portraittalk.media import write_video
from comfyui_portraittalk.training import synthtalk as st
from comfyui_portraittalk.training.layout import read_clip, read_index
from comfyui_portraittalk.training.preprocess import preprocess, resolve_settings

# The colour analyser finds SynthTalk faces where mediapipe is not installed.
BACKEND = "mediapipe" if mediapipe_available() else "colour"
PLAIN = {"glasses": False, "hat": False, "smiling": False, "background": "gray"}
CANVAS = st.BACKGROUNDS["gray"]  # the face's own background, so the colour analyser sees just the face
SIZE = 128


def synthtalk_frame(video_frame: np.ndarray, fps: float) -> np.ndarray:
    """The 25 fps SynthTalk frame a `synth_video` frame shows."""
    return np.floor(video_frame * 25 / fps + 1e-9).astype(int)


def synth_video(path: Path, seconds: float, *, seed: int, fps: float = 30, top_left=(40, 150),
                canvas=(360, 480), scale: int = 2, hide=(), audio: bool = True):
    """A SynthTalk clip as a camera would give it, drawn at `scale` x; frames listed in `hide` show no
    face. Returns the SynthTalk clip (25 fps ground truth)."""
    clip = st.make_clip(seed, seconds, 128, attributes=PLAIN)
    n = int(round(seconds * fps))
    source = np.minimum(synthtalk_frame(np.arange(n), fps), clip.num_frames - 1)
    frames = np.empty((n, *canvas, 3), np.uint8)
    frames[:] = CANVAS
    y, x = top_left
    side = 128 * scale
    frames[:, y:y + side, x:x + side] = clip.frames[source].repeat(scale, axis=1).repeat(scale, axis=2)
    frames[list(hide)] = CANVAS
    path.parent.mkdir(parents=True, exist_ok=True)
    speech = resample_poly(clip.audio, 441, 160).astype(np.float32) if audio else None
    write_video(path, frames, fps, speech, 44100)
    clip.meta["video_fps"] = fps
    return clip


def clips_of(out: Path) -> dict:
    """{video: [clip, ...]} in segment order."""
    by_video: dict = {}
    for clip_id in read_index(out)["clips"]:
        clip = read_clip(out, clip_id)
        by_video.setdefault(clip.meta["video"], []).append(clip)
    return {v: sorted(c, key=lambda c: c.meta["segment"]) for v, c in by_video.items()}


def tree_bytes(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """speaker1/a.mp4 (3 s, 30 fps, with a caption), b.mkv (2 s, 24 fps, face elsewhere), a truncated
    mp4, a video without audio, and a file that is not a video."""
    root = tmp_path_factory.mktemp("videos")
    truth = {"speaker1/a.mp4": synth_video(root / "speaker1" / "a.mp4", 3.0, seed=1),
             "b.mkv": synth_video(root / "b.mkv", 2.0, seed=2, fps=24, top_left=(90, 40))}
    (root / "speaker1" / "a.txt").write_text("a face on a gray background\n")
    data = (root / "speaker1" / "a.mp4").read_bytes()
    (root / "broken.mp4").write_bytes(data[: len(data) // 3])
    synth_video(root / "silent.mp4", 1.0, seed=3, audio=False)
    (root / "notes.md").write_text("not a video")
    return root, truth


@pytest.fixture(scope="module")
def processed(inputs, tmp_path_factory):
    root, _ = inputs
    out = tmp_path_factory.mktemp("dataset")
    report = preprocess(root, out, size=SIZE, backend=BACKEND, workers=1, verbose=False)
    return out, report


def test_clips_are_25_fps_with_16_khz_audio_and_binary_masks(processed):
    out, _ = processed
    index = read_index(out)
    assert (index["source"], index["fps"], index["sample_rate"], index["size"]) == ("preprocess", 25.0, 16000, SIZE)
    clips = clips_of(out)
    assert {v: [c.num_frames for c in cs] for v, cs in clips.items()} == {"speaker1/a.mp4": [75], "b.mkv": [50]}
    for clip in (c for cs in clips.values() for c in cs):
        f = clip.num_frames
        assert clip.frames.shape == (f, SIZE, SIZE, 3) and clip.frames.dtype == np.uint8
        assert clip.sample_rate == 16000 and len(clip.audio) == f * 16000 // 25
        for mask in (clip.face_mask, clip.lip_mask):
            assert mask.shape == (f, SIZE, SIZE) and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255}
        face_area = (clip.face_mask > 0).mean(axis=(1, 2))
        assert (face_area > 0.3).all(), "the face fills a good part of the crop"
        lip, face = clip.lip_mask > 0, clip.face_mask > 0
        assert (lip & face).sum() >= 0.9 * lip.sum(), "the lips lie in the face"
        assert clip.meta["faces"]["detected_frames"] == f and clip.meta["backend"] == BACKEND


def test_crop_follows_the_face_and_the_lip_mask_covers_the_mouth(processed, inputs):
    out, _ = processed
    _, truth = inputs
    for video, (clip,) in clips_of(out).items():
        mouth = np.stack([mouth_mask(frame, tolerance=40) for frame in clip.frames])
        count = mouth.sum(axis=(1, 2))
        open_frames = count > 50  # a closed mouth shows a few blurred pixels of the colour at most
        assert open_frames.mean() > 0.3
        inside = (mouth & (clip.lip_mask > 0)).sum(axis=(1, 2))
        assert (inside[open_frames] >= 0.95 * count[open_frames]).mean() >= 0.9, video
        # The mouth in the crop opens and closes with the ground truth of the nearest source frame.
        fps = truth[video].meta["video_fps"]
        nearest = np.round(np.arange(clip.num_frames) / 25 * fps).astype(int)
        height = np.array(truth[video].meta["per_frame"]["mouth_height"])[synthtalk_frame(nearest, fps)]
        assert np.corrcoef(count, height)[0, 1] > 0.95, video


def test_audio_is_the_source_speech_on_the_video_clock(processed, inputs):
    out, _ = processed
    _, truth = inputs
    for video, (clip,) in clips_of(out).items():
        reference = truth[video].audio[: len(clip.audio)]
        lags = np.arange(-800, 801, 4)  # ±50 ms
        scores = [np.dot(np.roll(clip.audio, -lag), reference) for lag in lags]
        best = lags[int(np.argmax(scores))]
        # media.write_video's AAC adds about 23 ms of encoder delay; one video frame is 40 ms.
        assert abs(best) <= 640, (video, best)
        shifted = np.roll(clip.audio, -best)[:-800]
        assert np.corrcoef(shifted, reference[:-800])[0, 1] > 0.9


def test_captions_come_from_sidecar_text_files(processed):
    out, _ = processed
    clips = clips_of(out)
    assert clips["speaker1/a.mp4"][0].caption == "a face on a gray background"
    assert clips["b.mkv"][0].caption == ""


def test_bad_files_are_reported_and_the_others_succeed(processed):
    out, report = processed
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["failed"] == report["failed"]
    failed = {f["video"]: f["error"] for f in report["failed"]}
    assert set(failed) == {"broken.mp4", "silent.mp4"}
    assert "no audio" in failed["silent.mp4"]
    assert report["ignored"] == ["notes.md"], "captions are not reported, other files are"
    assert (report["videos"], report["videos_failed"], report["clips"]) == (4, 2, 2)
    assert len(read_index(out)["clips"]) == 2


def test_meta_records_where_each_clip_came_from(processed):
    out, _ = processed
    meta = clips_of(out)["b.mkv"][0].meta
    assert (meta["source"], meta["video"], meta["start_seconds"], meta["frames"]) == ("preprocess", "b.mkv", 0.0, 50)
    assert meta["source_video"]["width"] == 480 and abs(meta["source_video"]["fps"] - 24) < 1e-6
    # Matroska marks the AAC encoder delay by starting the audio 23 ms late: those samples read as silence.
    assert meta["audio"]["source_sample_rate"] == 44100 and meta["audio"]["missing_samples"] <= 0.025 * 16000
    crop = meta["crop"]
    # The face (drawn at 2x, top-left (90, 40), 256 px) is inside the crop square, and fills it.
    assert 40 < crop["centre_x"] < 40 + 256 and 90 < crop["centre_y"] < 90 + 256
    assert 100 < crop["side"] < 256
    assert len(meta["per_frame"]["mouth_open"]) == 50 and meta["preprocess"]["size"] == SIZE


def test_resume_keeps_finished_clips_and_redoes_the_rest(processed, tmp_path):
    out, _ = processed
    copy = tmp_path / "dataset"
    shutil.copytree(out, copy)  # copy2: mtimes kept
    clips = read_index(copy)["clips"]
    a_clip = next(c for c in clips if c.startswith("speaker1_a_mp4"))
    b_clip = next(c for c in clips if c.startswith("b_mkv"))
    # a: its clip is done but the video is not marked done (a run stopped between the two);
    # b: stopped before its clip was finished.
    for record in (copy / "videos").glob("speaker1_a_mp4-*.json"):
        record.unlink()
    shutil.rmtree(copy / "clips" / b_clip)
    before = {p: p.stat().st_mtime_ns for p in (copy / "clips" / a_clip).iterdir()}
    report = preprocess(processed[1]["input"], copy, size=SIZE, backend=BACKEND, verbose=False)
    assert report["clips"] == 2 and report["videos_resumed"] == 0
    assert {p: p.stat().st_mtime_ns for p in (copy / "clips" / a_clip).iterdir()} == before
    assert tree_bytes(copy / "clips") == tree_bytes(out / "clips")
    # Everything done now: a third run decodes nothing.
    again = preprocess(processed[1]["input"], copy, size=SIZE, backend=BACKEND, verbose=False)
    assert again["videos_resumed"] == 2 and again["clips"] == 2


def test_two_workers_give_the_same_output_as_one(processed, tmp_path):
    out, report = processed
    parallel = preprocess(report["input"], tmp_path / "two", size=SIZE, backend=BACKEND, workers=2, verbose=False)
    assert parallel["failed"] == report["failed"]
    assert tree_bytes(tmp_path / "two" / "clips") == tree_bytes(out / "clips")
    assert (tmp_path / "two" / "dataset.json").read_text() == (out / "dataset.json").read_text()


def test_other_settings_in_the_same_folder_are_refused(processed, tmp_path):
    out, report = processed
    copy = tmp_path / "dataset"
    shutil.copytree(out, copy)
    with pytest.raises(ValueError, match="another OUT_DIR or --overwrite"):
        preprocess(report["input"], copy, size=64, backend=BACKEND, verbose=False)


def test_clip_store_reads_the_result(processed):
    from comfyui_portraittalk.models.networks.audio import MelEncoder
    from comfyui_portraittalk.training.data import ClipStore

    out, _ = processed
    store = ClipStore(out, MelEncoder(), 2)
    assert len(store) == 2
    for index in range(len(store)):
        clip = store.clip(index)
        assert clip.audio_windows.shape[:2] == (clip.num_frames, 5)


def test_long_videos_are_split_at_fixed_offsets(tmp_path):
    synth_video(tmp_path / "in" / "long.mp4", 3.0, seed=4, canvas=(160, 192), top_left=(16, 32), scale=1)
    whole = preprocess(tmp_path / "in", tmp_path / "whole", size=32, backend="fallback", verbose=False)
    split = preprocess(tmp_path / "in", tmp_path / "split", size=32, backend="fallback", clip_seconds=1.2,
                       min_seconds=0.5, verbose=False)
    assert (whole["clips"], split["clips"]) == (1, 3)
    (one,), pieces = clips_of(tmp_path / "whole")["long.mp4"], clips_of(tmp_path / "split")["long.mp4"]
    assert [c.num_frames for c in pieces] == [30, 30, 15]
    assert [c.meta["start_seconds"] for c in pieces] == [0.0, 1.2, 2.4]
    # The centre crop is the same for every piece, so the pieces put together are the whole.
    assert np.array_equal(np.concatenate([c.frames for c in pieces]), one.frames)
    assert np.array_equal(np.concatenate([c.audio for c in pieces]), one.audio)
    # Resumed after the first and last pieces were written: the middle one comes out the same.
    middle = sorted(read_index(tmp_path / "split")["clips"])[1]
    expected = tree_bytes(tmp_path / "split" / "clips")
    shutil.rmtree(tmp_path / "split" / "clips" / middle)
    shutil.rmtree(tmp_path / "split" / "videos")
    preprocess(tmp_path / "in", tmp_path / "split", size=32, backend="fallback", clip_seconds=1.2, min_seconds=0.5,
               verbose=False)
    assert tree_bytes(tmp_path / "split" / "clips") == expected
    # --max-seconds cuts the video; a last piece shorter than --min-seconds is dropped and reported.
    short = preprocess(tmp_path / "in", tmp_path / "short", size=32, backend="fallback", clip_seconds=1.2,
                       min_seconds=0.5, max_seconds=2.6, verbose=False)
    assert [c.num_frames for c in clips_of(tmp_path / "short")["long.mp4"]] == [30, 30]
    assert short["dropped"][0]["frames"] == 5 and "min-seconds" in short["dropped"][0]["reason"]


def test_frames_and_audio_keep_their_timing(tmp_path):
    """A flash at 1.0 s and a click at 1.0 s land on frame 25 and sample 16000, with the audio stream
    starting 0.2 s after the video (PCM audio, so no codec delay)."""
    import av

    sr, path = 44100, tmp_path / "in" / "sync.mkv"
    path.parent.mkdir()
    frames = np.full((90, 48, 64, 3), 60, np.uint8)
    frames[30] = 250
    audio = np.zeros(int(2.8 * sr), np.int16)
    audio[int(0.8 * sr):int(0.8 * sr) + 40] = 30000  # 0.8 s into a stream that starts at 0.2 s
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=sr)
        sound.layout = "mono"
        for f in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(video.encode())
        chunk = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="s16", layout="mono")
        chunk.sample_rate, chunk.pts, chunk.time_base = sr, int(0.2 * sr), Fraction(1, sr)
        container.mux(sound.encode(chunk))
        container.mux(sound.encode())
    preprocess(path.parent, tmp_path / "out", size=16, backend="fallback", verbose=False)
    (clip,) = clips_of(tmp_path / "out")["sync.mkv"]
    assert clip.num_frames == 75
    assert int(np.argmax(clip.frames.mean(axis=(1, 2, 3)))) == 25
    assert abs(int(np.argmax(np.abs(clip.audio))) - 16000) <= 32  # 2 ms
    assert clip.meta["audio"]["missing_samples"] == int(0.2 * 16000), "the silent lead-in is counted"


def test_lost_faces_are_filled_and_faceless_videos_fail(tmp_path):
    synth_video(tmp_path / "in" / "blinks.mp4", 2.0, seed=5, hide=range(20, 26))
    synth_video(tmp_path / "in" / "empty.mp4", 1.2, seed=6, hide=range(36))
    report = preprocess(tmp_path / "in", tmp_path / "out", size=64, backend=BACKEND, verbose=False)
    (clip,) = clips_of(tmp_path / "out")["blinks.mp4"]
    filled = np.array(clip.meta["per_frame"]["face_filled"], bool)
    assert clip.meta["faces"]["filled_frames"] == filled.sum() == 5  # 30 fps frames 20-25 → 25 fps 17-21
    assert (clip.face_mask[filled] > 0).any(axis=(1, 2)).all(), "filled frames keep the last face's masks"
    assert [f["video"] for f in report["failed"]] == ["empty.mp4"]
    assert "a face was found in 0 of 30 frames" in report["failed"][0]["error"]


def test_frames_as_mp4_for_large_crops(processed, tmp_path):
    assert resolve_settings(128, 25, 1.2, "fallback", "auto", 10, 1, None).frames_format == "npy"
    assert resolve_settings(129, 25, 1.2, "fallback", "auto", 10, 1, None).frames_format == "mp4"
    out, report = processed
    preprocess(report["input"], tmp_path / "mp4", size=SIZE, backend=BACKEND, frames_format="mp4", verbose=False)
    for clip_id in read_index(out)["clips"]:
        assert (tmp_path / "mp4" / "clips" / clip_id / "frames.mp4").is_file()
        decoded, stored = read_clip(tmp_path / "mp4", clip_id), read_clip(out, clip_id)
        assert decoded.frames.shape == stored.frames.shape
        assert np.abs(decoded.frames.astype(int) - stored.frames).mean() < 2.0
        assert np.array_equal(decoded.lip_mask, stored.lip_mask)


def test_command_line(tmp_path, capsys):
    synth_video(tmp_path / "in" / "one.mp4", 1.0, seed=7, canvas=(160, 192), top_left=(16, 32), scale=1)
    assert preprocess_main([str(tmp_path / "in"), str(tmp_path / "out"), "--size", "32", "--backend", "fallback",
                            "--workers", "1"]) == 0
    assert "1 clips from 1 of 1 videos" in capsys.readouterr().out
    assert preprocess_main([str(tmp_path / "nowhere"), str(tmp_path / "out2")]) == 2
    os.remove(tmp_path / "in" / "one.mp4")
    assert preprocess_main([str(tmp_path / "in"), str(tmp_path / "out3"), "--backend", "fallback"]) == 1
