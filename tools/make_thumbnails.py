"""Write the `.jpg` thumbnails that ComfyUI's template browser shows beside each UI workflow in
`workflows/`: a strip of frames the bundled demo model makes for that workflow's settings.

    python tools/make_thumbnails.py [NAME ...]      # all workflows, or only these (e.g. portraittalk_basic)

A workflow that crops a photo shows the photo with the generated face pasted back; one whose model files
users supply (Hallo, full-size SD-1.5) shows its input photo, labelled with what it needs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

from build_workflows import workflows  # noqa: E402

SIZE = (512, 384)
NEEDS = {"portraittalk_hallo_photo": "needs Hallo's weights: see docs/hallo.md",
         "portraittalk_full_size_sd15": "needs SD-1.5, AnimateDiff v2 and PortraitTalk weights: see the README"}


def settings(graph: dict) -> dict:
    """The sampler settings and prompt of one example graph."""
    sampler = graph["sampler"][1]
    return {"prompt": graph["text"][1]["text"] or None, "steps": sampler["steps"],
            "text_guidance": sampler["text_guidance"], "window": sampler["window"], "overlap": sampler["overlap"]}


def thumbnail(frames: np.ndarray, reference: np.ndarray, title_frames: int = 3) -> Image.Image:
    """The reference, then a few generated frames, on a dark canvas."""
    picks = np.linspace(0, len(frames) - 1, title_frames + 2)[1:-1].round().astype(int)
    tiles = [reference] + [frames[i] for i in picks]
    side = SIZE[0] // len(tiles)
    canvas = Image.new("RGB", SIZE, (24, 24, 28))
    for i, tile in enumerate(tiles):
        im = Image.fromarray(tile).resize((side - 8, side - 8), Image.NEAREST)
        canvas.paste(im, (i * side + 4, (SIZE[1] - side) // 2 + 4))
    return canvas


def labelled_photo(photo: np.ndarray, label: str) -> Image.Image:
    """The workflow's input photo, fitted to the canvas, with a caption strip."""
    from PIL import ImageDraw

    canvas = Image.new("RGB", SIZE, (24, 24, 28))
    im = Image.fromarray(photo)
    im.thumbnail((SIZE[0], SIZE[1] - 40))
    canvas.paste(im, ((SIZE[0] - im.width) // 2, 4))
    ImageDraw.Draw(canvas).text((12, SIZE[1] - 30), label, fill=(230, 230, 230))
    return canvas


def main(argv: list[str] | None = None) -> int:
    only = set(sys.argv[1:] if argv is None else argv)
    from comfyui_portraittalk.bundled import REFERENCES
    from comfyui_portraittalk.faces import crop_face, detect_faces, paste_back
    from comfyui_portraittalk.media import read_audio
    from comfyui_portraittalk.models import PortraitTalkPipeline

    pipe = PortraitTalkPipeline.from_pretrained("demo")
    speech, rate = read_audio(REPO / "assets" / "demo_speech.wav")
    for name, graph in workflows().items():
        if only and name not in only:
            continue
        out_path = REPO / "workflows" / f"{name}.jpg"
        if name in NEEDS:  # files users supply: show the input photo
            photo = np.asarray(Image.open(REPO / "assets" / "examples" / graph["photo"][1]["image"]).convert("RGB"))
            labelled_photo(photo, NEEDS[name]).save(out_path, quality=88)
            print(f"wrote workflows/{name}.jpg")
            continue
        photo = np.asarray(Image.open(REPO / "assets" / REFERENCES[graph["demo"][1]["reference"]]).convert("RGB"))
        crop = None
        if "crop" in graph:
            options = graph["crop"][1]
            crop, info = crop_face(photo, detect_faces(photo[None], options["backend"])[0], options["size"],
                                   options["expand"], options["align"])
        s = settings(graph)
        out = pipe([crop if crop is not None else photo], speech, rate, s["prompt"], num_inference_steps=s["steps"],
                   text_guidance_scale=s["text_guidance"], window=s["window"], overlap=s["overlap"])
        frames = (out.frames * 255 + 0.5).astype(np.uint8)
        if crop is None:
            thumbnail(frames, photo).save(out_path, quality=88)
        else:
            talking = paste_back(frames[len(frames) // 3][None], info, photo, graph["paste"][1]["feather"])[0]
            labelled_photo(np.asarray(talking), "Crop Face -> generate -> Paste Back").save(out_path, quality=88)
        print(f"wrote workflows/{name}.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
