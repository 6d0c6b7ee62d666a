"""`portraittalk caption DATA --clip-model DIR`: captions of what PortraitTalk's text stream learns (glasses,
a hat, a smile, the background colour) for clips without them, e.g. preprocessed HDTF or MEAD videos.

DATA is a clip data set (the layout of `layout.py`), a folder of photos (searched recursively) or one photo.
Each clip is scored zero-shot by a CLIP model the user supplies (a transformers `CLIPModel` folder, read
from safetensors only): for each yes/no attribute, CLIP's softmax over a prompt pair ("... with glasses" vs
"... without glasses"), averaged over a few frames spread through the clip; the attribute is present when
that probability is at least its threshold. The background is the palette name whose prompt scores highest.
The caption is SynthTalk's grammar (`synthtalk.caption_for`), so real and synthetic training text match,
followed by ", <emotion>" where MEAD's folder names give one other than neutral.

The output, DATA/captions.json by default, is for people to read and edit: one entry per clip id (photos: their
path relative to DATA), `{"caption", "attributes", "scores", "emotion", "source", "edited"}`. A re-run keeps an
entry as it is when its "edited" is true, or when its caption no longer matches its attributes (a hand edit
whose flag was forgotten); every other entry is scored again. Training (`layout.read_clip`) uses the caption
of captions.json wherever it has the clip.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .layout import CAPTIONS_FILE, read_frames, read_index
from .synthtalk.identities import BACKGROUNDS, caption_for

CAPTIONS_FORMAT = "portraittalk-captions"
# (present, absent): the prompt pair of each yes/no attribute
ATTRIBUTE_PROMPTS = {
    "glasses": ("a photo of a face with glasses", "a photo of a face without glasses"),
    "hat": ("a photo of a face with a hat", "a photo of a face without a hat"),
    "smiling": ("a photo of a smiling face", "a photo of a face with a neutral expression"),
}
BACKGROUND_PROMPT = "a photo of a face on a {} background"
DEFAULT_THRESHOLDS = {name: 0.5 for name in ATTRIBUTE_PROMPTS}
DEFAULT_FRAMES = 4
MEAD_EMOTIONS = ("angry", "disgusted", "contempt", "fear", "happy", "neutral", "sad", "surprised")
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class CaptionError(ValueError):
    """A problem with the command's inputs, said in terms of the input."""


# ---------------------------------------------------------------- what to caption


@dataclass
class Item:
    key: str  # clip id, or a photo's path relative to DATA
    source: str  # where it came from: the video (meta.json "video"), the photo, or the clip id
    frames: Callable[[], np.ndarray]  # uint8 [F, H, W, 3]


def _photo_frames(path: Path):
    def load():
        from PIL import Image, ImageOps

        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))[None]
    return load


def find_items(data: Path) -> tuple[list[Item], Path]:
    """(what to caption, the folder that keys are relative to)."""
    if not data.exists():
        raise CaptionError(f"{data}: no such file or folder")
    if data.is_file():
        if data.suffix.lower() not in PHOTO_EXTENSIONS:
            raise CaptionError(f"{data}: not a photo ({', '.join(PHOTO_EXTENSIONS)}) or a clip data set folder")
        return [Item(data.name, data.name, _photo_frames(data))], data.parent
    if (data / "dataset.json").is_file():
        clip_ids = read_index(data)["clips"]
        if not clip_ids:
            raise CaptionError(f"{data}: the data set lists no clips (dataset.json)")
        items = []
        for clip_id in clip_ids:
            clip_dir = data / "clips" / clip_id
            meta_path = clip_dir / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            items.append(Item(clip_id, str(meta.get("video") or clip_id),
                              lambda clip_dir=clip_dir: read_frames(clip_dir)))
        return items, data
    photos = sorted(p for p in data.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS)
    if not photos:
        raise CaptionError(f"{data}: no clips (dataset.json) and no photos ({', '.join(PHOTO_EXTENSIONS)}) in it")
    return [Item(p.relative_to(data).as_posix(), p.relative_to(data).as_posix(), _photo_frames(p))
            for p in photos], data


