"""Train the tiny caption CLIP on SynthTalk and print the caption command's accuracy on held-out clips
(`comfyui_portraittalk.training.caption_clip`; about 2 minutes on a 2-core CPU):

    python tools/train_caption_clip.py OUT_DIR [--steps 600] [--clips 192] [--test-clips 60] [--seed 0]
"""

from __future__ import annotations

import sys

from comfyui_portraittalk.training.caption_clip import main

if __name__ == "__main__":
    sys.exit(main())
