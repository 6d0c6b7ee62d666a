"""Reading and writing videos, audio and images (PyAV, soundfile, PIL), for the command line, evaluation,
preprocessing and the preview nodes; and ComfyUI's IMAGE and AUDIO values as arrays. Plain Python: no ComfyUI
import, and torch only where a value is a tensor."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".gif")


@dataclass
class Video:
    frames: np.ndarray  # uint8 [F, H, W, 3]
    fps: float
    audio: np.ndarray | None  # float32 [T] mono, or None when the file has no audio stream
    sample_rate: int | None


def read_video(path: str | os.PathLike) -> Video:
    """All frames (RGB uint8) and the first audio stream (mono float) of a video file."""
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video not found: {path!r}")
    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path!r} has no video stream")
        vstream = container.streams.video[0]
        fps = float(vstream.average_rate or vstream.guessed_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(vstream)]
    audio, sr = None, None
    with av.open(path) as container:
        if container.streams.audio:
            audio, sr = _decode_audio(container, container.streams.audio[0])
    if not frames:
        raise ValueError(f"{path!r} has no decodable video frames")
    return Video(np.stack(frames), fps, audio, sr)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of an audio (or video) file."""
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"audio not found: {path!r}")
    try:
        import soundfile as sf
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        return data.mean(axis=1), int(sr)
    except Exception:
        pass  # not a format libsndfile reads (e.g. mp4/m4a): decode with PyAV
    with av.open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path!r} has no audio stream")
        audio, sr = _decode_audio(container, container.streams.audio[0])
    return audio, sr


def read_image(path: str | os.PathLike) -> np.ndarray:
    from PIL import Image

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path!r}")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _decode_audio(container, stream) -> tuple[np.ndarray, int]:
    import av

    sr = int(stream.rate or stream.codec_context.sample_rate)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
    chunks = []
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return audio, sr


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, audio: np.ndarray | None = None,
                sample_rate: int = 16000) -> None:
    """H.264/AAC video of uint8 frames [F, H, W, 3] and mono audio [T] (the command line, tests and examples;
    the container follows the file name's extension)."""
    frames = np.asarray(frames, np.uint8)
    waveform = None if audio is None else np.asarray(audio, np.float32).reshape(1, -1)
    write_mp4(path, frames, fps, waveform, sample_rate, settings=VIDEO_FILE)


@dataclass(frozen=True)
class Mp4Settings:
    """How one kind of video this package writes is encoded (H.264 video, AAC audio)."""
    crf: int
    preset: str
    pix_fmt: str = "yuv420p"
    rate_denominator: int = 1000  # the frame rate as a fraction with at most this denominator
    faststart: bool = False  # moov atom first, so that playback starts before the download ends
    # Audio timestamped from 0: the AAC encoder's priming samples (1024) get negative times that players
    # skip, so sound and picture start together. Without it the audio starts 1024 samples late.
    audio_from_zero: bool = False


# Each kind keeps the settings its files have always had: changing one changes those files' bytes.
VIDEO_FILE = Mp4Settings(crf=12, preset="ultrafast")  # `write_video`
CLIP_FRAMES = Mp4Settings(crf=10, preset="veryfast", pix_fmt="yuv444p")  # dataset clips: 4:4:4 keeps lip edges
PREVIEW = Mp4Settings(crf=20, preset="veryfast", rate_denominator=1001, faststart=True,
                      audio_from_zero=True)  # played in the browser
PARTIAL_PREVIEW = replace(PREVIEW, crf=26, preset="ultrafast")  # cheap enough to write during a run