def emotion_from_path(path: str) -> tuple[str | None, int | None]:
    """(emotion, level) from MEAD's layout `<actor>/video/<view>/<emotion>/level_<n>/<nnn>.mp4` (or a clip id
    made from such a path, where separators became "_"). Only an emotion name followed by level_<n> counts,
    so an unrelated folder called "happy" does not."""
    tokens = [t for t in re.split(r"[/\\_\-.\s]+", path.lower()) if t]
    for i, token in enumerate(tokens[:-2]):
        if token in MEAD_EMOTIONS and tokens[i + 1] == "level" and tokens[i + 2].isdigit():
            return token, int(tokens[i + 2])
    return None, None


def sample_indices(num_frames: int, count: int) -> list[int]:
    """`count` frames spread evenly from the first to the last."""
    return sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, max(1, min(count, num_frames)))})


# ---------------------------------------------------------------- the CLIP model


def check_clip_folder(folder: Path) -> None:
    """Refuse, by name, anything that is not a safetensors transformers CLIPModel folder."""
    if not folder.is_dir():
        raise CaptionError(f"--clip-model {folder}: no such folder (give a transformers CLIPModel folder: "
                           "config.json, model.safetensors, vocab.json + merges.txt or tokenizer.json)")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CaptionError(f"--clip-model {folder}: no config.json, so not a transformers model folder")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as e:
        raise CaptionError(f"--clip-model {folder}: config.json is not JSON ({e})") from None
    if not isinstance(config, dict) or config.get("model_type") != "clip":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise CaptionError(f"--clip-model {folder}: config.json has model_type {kind!r}, not 'clip' "
                           "(a CLIPModel with both text and vision towers is needed)")
    weights = list(folder.glob("*.safetensors")) + list(folder.glob("*.safetensors.index.json"))
    if not weights:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        if pickles:
            raise CaptionError(f"--clip-model {folder}: only pickle weights ({', '.join(pickles)}); they can run "
                               "code when loaded, so they are refused. Convert them to model.safetensors")
        raise CaptionError(f"--clip-model {folder}: no model.safetensors")
    if not ((folder / "tokenizer.json").is_file() or
            ((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())):
        raise CaptionError(f"--clip-model {folder}: no tokenizer (vocab.json + merges.txt, or tokenizer.json)")


def _pooled(output):
    """transformers 4 returns the projected features; 5 returns them as pooler_output."""
    return output if hasattr(output, "shape") else output.pooler_output


class ClipScorer:
    """Zero-shot probabilities of the caption attributes for a few frames, from a user's CLIP model."""

    def __init__(self, folder: str | os.PathLike, device: str | None = None):
        import torch
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        folder = Path(folder)
        check_clip_folder(folder)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
            self.tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise CaptionError(f"--clip-model {folder}: cannot be loaded as a CLIPModel ({e})") from None
        self.model.eval().to(self.device)
        size = self.model.config.vision_config.image_size
        if (folder / "preprocessor_config.json").is_file():
            self.processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
        else:  # CLIP's own preprocessing at the model's input size
            self.processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        self.prompts = {name: list(pair) for name, pair in ATTRIBUTE_PROMPTS.items()}
        self.prompts["background"] = [BACKGROUND_PROMPT.format(name) for name in BACKGROUNDS]
        texts = [t for group in self.prompts.values() for t in group]
        with torch.inference_mode():
            tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
            features = _pooled(self.model.get_text_features(**tokens))
            self.text = torch.nn.functional.normalize(features.float(), dim=-1)

    def probabilities(self, frames: np.ndarray) -> dict:
        """Mean over `frames` (uint8 [N, H, W, 3]) of each prompt group's softmax:
        {"glasses": p(with), "hat": ..., "smiling": ..., "background": {name: p}}."""
        import torch

        with torch.inference_mode():
            pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
            image = torch.nn.functional.normalize(_pooled(self.model.get_image_features(pixel_values=pixels)).float(),
                                                  dim=-1)
            logits = self.model.logit_scale.exp().float() * image @ self.text.T  # [N, prompts]
        out, start = {}, 0
        for name, group in self.prompts.items():
            p = logits[:, start:start + len(group)].softmax(-1).mean(0).cpu().numpy()
            start += len(group)
            out[name] = float(p[0]) if name in ATTRIBUTE_PROMPTS else dict(zip(BACKGROUNDS, map(float, p)))
        return out


# ---------------------------------------------------------------- entries and the file


def make_caption(attributes: dict, emotion: str | None) -> str:
    text = caption_for(attributes)
    return text + (f", {emotion}" if emotion and emotion != "neutral" else "")


def make_entry(scores: dict, thresholds: dict, emotion: str | None, level: int | None, source: str) -> dict:
    # decided on the scores as written (4 decimals), so that the file agrees with itself
    rounded = {name: round(scores[name], 4) for name in ATTRIBUTE_PROMPTS}
    rounded["background"] = {k: round(v, 4) for k, v in scores["background"].items()}
    attributes = {name: bool(rounded[name] >= thresholds[name]) for name in ATTRIBUTE_PROMPTS}
    attributes["background"] = max(rounded["background"], key=rounded["background"].get)
    return {"caption": make_caption(attributes, emotion), "attributes": attributes, "scores": rounded,
            "emotion": emotion, "emotion_level": level, "source": source, "edited": False}


def is_edited(entry) -> bool:
    """An entry a re-run must keep: flagged "edited", or with a caption changed by hand."""
    if not isinstance(entry, dict):
        return False
    if entry.get("edited") is True:
        return True
    try:
        return entry.get("caption") != make_caption(entry["attributes"], entry.get("emotion"))
    except (KeyError, TypeError, ValueError):
        return True  # attributes changed into something the grammar cannot say: someone's edit


def read_captions_file(path: Path) -> dict:
    """The clips of an existing captions file ({} if none); a file that is not ours stops the run."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CaptionError(f"{path}: exists but is not JSON ({e}); fix it or move it away, it may hold edits") from None
    if not isinstance(data, dict) or not isinstance(data.get("clips"), dict):
        raise CaptionError(f"{path}: exists but is not a captions file (no \"clips\" object); move it away")
    return data["clips"]


def write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + f".partial-{os.getpid()}")
    scratch.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(scratch, path)


def caption_data(data: str | os.PathLike, clip_model: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 thresholds: dict | None = None, frames: int = DEFAULT_FRAMES, device: str | None = None,
                 progress: bool = False) -> Path:
    """Caption every clip or photo of `data` into `out` (default DATA/captions.json, or captions.json beside a
    single photo), keeping edited entries. Returns the path written."""
    data = Path(data)
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    unknown = set(thresholds) - set(ATTRIBUTE_PROMPTS)
    if unknown:
        raise CaptionError(f"thresholds for unknown attributes {sorted(unknown)}; known: {list(ATTRIBUTE_PROMPTS)}")
    items, root = find_items(data)
    out = Path(out) if out is not None else root / CAPTIONS_FILE
    previous = read_captions_file(out)  # before the model loads: a broken file fails fast
    scorer = ClipScorer(clip_model, device=device)
    clips = {key: entry for key, entry in previous.items() if is_edited(entry)}  # edits outlive their clips
    for n, item in enumerate(items, 1):
        if item.key in clips:
            continue
        all_frames = item.frames()
        chosen = np.asarray(all_frames[sample_indices(len(all_frames), frames)])
        emotion, level = emotion_from_path(item.source)
        if emotion is None:
            emotion, level = emotion_from_path(item.key)
        clips[item.key] = make_entry(scorer.probabilities(chosen), thresholds, emotion, level, item.source)
        if progress and (n % 100 == 0 or n == len(items)):
            print(f"caption: {n}/{len(items)}", file=sys.stderr)
    write_json_atomically(out, {
        "format": CAPTIONS_FORMAT, "version": 1, "clip_model": str(Path(clip_model).resolve()),
        "thresholds": thresholds, "frames_per_clip": frames,
        "prompts": {**{k: {"present": a, "absent": b} for k, (a, b) in ATTRIBUTE_PROMPTS.items()},
                    "background": BACKGROUND_PROMPT},
        "rule": "an attribute is present when p(present prompt) over its pair, mean over the sampled frames, is at "
                "least its threshold; background = the palette name with the highest p. Set \"edited\": true on an "
                "entry to keep it as it is when the command runs again (a caption changed by hand is kept too).",
        "clips": clips,
    })
    return out
