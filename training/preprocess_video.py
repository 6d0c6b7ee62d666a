"""One talking-head video → clips in the layout of `layout.py`: the work of one `portraittalk preprocess` job.

The video is cut into segments of `clip_seconds` at fixed frame offsets, so a segment's frames never depend
on how the video ends and a finished clip can be skipped on resume without looking at it again. For each
segment:

* frames: the decoded frame nearest in time to each t = start + f / fps (start: the first frame's time);
* faces: `detect_faces` on each frame (scaled down to `DETECT_MAX_SIDE`; with mediapipe first near the
  previous face, see `search_windows`), gaps filled with the last good face (`FaceTrack`); a segment where
  a real detector finds a face in fewer than `MIN_FACE_FRACTION` of the frames is dropped, and so is a
  trailing segment shorter than `min_seconds`;
* crop: ONE square per segment (HDTF-style, the crop never jitters): the robust union of the smoothed face
  boxes (5th/95th percentiles), its longer side times `expand`, resized to `size`; no face at all (the
  `fallback` backend) gives the largest centred square, as `crop_face` does;
* masks: face and lip regions of each frame's landmarks mapped into the crop (`face_region_mask`; ellipses
  from the box without landmarks), thresholded to {0, 255}; the lip mask is grown by
  max(2 px, `LIP_MARGIN` × size), the margin SynthTalk's lip masks have;
* audio: the first audio stream as 16 kHz mono (PyAV's resampler) on the video's clock, so sample j is at
  time start + j / 16000 whatever the streams' start times.

Memory: two decoders walk the file in step, so this code holds one full-resolution frame at a time (and
the crops of one segment). The first finds the faces of a segment, then the second crops the same frames
with the segment's square.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from itertools import count, islice
from pathlib import Path

import numpy as np

from ..faces import CropInfo, FaceTrack, crop_with_info, detect_faces, face_region_mask, observation_in_crop
from ..faces.observation import FaceObservation
from .layout import Clip, write_clip

PREPROCESS_VERSION = 1
SAMPLE_RATE = 16000
DETECT_MAX_SIDE = 960  # landmarks are found on frames scaled down to this (the detector works far smaller)
ROI_SCALE = 2.5  # the window around the previous face, in face sizes
MIN_FACE_FRACTION = 0.5  # a segment needs a detected face in at least this share of its frames
BOX_SMOOTHING = 5  # frames in the moving average over face boxes
BOX_PERCENTILES = (5.0, 95.0)  # the segment's face region: robust to a few stray detections
LIP_MARGIN = 0.02
MAX_MISSING_AUDIO = 0.5  # a segment more than half outside the audio track is dropped
DETECTORS = ("mediapipe", "colour")  # backends that really look for a face (not the fallback guess)


class VideoError(Exception):
    """A file that cannot be made into clips; the job reports it and the run goes on."""


@dataclass(frozen=True)
class Settings:
    """Everything the clips depend on; `backend` and `frames_format` are resolved ("auto" never appears)."""

    fps: float = 25.0
    size: int = 512
    expand: float = 1.2
    backend: str = "fallback"
    frames_format: str = "mp4"
    clip_seconds: float = 10.0
    min_seconds: float = 1.0
    max_seconds: float | None = None

    @property
    def clip_frames(self) -> int:
        return max(1, int(round(self.clip_seconds * self.fps)))

    @property
    def min_frames(self) -> int:
        return max(1, int(math.ceil(self.min_seconds * self.fps - 1e-9)))

    @property
    def max_frames(self) -> int | None:
        return None if self.max_seconds is None else int(math.floor(self.max_seconds * self.fps + 1e-9))

    def clip_settings(self) -> dict:
        """What a finished clip was made with (max_seconds only decides how many clips there are)."""
        d = dataclasses.asdict(self)
        d.pop("max_seconds")
        return {"version": PREPROCESS_VERSION, "sample_rate": SAMPLE_RATE, **d}


# ---------------------------------------------------------------- names


def video_key(rel: str) -> str:
    """A readable, unique, filesystem-safe name for a video's relative path."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", rel).strip("_")[:60] or "video"
    return f"{slug}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"


