"""Reading and writing videos, audio and images (PyAV, soundfile, PIL), for the command line,
evaluation and preprocessing."""

from __future__ import annotations

import os
from dataclasses import dataclass

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
    """H.264/AAC mp4 (used by tests and examples; frames must have even sizes)."""
    import av
    from fractions import Fraction

    frames = np.asarray(frames, np.uint8)
    with av.open(os.fspath(path), "w") as out:
        v = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.options = {"crf": "12", "preset": "ultrafast"}
        a = None
        if audio is not None:
            a = out.add_stream("aac", rate=sample_rate)
            a.layout = "mono"
        for f in frames:
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            samples = np.asarray(audio, np.float32).reshape(1, -1)
            af = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            af.sample_rate = sample_rate
            for p in a.encode(af):
                out.mux(p)
            for p in a.encode():
                out.mux(p)
