"""media: the one mp4 writer (each kind of file keeps its settings) and ComfyUI's IMAGE/AUDIO values as
arrays, without a ComfyUI server."""

import os

import av
import numpy as np
import pytest
import torch

from comfyui_portraittalk.media import (CLIP_FRAMES, PARTIAL_PREVIEW, PREVIEW, VIDEO_FILE, as_frames, audio_clip,
                                        first_two_channels, frame_uint8, mixed_down_soundtrack, read_video,
                                        write_mp4, write_video)


def _frames(n=6, h=32, w=48):
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), np.full_like(xx, 90)], -1).astype(np.uint8)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(n)])


def _tone(n, rate, channels=1):
    t = np.arange(n) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)]).astype(np.float32)


def _streams(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        first_audio_pts = next((p.pts for p in c.demux(a) if p.pts is not None), None) if a else None
        return (v.codec_context.pix_fmt, v.width, v.height, v.average_rate,
                None if a is None else (a.codec_context.name, a.rate, a.layout.name), first_audio_pts)


@pytest.mark.parametrize("settings, pix_fmt, denominator", [(VIDEO_FILE, "yuv420p", 1000),
                                                            (CLIP_FRAMES, "yuv444p", 1000),
                                                            (PREVIEW, "yuv420p", 1001)])
def test_each_kind_keeps_its_pixel_format_and_frame_rate(tmp_path, settings, pix_fmt, denominator):
    path = tmp_path / "v.mp4"
    write_mp4(path, _frames(), 29.97, settings=settings)
    fmt, width, height, rate, audio, _ = _streams(path)
    assert (fmt, width, height, audio) == (pix_fmt, 48, 32, None)
    assert rate.denominator <= denominator and abs(float(rate) - 29.97) < 1e-3
    assert os.listdir(tmp_path) == ["v.mp4"]  # the temporary file was renamed, not left behind


def test_odd_sizes_are_padded_only_where_chroma_is_subsampled(tmp_path):
    frames = _frames(h=31, w=47)
    write_mp4(tmp_path / "420.mp4", frames, 25.0, settings=PREVIEW)
    write_mp4(tmp_path / "444.mp4", frames, 25.0, settings=CLIP_FRAMES)
    assert _streams(tmp_path / "420.mp4")[1:3] == (48, 32)
    assert _streams(tmp_path / "444.mp4")[1:3] == (47, 31)
    padded = read_video(tmp_path / "420.mp4").frames
    # The added column repeats the last one (edge padding), so it decodes close to it.
    assert np.abs(padded[:, :, 47].astype(int) - padded[:, :, 46].astype(int)).mean() < 8


def test_preview_audio_starts_with_the_picture_and_video_file_audio_keeps_the_encoder_delay(tmp_path):
    audio = _tone(16000 * 6 // 25, 16000)
    write_mp4(tmp_path / "p.mp4", _frames(), 25.0, audio, 16000, settings=PREVIEW)
    write_video(tmp_path / "v.mp4", _frames(), 25.0, audio[0], 16000)
    assert _streams(tmp_path / "p.mp4")[4:] == (("aac", 16000, "mono"), -1024)  # priming samples before 0
    assert _streams(tmp_path / "v.mp4")[4:] == (("aac", 16000, "mono"), 0)


def test_stereo_stays_stereo_and_other_rates_become_48k(tmp_path):
    write_mp4(tmp_path / "s.mp4", _frames(), 25.0, _tone(22000 // 4, 22000, 2), 22000, settings=PARTIAL_PREVIEW)
    assert _streams(tmp_path / "s.mp4")[4] == ("aac", 48000, "stereo")


def test_the_moov_atom_comes_first_only_for_previews(tmp_path):
    write_mp4(tmp_path / "p.mp4", _frames(), 25.0, settings=PREVIEW)
    write_mp4(tmp_path / "v.mp4", _frames(), 25.0, settings=VIDEO_FILE)

    def first_box(path, names=(b"moov", b"mdat")):
        data = path.read_bytes()
        return min(names, key=lambda n: data.find(n) if data.find(n) >= 0 else len(data))

    assert first_box(tmp_path / "p.mp4") == b"moov" and first_box(tmp_path / "v.mp4") == b"mdat"


def test_on_frame_counts_every_frame_and_a_failed_write_leaves_no_file(tmp_path):
    seen = []
    write_mp4(tmp_path / "a.mp4", _frames(4), 25.0, settings=PREVIEW, on_frame=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_mp4(tmp_path / "b.mp4", _frames(4), 25.0, settings=PREVIEW, on_frame=stop)
    assert sorted(os.listdir(tmp_path)) == ["a.mp4"]


def test_as_frames_and_frame_uint8_take_comfy_images():
    images = torch.rand(3, 8, 10, 4)
    frames = as_frames(images)
    assert isinstance(frames, np.ndarray) and frames.shape == (3, 8, 10, 4)
    rgb = frame_uint8(frames[0])
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 10, 3)
    np.testing.assert_array_equal(rgb, np.clip(images[0, ..., :3].numpy() * 255 + 0.5, 0, 255).astype(np.uint8))
    assert frame_uint8(np.zeros((2, 2, 1), np.float32) + 1.0).tolist() == [[[255] * 3] * 2] * 2
    assert as_frames(np.zeros((4, 4, 3), np.uint8)).shape == (1, 4, 4, 3)
    with pytest.raises(ValueError, match="reference: the video is empty"):
        as_frames(torch.zeros(0, 4, 4, 3), "reference")
    with pytest.raises(ValueError, match=r"images: expected frames \[F, H, W, 3\]"):
        as_frames(torch.zeros(2, 4, 4, 5))


def test_audio_clip_is_the_first_clip_as_float32_channels_by_samples():
    batch = torch.arange(2 * 3 * 5, dtype=torch.float64).reshape(2, 3, 5)
    clip, rate = audio_clip({"waveform": batch, "sample_rate": 22050.0})
    assert clip.dtype == np.float32 and clip.shape == (3, 5) and rate == 22050 and isinstance(rate, int)
    np.testing.assert_array_equal(clip, batch[0].numpy())
    assert audio_clip({"waveform": np.ones(7), "sample_rate": 8000})[0].shape == (1, 7)


def test_first_two_channels_keeps_two_clipped_channels_or_nothing():
    loud = torch.tensor([[[0.5, 2.0, float("nan")], [-3.0, 0.1, 0.2], [9.0, 9.0, 9.0]]])
    w, rate = first_two_channels({"waveform": loud, "sample_rate": 16000})
    assert rate == 16000 and w.shape == (2, 3) and w.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(w, [[0.5, 1.0, 0.0], [-1.0, 0.1, 0.2]], rtol=1e-6)
    assert first_two_channels(None) == (None, None)
    assert first_two_channels({"waveform": torch.zeros(1, 2, 0), "sample_rate": 16000}) == (None, None)


def test_mixed_down_soundtrack_mixes_many_channels_and_rescales_int16_floats():
    six = torch.rand(1, 6, 100) * 0.5
    w, rate = mixed_down_soundtrack({"waveform": six, "sample_rate": 48000})
    assert isinstance(w, torch.Tensor) and w.shape == (1, 100) and rate == 48000
    torch.testing.assert_close(w, six[0].mean(dim=0, keepdim=True), rtol=0, atol=0)
    stereo = torch.tensor([[[16384.0, -32768.0], [0.0, 8192.0]]])
    w, _ = mixed_down_soundtrack({"waveform": stereo, "sample_rate": 16000})
    assert w.tolist() == [[0.5, -1.0], [0.0, 0.25]]
    quiet = torch.tensor([[[0.5, -0.25]]])
    assert mixed_down_soundtrack({"waveform": quiet, "sample_rate": 16000})[0].tolist() == [[0.5, -0.25]]