def clip_id_for(rel: str, segment: int) -> str:
    return f"{video_key(rel)}-{segment:04d}"


# ---------------------------------------------------------------- decoding


class ResampledFrames:
    """The first video stream at a constant `fps`: output frame k is the decoded frame nearest in time to
    start + k / fps. Yields `av.VideoFrame`s, so that callers convert only the frames they use.
    The first frame is decoded on construction: `start_time`, `width` and `height` are known at once."""

    def __init__(self, path: str, fps: float, max_frames: int | None = None):
        import av

        self.fps, self.max_frames = float(fps), max_frames
        self.container = av.open(path)
        try:
            if not self.container.streams.video:
                raise VideoError("no video stream")
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            rate = self.stream.average_rate or self.stream.guessed_rate
            self.source_fps = float(rate) if rate else None
            self._timed = self._timed_frames()
            self._first = next(self._timed, None)
            if self._first is None:
                raise VideoError("no decodable video frames")
        except BaseException:
            self.container.close()
            raise
        self.start_time = self._first[1]
        self.width, self.height = self._first[0].width, self._first[0].height
        self._frames = self._resample()

    def _timed_frames(self):
        step = 1.0 / (self.source_fps or 25.0)
        last = None
        for frame in self.container.decode(self.stream):
            t = frame.time
            if t is None:  # no timestamp: assume the nominal rate
                t = 0.0 if last is None else last + step
            elif last is not None and t < last:  # broken timestamps must not run the clock backwards
                t = last
            last = t
            yield frame, t

    def _frame_duration(self, frame) -> float:
        duration = getattr(frame, "duration", None)
        if duration and frame.time_base:
            return float(duration * frame.time_base)
        return 1.0 / (self.source_fps or 25.0)

    def _resample(self):
        k = 0
        limit = math.inf if self.max_frames is None else self.max_frames
        previous, previous_t = self._first
        for frame, t in self._timed:
            midpoint = 0.5 * (previous_t + t)  # targets before it are nearer the previous frame
            while k < limit and self.start_time + k / self.fps < midpoint:
                yield previous
                k += 1
            if k >= limit:
                return
            previous, previous_t = frame, t
        end = previous_t + self._frame_duration(previous)
        while k < limit and self.start_time + k / self.fps < end - 1e-6:
            yield previous
            k += 1

    def take(self, n: int):
        """The next `n` frames (fewer at the end), lazily."""
        return islice(self._frames, n)

    def skip(self, n: int) -> int:
        """Pass over `n` frames without converting them; returns how many there were."""
        return sum(1 for _ in self.take(n))

    def close(self) -> None:
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AudioCursor:
    """The first audio stream as 16 kHz mono on the video's clock: sample j is at `start_time + j / 16000`.
    `read` moves forward only, so just the samples not yet read are held."""

    def __init__(self, path: str, start_time: float):
        import av

        self.container = av.open(path)
        if not self.container.streams.audio:
            self.container.close()
            raise VideoError("no audio stream")
        self.stream = self.container.streams.audio[0]
        self.source_rate = int(self.stream.rate or self.stream.codec_context.sample_rate or 0)
        self.source_channels = int(self.stream.codec_context.channels or 0)
        self.start_time = float(start_time)
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self._chunks = self._decode()
        self._buffer = np.zeros(0, np.float32)
        self._buffer_start: int | None = None  # video-clock index of _buffer[0], known at the first frame

    def _decode(self):
        for frame in self.container.decode(self.stream):
            if self._buffer_start is None:
                t = frame.time if frame.time is not None else self.start_time
                self._buffer_start = int(round((t - self.start_time) * SAMPLE_RATE))
            for out in self._resampler.resample(frame):
                yield out.to_ndarray().reshape(-1)
        for out in self._resampler.resample(None):
            yield out.to_ndarray().reshape(-1)

    def read(self, first: int, length: int) -> tuple[np.ndarray, int]:
        """Samples [first, first + length) and how many of them the stream did not have (read as zeros)."""
        end = first + length
        pending = [self._buffer]
        held = len(self._buffer)
        for chunk in self._chunks:
            pending.append(chunk)
            held += len(chunk)
            if self._buffer_start + held >= end:
                break
            if self._buffer_start + held <= first:  # passing over finished clips: hold nothing
                self._buffer_start += held
                pending, held = [], 0
        self._buffer = np.concatenate(pending).astype(np.float32, copy=False) if pending else np.zeros(0, np.float32)
        start = 0 if self._buffer_start is None else self._buffer_start
        out = np.zeros(length, np.float32)
        lo, hi = max(first, start), min(end, start + len(self._buffer))
        if hi > lo:
            out[lo - first:hi - first] = self._buffer[lo - start:hi - start]
        # Drop what lies before `end`: reads only move forward.
        drop = min(max(end - start, 0), len(self._buffer))
        self._buffer = self._buffer[drop:]
        self._buffer_start = start + drop
        return out, length - max(hi - lo, 0)

    def close(self) -> None:
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------- faces, crop and masks


