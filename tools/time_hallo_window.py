"""Time one 40-step window of the hallo family on the golden fixtures' inputs (`tools/hallo_golden.py` records
them and times Hallo's own pipeline on the same inputs with `--time`).

    python tools/time_hallo_window.py [tests/data/hallo/golden]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from comfyui_portraittalk.models import PortraitTalkPipeline
from comfyui_portraittalk.models.config import load_config
from comfyui_portraittalk.models.files.hallo import convert_hallo
from comfyui_portraittalk.models.networks.hallo_masks import RegionMasks
from comfyui_portraittalk.models.pipeline import AudioEmbeds
from comfyui_portraittalk.models.sampling.sampler import SamplingOptions


def main(folder: Path) -> None:
    golden = load_file(str(folder / "golden.safetensors"))
    frames = int(golden["inputs.audio_features"].shape[0])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "net.portraittalk.safetensors"
        convert_hallo(folder / "net.pth", out, config=load_config("hallo", json.loads((folder / "config.json").read_text())),
                      dtype=torch.float32)
        pipe = PortraitTalkPipeline.from_pretrained(out)
    masks = [golden[f"inputs.mask_{k}"].numpy().astype(np.uint8) for k in ("background", "face", "lip")]
    regions = RegionMasks(*masks, golden["inputs.face_box"].numpy())
    null = torch.zeros(1, 77, pipe.config["unet"]["cross_attention_dim"])
    start = time.perf_counter()
    with torch.no_grad():
        tokens = pipe.identity_tokens(image_embeds=golden["inputs.face_emb"])
        identity = pipe.encode_identity(golden["inputs.reference"], tokens, None, null, regions)
        audio = pipe.components.audio_proj(golden["inputs.audio_features"])
    cond = pipe.conditioning(null_text=null, identity=identity, audio=AudioEmbeds(audio, 25.0, frames, frames / 25))
    pipe.sample(cond, SamplingOptions(num_frames=frames, steps=40, seed=42, audio_guidance=3.5, window=frames,
                                      long_audio="motion_frames", noise="hallo"))
    size = pipe.config["video"]["size"]
    print(f"portraittalk: one 40-step window of {frames} frames at {size}², cfg 3.5: "
          f"{time.perf_counter() - start:.1f} s ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests/data/hallo/golden")
