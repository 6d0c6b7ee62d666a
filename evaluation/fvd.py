"""FVD: the Fréchet distance between I3D features of real and generated video clips.

I3D (Carreira & Zisserman, 2017) is built here with the parameter names of the public
pytorch-i3d port: ``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``,
``logits.conv3d.bias`` and so on. Its Kinetics-400 RGB state dict (``rgb_imagenet.pt``)
therefore loads as it is. The weights are user-supplied and loaded with
``torch.load(weights_only=True)`` or safetensors.

Clips of 16 frames at 224² with values in [-1, 1] are embedded as the time-averaged
400 logits, the layer that FVD reports. The features of all clips of both sets are
compared with :func:`frechet_distance`. This I3D port is not the TF-Hub module that
papers use, so its FVD values are comparable with each other but not with published
numbers.
"""

from __future__ import annotations

import os

import numpy as np

from .frechet import frechet_distance_features
from .weights import load_into

CLIP_FRAMES = 16
SIZE = 224

# Inception modules: name -> (in_channels, [b0, b1a, b1b, b2a, b2b, b3b]).
_MIXED = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (480, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (512, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (512, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (512, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (528, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (832, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (832, [384, 192, 384, 48, 128, 128]),
}
# The network in order: units, pools (kernel, stride) and inception modules.
_PLAN = [
    ("Conv3d_1a_7x7", ("unit", 3, 64, 7, 2)), ("MaxPool3d_2a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", ("unit", 64, 64, 1, 1)), ("Conv3d_2c_3x3", ("unit", 64, 192, 3, 1)),
    ("MaxPool3d_3a_3x3", ("pool", (1, 3, 3), (1, 2, 2))), ("Mixed_3b", ("mixed",)), ("Mixed_3c", ("mixed",)),
    ("MaxPool3d_4a_3x3", ("pool", (3, 3, 3), (2, 2, 2))), ("Mixed_4b", ("mixed",)), ("Mixed_4c", ("mixed",)),
    ("Mixed_4d", ("mixed",)), ("Mixed_4e", ("mixed",)), ("Mixed_4f", ("mixed",)),
    ("MaxPool3d_5a_2x2", ("pool", (2, 2, 2), (2, 2, 2))), ("Mixed_5b", ("mixed",)), ("Mixed_5c", ("mixed",)),
]


def build_i3d(num_classes: int = 400):
    """I3D with pytorch-i3d parameter names (random weights)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def same_pad(x, kernel, stride):
        # TensorFlow "SAME" padding, which the original model was trained with.
        pads = []
        for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
            total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    class Unit3D(nn.Module):
        def __init__(self, cin, cout, k, s=1, bn=True, relu=True, bias=False):
            super().__init__()
            self.k, self.s, self.relu = (k,) * 3, (s,) * 3, relu
            self.conv3d = nn.Conv3d(cin, cout, self.k, self.s, padding=0, bias=bias)
            self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None

        def forward(self, x):
            x = self.conv3d(same_pad(x, self.k, self.s))
            if self.bn is not None:
                x = self.bn(x)
            return F.relu(x) if self.relu else x

    class Pool(nn.Module):
        def __init__(self, k, s):
            super().__init__()
            self.k, self.s = k, s

        def forward(self, x):
            return F.max_pool3d(same_pad(x, self.k, self.s), self.k, self.s)

    class Mixed(nn.Module):
        def __init__(self, cin, c):
            super().__init__()
            self.b0 = Unit3D(cin, c[0], 1)
            self.b1a, self.b1b = Unit3D(cin, c[1], 1), Unit3D(c[1], c[2], 3)
            self.b2a, self.b2b = Unit3D(cin, c[3], 1), Unit3D(c[3], c[4], 3)
            self.b3a, self.b3b = Pool((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5], 1)

        def forward(self, x):
            return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)

    class I3D(nn.Module):
        def __init__(self):
            super().__init__()
            self.order = []
            for name, spec in _PLAN:
                if spec[0] == "unit":
                    self.add_module(name, Unit3D(*spec[1:3], spec[3], spec[4]))
                elif spec[0] == "pool":
                    self.add_module(name, Pool(spec[1], spec[2]))
                else:
                    self.add_module(name, Mixed(*_MIXED[name]))
                self.order.append(name)
            self.logits = Unit3D(1024, num_classes, 1, bn=False, relu=False, bias=True)

        def forward(self, x):  # [B, 3, T, H, W] in [-1, 1] -> [B, classes]
            for name in self.order:
                x = getattr(self, name)(x)
            # Average over what remains of time and space (7×7 at 224²; adaptive, so
            # smaller test inputs work too), then the 1×1×1 logits conv, averaged over time.
            x = F.adaptive_avg_pool3d(x, (x.shape[2], 1, 1))
            return self.logits(x).mean(dim=(2, 3, 4))

    return I3D()


class I3DFeatures:
    name = "i3d-kinetics400-logits (pytorch-i3d layout)"

    def __init__(self, weights_path, device: str = "cpu", model=None):
        self.model = (model if model is not None else
                      load_into(build_i3d(), weights_path, "I3D (FVD)")).to(device).eval()
        self.device = device
        self.version = "random" if weights_path is None else os.path.basename(os.fspath(weights_path))

    def __call__(self, clips: np.ndarray, size: int = SIZE) -> np.ndarray:
        """Features [N, 400] of uint8 clips [N, T, H, W, 3]."""
        import torch
        import torch.nn.functional as F

        out = []
        with torch.no_grad():
            for clip in clips:
                x = torch.from_numpy(np.ascontiguousarray(clip)).float().permute(0, 3, 1, 2) / 127.5 - 1.0
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
                out.append(self.model(x.permute(1, 0, 2, 3)[None].to(self.device)).cpu().numpy()[0])
        return np.stack(out)


def video_clips(frames: np.ndarray, length: int = CLIP_FRAMES, stride: int | None = None) -> np.ndarray:
    """Consecutive clips [N, length, H, W, 3] (non-overlapping by default)."""
    frames = np.asarray(frames)
    stride = stride or length
    if len(frames) < length:
        raise ValueError(f"FVD needs videos of at least {length} frames, got {len(frames)}")
    return np.stack([frames[i:i + length] for i in range(0, len(frames) - length + 1, stride)])


def fvd(generated: np.ndarray, real: np.ndarray, weights_path=None, device: str = "cpu", extractor=None,
        clip_frames: int = CLIP_FRAMES, size: int = SIZE) -> dict:
    """FVD between the 16-frame clips of two videos (or lists of videos)."""
    extractor = extractor or I3DFeatures(weights_path, device)
    gen = np.concatenate([video_clips(v, clip_frames, clip_frames // 2) for v in _videos(generated)])
    ref = np.concatenate([video_clips(v, clip_frames, clip_frames // 2) for v in _videos(real)])
    value = frechet_distance_features(extractor(gen, size), extractor(ref, size))
    return {"value": value, "model": extractor.name, "version": extractor.version,
            "clips": [int(len(gen)), int(len(ref))]}


def _videos(v):
    if isinstance(v, (list, tuple)):
        return list(v)
    v = np.asarray(v)
    return [v] if v.ndim == 4 else list(v)
