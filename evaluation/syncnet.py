"""Sync-C / Sync-D (LSE-C / LSE-D) with SyncNet (Chung & Zisserman, 2016).

The network follows the public syncnet_python layout, so its ``syncnet_v2.model`` state
dict loads under the same keys: ``netcnnaud`` and ``netfcaud`` (MFCC audio stream),
``netcnnlip`` and ``netfclip`` (5-frame 224² face stream). The weights are
user-supplied local files, loaded with ``torch.load(weights_only=True)`` or safetensors.
Their licence is the syncnet_python repository's (MIT), under which it distributes
them; check it before redistributing.

Scoring follows the standard procedure. For every 5-frame window, the distance between
the video embedding and the audio embeddings is computed at offsets of ±``vshift``
(default 15) frames, and the distances are averaged over windows.

* **Sync-D** is the minimum of the mean distance (lower is better).
* **Sync-C** is the median minus the minimum (higher is better).
* **offset** is the offset at that minimum; positive means the video lags.

Inputs are prepared the same way:

* frames are BGR on a 0..255 scale;
* audio is 13 MFCCs at 100 Hz, following python_speech_features' defaults (25 ms
  rectangular windows, 26 mel bands, lifter 22, log energy as c0), computed on
  int16-scaled 16 kHz audio.

The MFCCs are computed here with numpy and scipy, so absolute values can differ
slightly from the reference tool's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import dct, rfft

from .weights import load_into

VIDEO_WINDOW = 5  # frames per video window
AUDIO_WINDOW = 20  # MFCC steps per window (0.2 s at 100 Hz)
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps video
CROP_SIZE = 224

# (kind, out_channels, kernel, stride, padding); "pool" entries are (kind, kernel, stride, padding).
_AUDIO_CNN = [
    ("conv", 64, (3, 3), (1, 1), (1, 1)), ("pool", (1, 1), (1, 1), 0),
    ("conv", 192, (3, 3), (1, 1), (1, 1)), ("pool", (3, 3), (1, 2), 0),
    ("conv", 384, (3, 3), (1, 1), (1, 1)),
    ("conv", 256, (3, 3), (1, 1), (1, 1)),
    ("conv", 256, (3, 3), (1, 1), (1, 1)), ("pool", (3, 3), (2, 2), 0),
    ("conv", 512, (5, 4), (1, 1), (0, 0)),
]
_LIP_CNN = [
    ("conv", 96, (5, 7, 7), (1, 2, 2), (0, 0, 0)), ("pool", (1, 3, 3), (1, 2, 2), 0),
    ("conv", 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), ("pool", (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ("conv", 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ("conv", 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ("conv", 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)), ("pool", (1, 3, 3), (1, 2, 2), 0),
    ("conv", 512, (1, 6, 6), (1, 1, 1), (0, 0, 0)),
]


def build_syncnet(embedding_dim: int = 1024):
    """A SyncNet module with the syncnet_python parameter names (random weights)."""
    import torch.nn as nn

    def cnn(spec, in_ch, dims):
        conv, bn, pool = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else \
            (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)
        layers = []
        for kind, *args in spec:
            if kind == "conv":
                out_ch, k, s, p = args
                # Conv, batch norm, ReLU: keeps the indices of the reference layout.
                layers += [conv(in_ch, out_ch, kernel_size=k, stride=s, padding=p), bn(out_ch), nn.ReLU()]
                in_ch = out_ch
            else:
                k, s, p = args
                layers.append(pool(kernel_size=k, stride=s, padding=p))
        return nn.Sequential(*layers)

    def head():
        return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding_dim))

    class SyncNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.netcnnaud = cnn(_AUDIO_CNN, 1, 2)
            self.netfcaud = head()
            self.netcnnlip = cnn(_LIP_CNN, 3, 3)
            self.netfclip = head()

        def forward_aud(self, x):  # [B, 1, 13, 20] -> [B, D]
            return self.netfcaud(self.netcnnaud(x).flatten(1))

        def forward_lip(self, x):  # [B, 3, 5, 224, 224] -> [B, D]
            return self.netfclip(self.netcnnlip(x).flatten(1))

    return SyncNet()


def load_syncnet(weights_path, device: str = "cpu"):
    """SyncNet with weights from a local file (syncnet_python's ``syncnet_v2.model``)."""
    return load_into(build_syncnet(), weights_path, "SyncNet (Sync-C/D)").to(device)


def syncnet_mfcc(audio16k: np.ndarray, sample_rate: int = 16000, num_ceps: int = 13) -> np.ndarray:
    """[13, T] MFCCs at 100 Hz, in python_speech_features' default configuration."""
    x = np.asarray(audio16k, np.float64) * 32768.0  # SyncNet was trained on int16-scaled samples
    x = np.append(x[:1], x[1:] - 0.97 * x[:-1])
    win, step, nfft, nfilt = int(round(0.025 * sample_rate)), int(round(0.01 * sample_rate)), 512, 26
    n = 1 if len(x) <= win else 1 + int(math.ceil((len(x) - win) / step))
    x = np.pad(x, (0, max(0, (n - 1) * step + win - len(x))))
    frames = x[np.arange(win)[None, :] + step * np.arange(n)[:, None]]
    power = np.abs(rfft(frames, nfft)) ** 2 / nfft
    energy = np.maximum(power.sum(axis=1), np.finfo(float).eps)
    feat = np.maximum(power @ _mel_filterbank(nfilt, nfft, sample_rate).T, np.finfo(float).eps)
    ceps = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :num_ceps]
    lifter = 1 + 11.0 * np.sin(np.pi * np.arange(num_ceps) / 22.0)
    ceps = ceps * lifter
    ceps[:, 0] = np.log(energy)
    return ceps.T.astype(np.float32)