def search_windows(width: int, height: int, previous: tuple | None, backend: str) -> list[tuple[int, int, int, int]]:
    """Where to look for the face, in order: around the previous face, the whole frame, then squares along a
    wide frame's long side. mediapipe's detector sees a 128 px copy of its input, so a face that is small in
    a 16:9 frame can vanish in the whole frame yet be found in a square. The colour analyser reads the
    background from the image border, so it gets the whole frame only."""
    whole = (0, 0, width, height)
    if backend != "mediapipe":
        return [whole]
    windows = []
    if previous is not None:
        x0, y0, x1, y1 = previous
        half = 0.5 * ROI_SCALE * max(x1 - x0, y1 - y0)
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        roi = (max(int(cx - half), 0), max(int(cy - half), 0), min(int(cx + half), width), min(int(cy + half), height))
        if roi[2] - roi[0] >= 16 and roi[3] - roi[1] >= 16:
            windows.append(roi)
    windows.append(whole)
    short, long = min(width, height), max(width, height)
    if long >= 1.2 * short:
        for offset in np.linspace(0, long - short, 3).round().astype(int):
            windows.append((offset, 0, offset + short, short) if width > height else (0, offset, short, offset + short))
    return windows


def detect_in_window(rgb: np.ndarray, window: tuple[int, int, int, int], backend: str) -> FaceObservation | None:
    """The face in part of a frame (scaled down to at most DETECT_MAX_SIDE), in the frame's pixels."""
    from PIL import Image

    x0, y0, x1, y1 = window
    part = rgb[y0:y1, x0:x1]
    scale = min(1.0, DETECT_MAX_SIDE / max(part.shape[:2]))
    if scale < 1.0:
        size = (max(2, round(part.shape[1] * scale)), max(2, round(part.shape[0] * scale)))
        part = np.asarray(Image.fromarray(part).resize(size, Image.BOX))
    obs = detect_faces(part[None], backend)[0]
    if obs is None:
        return None
    sx, sy = (x1 - x0) / part.shape[1], (y1 - y0) / part.shape[0]
    bx0, by0, bx1, by1 = obs.box
    box = (bx0 * sx + x0, by0 * sy + y0, bx1 * sx + x0, by1 * sy + y0)
    landmarks = None if obs.landmarks is None else \
        (obs.landmarks * np.array([sx, sy], np.float32) + np.array([x0, y0], np.float32))
    return dataclasses.replace(obs, box=box, landmarks=landmarks)