# AAC has a fixed set of sample rates; any other rate is resampled to 48 kHz by PyAV.
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float, waveform: np.ndarray | None = None,
              sample_rate: int | None = None, *, settings: Mp4Settings, on_frame=None) -> None:
    """H.264 video with AAC audio, written to a temporary file that replaces `path` only when complete (a
    browser never fetches half a file, a failed run leaves none).

    frames: [F, H, W, C] uint8 or float 0..1 (see `as_frames`), converted a frame at a time; with yuv420p
    odd sizes get their last row/column repeated (4:2:0 needs even sizes). waveform: float [C, T] with C
    of 1 or 2. on_frame(done, total) after each frame."""
    import av

    path = os.fspath(path)
    height, width = frames.shape[1], frames.shape[2]
    if settings.pix_fmt.startswith("yuv420"):
        height, width = height + height % 2, width + width % 2
    pad = ((0, height - frames.shape[1]), (0, width - frames.shape[2]), (0, 0))
    root, extension = os.path.splitext(path)
    tmp = f"{root}.{uuid.uuid4().hex[:6]}.part{extension}"  # the extension names the container
    options = {"movflags": "+faststart"} if settings.faststart else {}
    try:
        with av.open(tmp, "w", options=options) as out:
            video = out.add_stream("libx264", rate=Fraction(float(fps)).limit_denominator(settings.rate_denominator))
            video.width, video.height, video.pix_fmt = width, height, settings.pix_fmt
            video.options = {"crf": str(settings.crf), "preset": settings.preset}
            sound = None
            if waveform is not None:
                sound = out.add_stream("aac", rate=sample_rate if sample_rate in AAC_RATES else 48000)
                sound.layout = "stereo" if waveform.shape[0] == 2 else "mono"
            for i, frame in enumerate(frames):
                rgb = np.pad(frame_uint8(frame), pad, mode="edge")
                out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
                if on_frame is not None:
                    on_frame(i + 1, len(frames))
            out.mux(video.encode())
            if sound is not None:
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(waveform, np.float32), format="fltp",
                                                   layout=sound.layout.name)
                chunk.sample_rate = sample_rate
                if settings.audio_from_zero:
                    chunk.pts = 0
                out.mux(sound.encode(chunk))
                out.mux(sound.encode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):  # failed or interrupted
            os.remove(tmp)


# ---- ComfyUI's IMAGE and AUDIO values as arrays (no ComfyUI import: they are tensors and dicts) ----------

def as_frames(images, name: str = "images") -> np.ndarray:
    """IMAGE [F, H, W, C] (torch or numpy, float 0..1 or uint8) as a numpy view, shape checked; the
    conversion to uint8 happens a frame at a time (`frame_uint8`), so a long video never exists twice in
    memory. Errors name the input (`name`)."""
    if hasattr(images, "detach"):
        images = images.detach().cpu()
        images = images.numpy() if str(images.dtype) == "torch.uint8" else images.float().numpy()
    frames = np.asarray(images)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected frames [F, H, W, 3], got shape {tuple(frames.shape)}")
    if 0 in frames.shape:
        raise ValueError(f"{name}: the video is empty (shape {tuple(frames.shape)})")
    return frames


def frame_uint8(frame: np.ndarray) -> np.ndarray:
    """One frame [H, W, C] → uint8 RGB [H, W, 3]."""
    if frame.dtype != np.uint8:
        frame = np.clip(np.nan_to_num(frame.astype(np.float32)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return frame[..., :3]


def audio_clip(audio) -> tuple[np.ndarray, int]:
    """A ComfyUI AUDIO value ({"waveform": [B, C, T] tensor, "sample_rate": int}) → its first clip as
    float32 [C, T] and the sample rate. [C, T] and [T] waveforms are taken as one clip."""
    waveform, rate = audio["waveform"], int(audio["sample_rate"])
    if hasattr(waveform, "detach"):  # a torch tensor, without importing torch
        waveform = waveform.detach().cpu().float().numpy()
    clip = np.asarray(waveform, np.float32)
    while clip.ndim > 2:
        clip = clip[0]
    if clip.ndim == 1:
        clip = clip[None]
    return clip, rate


def first_two_channels(audio) -> tuple[np.ndarray | None, int | None]:
    """A ComfyUI AUDIO value as the preview plays it: float32 [C, T] with C ≤ 2 (the first two channels),
    clipped to -1..1, and its rate; (None, None) for no audio or zero samples."""
    if audio is None:
        return None, None
    clip, rate = audio_clip(audio)
    if clip.shape[-1] == 0 or rate <= 0:
        return None, None
    return np.ascontiguousarray(np.clip(np.nan_to_num(clip[:2]), -1.0, 1.0)), rate


def mixed_down_soundtrack(audio):
    """A ComfyUI AUDIO value as a video file needs it: its first clip as a torch float32 `[C, T]` with C ≤ 2
    (SaveVideo writes anything else as stereo, garbled), and its rate. More channels are mixed down to mono,
    as Encode Audio hears them; floats in int16 range are rescaled to -1..1, as Encode Audio does."""
    import torch  # the mix-down stays torch's mean: its float sums decide the saved videos' bytes

    clip, rate = audio_clip(audio)
    w = torch.from_numpy(clip)
    if w.shape[0] > 2:
        w = w.mean(dim=0, keepdim=True)
    peak = float(w.abs().max()) if w.numel() else 0.0
    if 1.5 < peak <= 32768 * 1.01:
        w = w / 32768.0
    return w, rate