def _mel_filterbank(nfilt: int, nfft: int, sample_rate: int) -> np.ndarray:
    def mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    points = hz(np.linspace(mel(0.0), mel(sample_rate / 2), nfilt + 2))
    bins = np.floor((nfft + 1) * points / sample_rate).astype(int)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        fb[j, lo:mid] = (np.arange(lo, mid) - lo) / max(mid - lo, 1)
        fb[j, mid:hi] = (hi - np.arange(mid, hi)) / max(hi - mid, 1)
    return fb


def sync_scores(video_features: np.ndarray, audio_features: np.ndarray, vshift: int = 15) -> dict:
    """Sync-C, Sync-D and offset from per-window embeddings [N, D] of video and audio.

    Window i of the video is compared with audio windows i + k for |k| <= vshift; audio
    beyond either end counts as a zero embedding, as in the reference procedure.
    """
    v = np.asarray(video_features, np.float64)
    a = np.asarray(audio_features, np.float64)
    n = min(len(v), len(a))
    if n == 0:
        raise ValueError("Sync-C/D need at least one 5-frame window of video with matching audio")
    v, a = v[:n], a[:n]
    padded = np.concatenate([np.zeros((vshift, a.shape[1])), a, np.zeros((vshift, a.shape[1]))])
    window = np.arange(2 * vshift + 1)
    dists = np.linalg.norm(v[:, None, :] - padded[np.arange(n)[:, None] + window[None, :]] + 1e-6, axis=-1)
    mean = dists.mean(axis=0)
    best = int(np.argmin(mean))
    return {
        "sync_c": float(np.median(mean) - mean[best]),
        "sync_d": float(mean[best]),
        "offset": int(vshift - best),
        "windows": int(n),
        "mean_distance_by_offset": {int(vshift - j): float(mean[j]) for j in window},
    }


def syncnet_embeddings(model, face_crops: np.ndarray, audio16k: np.ndarray, batch_size: int = 16):
    """Per-window embeddings of face crops [F, 224, 224, 3] (RGB uint8) and 16 kHz audio."""
    import torch

    mfcc = syncnet_mfcc(audio16k)
    n = min(len(face_crops), mfcc.shape[1] // MFCC_PER_FRAME) - VIDEO_WINDOW + 1
    if n <= 0:
        raise ValueError(f"Sync-C/D need at least {VIDEO_WINDOW} frames and 0.2 s of audio")
    device = next(model.parameters()).device
    bgr = torch.from_numpy(np.ascontiguousarray(face_crops[..., ::-1])).float()  # [F, H, W, 3], 0..255
    video = bgr.permute(3, 0, 1, 2)  # [3, F, H, W]
    audio = torch.from_numpy(mfcc)
    vf, af = [], []
    with torch.no_grad():
        for s in range(0, n, batch_size):
            idx = range(s, min(n, s + batch_size))
            lips = torch.stack([video[:, i:i + VIDEO_WINDOW] for i in idx]).to(device)
            auds = torch.stack([audio[None, :, i * MFCC_PER_FRAME:i * MFCC_PER_FRAME + AUDIO_WINDOW] for i in idx])
            vf.append(model.forward_lip(lips).cpu().numpy())
            af.append(model.forward_aud(auds.to(device)).cpu().numpy())
    return np.concatenate(vf), np.concatenate(af)


def syncnet_face_crops(frames: np.ndarray, observations) -> np.ndarray:
    """224² crops in SyncNet's framing: a square 1.4× the face box's longer side, its
    centre moved down by a fifth of that side (towards the mouth), boxes smoothed over
    time."""
    from ..faces.crop import CropInfo, crop_with_info
    from ..faces.detect import FaceTrack

    h, w = frames.shape[1:3]
    track = FaceTrack.from_observations(list(observations), h, w)
    boxes = track.smoothed_boxes(5)
    crops = []
    for frame, (x0, y0, x1, y1) in zip(frames, boxes):
        side = max(x1 - x0, y1 - y0)
        info = CropInfo(h, w, h, w, (x0 + x1) / 2, (y0 + y1) / 2 + 0.2 * side, 1.4 * side, 0.0, CROP_SIZE,
                        track.found_any)
        crops.append(crop_with_info(frame, info))
    return np.stack(crops)


def sync_metrics(frames: np.ndarray, observations, audio16k: np.ndarray, weights_path=None, model=None,
                 vshift: int = 15, device: str = "cpu") -> dict:
    """Sync-C/D for a video (uint8 frames at 25 fps) and its 16 kHz audio."""
    model = model if model is not None else load_syncnet(weights_path, device)
    crops = syncnet_face_crops(np.asarray(frames), observations)
    vf, af = syncnet_embeddings(model, crops, audio16k)
    result = sync_scores(vf, af, vshift)
    result.pop("mean_distance_by_offset")
    result["model"] = "SyncNet (syncnet_python layout)"
    result["version"] = "user weights" if weights_path is None else str(weights_path)
    return result