class FaceFinder:
    """Finds the face frame after frame through one segment, looking first near the last face it found
    (a new finder per segment, so a segment's result never depends on the one before)."""

    def __init__(self, backend: str):
        self.backend = backend
        self.previous: tuple | None = None

    def __call__(self, frame) -> FaceObservation | None:
        """The face in one `av.VideoFrame`, in its pixel coordinates, or None."""
        rgb = frame.to_ndarray(format="rgb24")
        for window in search_windows(frame.width, frame.height, self.previous, self.backend):
            obs = detect_in_window(rgb, window, self.backend)
            if obs is not None:
                if obs.is_detection:
                    self.previous = obs.box
                return obs
        return None


def detected_count(observations) -> int:
    return sum(1 for o in observations if o is not None and o.is_detection)


def segment_crop(track: FaceTrack, width: int, height: int, size: int, expand: float) -> CropInfo:
    """One square for the whole segment (see the module docstring)."""
    detected = np.array([o.is_detection for o in track.observations])
    even = (height - height % 2, width - width % 2)
    if not detected.any():
        return CropInfo(height, width, *even, width / 2.0, height / 2.0, float(min(width, height)), 0.0, size,
                        False, track.observations[0].source, "no face found: centre crop used")
    boxes = track.smoothed_boxes(BOX_SMOOTHING)[detected]
    x0, y0 = np.percentile(boxes[:, :2], BOX_PERCENTILES[0], axis=0)
    x1, y1 = np.percentile(boxes[:, 2:], BOX_PERCENTILES[1], axis=0)
    side = float(expand * max(x1 - x0, y1 - y0, 1.0))
    source = next(o.source for o in track.observations if o.is_detection)
    return CropInfo(height, width, *even, float(x0 + x1) / 2.0, float(y0 + y1) / 2.0, side, 0.0, size, True,
                    source, "")


def crop_frame(rgb: np.ndarray, info: CropInfo) -> np.ndarray:
    """`crop_with_info` on just the part of the frame the square covers: resampling a whole HD frame
    in float would cost far more than the face."""
    h, w = rgb.shape[:2]
    half = info.side / 2.0 + 2.0
    x0 = min(max(int(math.floor(info.centre_x - half)), 0), w - 1)
    y0 = min(max(int(math.floor(info.centre_y - half)), 0), h - 1)
    x1 = max(min(int(math.ceil(info.centre_x + half)), w), x0 + 1)
    y1 = max(min(int(math.ceil(info.centre_y + half)), h), y0 + 1)
    local = dataclasses.replace(info, original_height=y1 - y0, original_width=x1 - x0, out_height=y1 - y0,
                                out_width=x1 - x0, centre_x=info.centre_x - x0, centre_y=info.centre_y - y0)
    return crop_with_info(rgb[y0:y1, x0:x1], local)


def grow_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """Dilate a boolean mask by `radius` pixels (Euclidean), working only around the mask."""
    from scipy import ndimage

    ys, xs = np.nonzero(mask)
    if not len(ys) or radius <= 0:
        return mask
    r = int(math.ceil(radius))
    y0, y1 = max(ys.min() - r, 0), min(ys.max() + r + 1, mask.shape[0])
    x0, x1 = max(xs.min() - r, 0), min(xs.max() + r + 1, mask.shape[1])
    out = mask.copy()
    out[y0:y1, x0:x1] = ndimage.distance_transform_edt(~mask[y0:y1, x0:x1]) <= radius
    return out


def crop_masks(observations, info: CropInfo) -> tuple[np.ndarray, np.ndarray]:
    """Face and lip masks uint8 [F, S, S] in {0, 255} for one segment."""
    s = info.size
    lip_radius = max(2.0, LIP_MARGIN * s)
    face = np.zeros((len(observations), s, s), np.uint8)
    lip = np.zeros_like(face)
    for i, obs in enumerate(observations):
        local = observation_in_crop(obs, info)
        face[i] = np.where(face_region_mask(local, s, s, "face", supersample=1) >= 0.5, 255, 0)
        lip_region = face_region_mask(local, s, s, "lip", supersample=1) >= 0.5
        lip[i] = np.where(grow_mask(lip_region, lip_radius), 255, 0)
    return face, lip


