"""Preview nodes: the generated frames and their audio as an mp4 that the web extension plays in the
node, and `publish_partial_video`, which lets a long-running node show its video so far. The mp4 writer
and the IMAGE/AUDIO conversions are `media`'s; the publishing thread stays here (it needs PromptServer)."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid

import numpy as np
from comfy_api.v0_0_2 import io

from ..media import PARTIAL_PREVIEW, PREVIEW, as_frames, first_two_channels, frame_uint8, write_mp4

log = logging.getLogger(__name__)

UI_KEY = "portraittalk_video"  # the web extension (web/portraittalk.js) reads this ui key
PARTIAL_EVENT = "portraittalk.partial_video"
SUBFOLDER = "portraittalk"
PARTIAL_INTERVAL_S = 3.0  # at most one partial video per node in this many seconds
PARTIAL_MAX_SIDE = 256  # partial previews are downscaled to keep encoding cheap
PARTIAL_KEEP = 2  # partial files kept per node (the browser may still be loading the previous one)


class PreviewVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkPreviewVideo", display_name="Preview Video (PortraitTalk)",
            category="PortraitTalk/preview", is_output_node=True,
            description="Plays the frames with their audio inside the node (an H.264/AAC mp4 in ComfyUI's temp "
                        "folder, not saved to output/). Use CreateVideo + SaveVideo to keep the result.",
            inputs=[
                io.Image.Input("images", tooltip="Video frames, e.g. 'images' from 'Decode Frames'."),
                io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=1.0,
                               tooltip="Frame rate; connect 'fps' from 'Decode Frames' (25 for the demo model)."),
                io.Audio.Input("audio", optional=True,
                               tooltip="Soundtrack, e.g. 'audio' from 'Decode Frames' (already trimmed to the "
                                       "video). Mono or stereo; more channels keep the first two."),
            ],
            outputs=[],
        )

    @classmethod
    def validate_inputs(cls, fps=25.0):
        if fps is not None and not _positive(fps):  # None: linked, known only when it runs
            return f"fps must be a positive number, got {fps!r}"
        return True

    @classmethod
    def execute(cls, images, fps, audio=None) -> io.NodeOutput:
        import folder_paths

        if not _positive(fps):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        import comfy.utils

        frames = as_frames(images)
        waveform, rate = first_two_channels(audio)
        name = f"preview_{uuid.uuid4().hex[:12]}.mp4"
        folder = os.path.join(folder_paths.get_temp_directory(), SUBFOLDER)
        os.makedirs(folder, exist_ok=True)
        bar = comfy.utils.ProgressBar(frames.shape[0])  # long clips take a while; also an interrupt point

        def progress(done: int, total: int) -> None:
            if done % 25 == 0 or done == total:
                bar.update_absolute(done, total)

        write_mp4(os.path.join(folder, name), frames, fps, waveform, rate, settings=PREVIEW, on_frame=progress)
        item = {"filename": name, "subfolder": SUBFOLDER, "type": "temp", "fps": float(fps),
                "frames": int(frames.shape[0]), "width": int(frames.shape[2]), "height": int(frames.shape[1]),
                "has_audio": waveform is not None}
        return io.NodeOutput(ui={UI_KEY: [item]})


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


# ---- partial videos during long runs ----------------------------------------------------------------

class _PartialPublisher:
    """Throttles per node, and encodes on one background thread so that the caller (the sampler)
    only pays for a downscaled copy of the frames. A newer request for a node replaces one that has not
    started yet."""

    def __init__(self):
        self._cond = threading.Condition()
        self._pending: dict[str, tuple] = {}
        self._last: dict[str, float] = {}
        self._files: dict[str, list[str]] = {}
        self._busy = False
        self._thread: threading.Thread | None = None

    def submit(self, node_id: str, frames: np.ndarray, fps: float, audio, sid: str, force: bool) -> bool:
        now = time.monotonic()
        with self._cond:
            if not force and now - self._last.get(node_id, -math.inf) < PARTIAL_INTERVAL_S:
                return False
            self._last[node_id] = now
            self._pending[node_id] = (frames, fps, audio, sid)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="portraittalk-partial-video", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is pending or being encoded (tests); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if not self._cond.wait(60.0):
                        if not self._pending:
                            self._thread = None  # idle for a minute: let the thread end
                            return
                node_id, job = next(iter(self._pending.items()))
                del self._pending[node_id]
                self._busy = True
            try:
                self._publish(node_id, *job)
            except Exception:  # a preview must never disturb the run it previews
                log.exception("PortraitTalk: partial video for node %s failed", node_id)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _publish(self, node_id: str, frames: np.ndarray, fps: float, audio, sid: str) -> None:
        import folder_paths
        from server import PromptServer

        waveform, rate = first_two_channels(audio)
        safe = "".join(c if c.isalnum() else "_" for c in node_id)[:40]
        name = f"partial_{safe}_{uuid.uuid4().hex[:8]}.mp4"
        folder = os.path.join(folder_paths.get_temp_directory(), SUBFOLDER)
        os.makedirs(folder, exist_ok=True)
        write_mp4(os.path.join(folder, name), frames, fps, waveform, rate, settings=PARTIAL_PREVIEW)
        files = self._files.setdefault(node_id, [])
        files.append(os.path.join(folder, name))
        while len(files) > PARTIAL_KEEP:
            try:
                os.remove(files.pop(0))
            except OSError:
                pass
        PromptServer.instance.send_sync(PARTIAL_EVENT, {
            "node": node_id, "filename": name, "subfolder": SUBFOLDER, "type": "temp", "fps": float(fps),
            "frames": int(frames.shape[0]), "has_audio": waveform is not None, "partial": True,
        }, sid)


_PUBLISHER = _PartialPublisher()


def publish_partial_video(node_id, frames_uint8, fps: float, *, audio: dict | None = None,
                          force: bool = False) -> bool:
    """Show the video so far in node `node_id` of the browser tab that queued the prompt.

    Cheap enough to call at every step end: it returns at once when the node published less than
    PARTIAL_INTERVAL_S seconds ago (unless `force`), otherwise it copies a downscaled uint8 version of
    the frames and returns, while a background thread writes a temp mp4 and sends the websocket event
    `portraittalk.partial_video` {node, filename, subfolder, type, fps, frames, has_audio, partial} to
    that tab only. Returns whether a video was scheduled. Never raises for bad frames (logs instead),
    so a preview cannot break sampling.

    frames_uint8: [F, H, W, 3] uint8 (or float 0..1), torch or numpy. audio: optional ComfyUI AUDIO.
    """
    try:
        from server import PromptServer

        sid = getattr(PromptServer.instance, "client_id", None)
        if sid is None or not fps or fps <= 0:  # no browser tab is waiting for this prompt
            return False
        frames = as_frames(frames_uint8)
        step = max(1, math.ceil(max(frames.shape[1:3]) / PARTIAL_MAX_SIDE))
        # A small copy of our own: cheap to encode, and the caller may reuse its buffer.
        frames = np.stack([frame_uint8(f[::step, ::step]) for f in frames])
        return _PUBLISHER.submit(str(node_id), frames, float(fps), audio, sid, force)
    except Exception:
        log.exception("PortraitTalk: partial video for node %s not published", node_id)
        return False


NODES = [PreviewVideo]