# ---------------------------------------------------------------- one video


@dataclass
class VideoJob:
    path: str  # absolute
    rel: str  # relative to the input folder, with forward slashes: names the clips and goes into meta
    caption: str
    out_dir: str
    settings: Settings


def complete_clip_frames(out_dir: Path, clip_id: str) -> int | None:
    """Frames of a finished clip (its folder appears only when complete), or None."""
    meta = out_dir / "clips" / clip_id / "meta.json"
    if not meta.is_file():
        return None
    return int(json.loads(meta.read_text())["frames"])


def write_clip_atomically(out_dir: Path, clip_id: str, clip: Clip, frames_format: str) -> None:
    """Write into a scratch folder, then rename: a clip folder exists only when complete."""
    scratch = out_dir / ".partial" / f"{clip_id}.{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    write_clip(scratch, clip_id, clip, frames_format=frames_format)
    final = out_dir / "clips" / clip_id
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(scratch / "clips" / clip_id, final)
    shutil.rmtree(scratch, ignore_errors=True)


def _optional(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None


def clip_meta(job: VideoJob, segment: int, track: FaceTrack, info: CropInfo, video: ResampledFrames,
              audio: AudioCursor, missing_samples: int, detected: int) -> dict:
    s = job.settings
    start = segment * s.clip_frames
    n = len(track.observations)
    filled = set(track.filled_frames)
    return {
        "source": "preprocess", "caption": job.caption, "video": job.rel, "segment": segment,
        "start_frame": start, "start_seconds": round(start / s.fps, 6), "frames": n,
        "seconds": round(n / s.fps, 6), "fps": s.fps, "sample_rate": SAMPLE_RATE, "size": s.size,
        "backend": s.backend,
        "faces": {"detected_frames": detected, "filled_frames": len(track.filled_frames),
                  "found_any": bool(detected)},
        "crop": info.to_dict(),
        "per_frame": {
            "mouth_open": [_optional(o.mouth_open) for o in track.observations],
            "mouth_width": [_optional(o.mouth_width) for o in track.observations],
            "face_filled": [int(i in filled) for i in range(n)],
        },
        "audio": {"source_sample_rate": audio.source_rate, "source_channels": audio.source_channels,
                  "missing_samples": int(missing_samples)},
        "source_video": {"width": video.width, "height": video.height, "fps": video.source_fps},
        "preprocess": s.clip_settings(),
    }


def _segment_clip(job: VideoJob, segment: int, finder: ResampledFrames, cropper: ResampledFrames,
                  audio: AudioCursor, dropped: list) -> tuple[str | None, int]:
    """Make (or find) one segment's clip. Returns (clip id or None when dropped, frames used: 0 at the end)."""
    s, out = job.settings, Path(job.out_dir)
    clip_id = clip_id_for(job.rel, segment)
    start = segment * s.clip_frames
    known = complete_clip_frames(out, clip_id)
    if known is not None:  # finished in an earlier run: pass over its frames, touch nothing
        cropper.skip(known)
        return clip_id, finder.skip(known)

    find_face = FaceFinder(s.backend)
    observations = [find_face(f) for f in finder.take(s.clip_frames)]
    n = len(observations)
    if n == 0:
        return None, 0
    note = {"segment": segment, "start_seconds": round(start / s.fps, 3), "frames": n}
    if n < s.min_frames:
        dropped.append({**note, "reason": f"shorter than --min-seconds {s.min_seconds:g}"})
        return None, 0
    detected = detected_count(observations)
    if s.backend in DETECTORS and detected < MIN_FACE_FRACTION * n:
        cropper.skip(n)
        dropped.append({**note, "reason": f"a face was found in {detected} of {n} frames"})
        return None, n
    samples, missing = audio.read(int(round(start * SAMPLE_RATE / s.fps)),
                                  int(math.ceil(n * SAMPLE_RATE / s.fps - 1e-9)))
    if missing > MAX_MISSING_AUDIO * len(samples):
        cropper.skip(n)
        dropped.append({**note, "reason": "more than half of it has no audio"})
        return None, n

    track = FaceTrack.from_observations(observations, finder.height, finder.width)
    info = segment_crop(track, finder.width, finder.height, s.size, s.expand)
    frames = np.empty((n, s.size, s.size, 3), np.uint8)  # filled in place: no list of crops to stack
    cropped = 0
    for cropped, frame in enumerate(cropper.take(n), start=1):
        frames[cropped - 1] = crop_frame(frame.to_ndarray(format="rgb24"), info)
    if cropped != n:
        raise VideoError(f"the second decoding pass gave {cropped} frames where the first gave {n}")
    face, lip = crop_masks(track.observations, info)
    meta = clip_meta(job, segment, track, info, finder, audio, missing, detected)
    clip = Clip(frames=frames, audio=samples, face_mask=face, lip_mask=lip, meta=meta, fps=s.fps,
                sample_rate=SAMPLE_RATE)
    write_clip_atomically(out, clip_id, clip, s.frames_format)
    return clip_id, n


def process_video(job: VideoJob) -> dict:
    """Every clip of one video. Never raises: a failure is returned as `error`, with the clips finished
    before it (they stay valid and are skipped when the run is resumed)."""
    clips, dropped = [], []
    try:
        s = job.settings
        with ResampledFrames(job.path, s.fps, s.max_frames) as finder, \
                ResampledFrames(job.path, s.fps, s.max_frames) as cropper, \
                AudioCursor(job.path, finder.start_time) as audio:
            for segment in count():
                clip_id, used = _segment_clip(job, segment, finder, cropper, audio, dropped)
                if clip_id is not None:
                    clips.append(clip_id)
                if used < s.clip_frames:  # the video (or --max-seconds) ended inside this segment
                    break
    except Exception as e:  # corrupt or odd files are reported, never fatal to the run
        return {"video": job.rel, "clips": clips, "dropped": dropped, "error": describe_error(e)}
    if not clips:
        reasons = "; ".join(sorted({d["reason"] for d in dropped})) or "no frames"
        return {"video": job.rel, "clips": clips, "dropped": dropped, "error": f"no clips: {reasons}"}
    result = {"video": job.rel, "clips": clips, "dropped": dropped, "error": None}
    write_video_record(Path(job.out_dir), job, result)
    return result


def video_record_path(out_dir: Path, rel: str) -> Path:
    return out_dir / "videos" / f"{video_key(rel)}.json"


def write_video_record(out_dir: Path, job: VideoJob, result: dict) -> None:
    """Mark a video done (its clips listed), so a resumed run skips it without decoding it again."""
    record = {**result, "max_seconds": job.settings.max_seconds, "preprocess": job.settings.clip_settings()}
    path = video_record_path(out_dir, job.rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)


def finished_video(out_dir: Path, job: VideoJob) -> dict | None:
    """The result of an earlier run that finished this video with the same settings, or None."""
    path = video_record_path(out_dir, job.rel)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("max_seconds") != job.settings.max_seconds or record.get("video") != job.rel:
        return None
    if any(complete_clip_frames(out_dir, c) is None for c in record["clips"]):
        return None  # a clip was deleted since: redo the video (its other clips are kept)
    return {k: record[k] for k in ("video", "clips", "dropped", "error")}


def describe_error(e: Exception) -> str:
    if isinstance(e, VideoError):
        return str(e)
    return f"{type(e).__name__}: {e}"
