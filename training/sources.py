"""A training run's starting model, built from the files users have (the full-size recipes).

A config's `"init"` names the recipe; its `"sources"` map each role to a file, and `--source ROLE=PATH` on
the command line overrides them:

    init "sd15"   SD-1.5 checkpoint (UNets, VAE, CLIP text) + AnimateDiff v2 motion module (models/files/assemble.py),
                  CLIP ViT-H image encoder, wav2vec2, a CLIP tokenizer folder
    init "hallo"  Hallo's net.pth (or its converted .safetensors) + the SD-1.5 checkpoint for the VAE, the CLIP
                  text encoder and the text stream's initial K/V, wav2vec2, a CLIP tokenizer folder, and an
                  ArcFace .onnx for Hallo's face embedding (optional: without it the embedding is zeros)

Everything is read locally with safetensors or `torch.load(weights_only=True)`; nothing is downloaded. The
tokenizer folder holds `vocab.json` and `merges.txt` (ComfyUI ships SD-1.5's in `comfy/sd1_tokenizer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROLES = {
    "checkpoint": "SD-1.5 single-file checkpoint with its VAE and CLIP text encoder (.safetensors)",
    "motion": "AnimateDiff v2 motion module mm_sd_v15_v2 (.safetensors)",
    "clip_vision": "CLIP ViT-H/14 image encoder, IP-Adapter layout (.safetensors)",
    "wav2vec2": "wav2vec2 base-960h (.safetensors)",
    "tokenizer": "CLIP tokenizer folder with vocab.json and merges.txt (ComfyUI: comfy/sd1_tokenizer)",
    "hallo": "Hallo's net.pth, or the PortraitTalk file `portraittalk convert hallo` made of it",
    "arcface": "ArcFace .onnx for Hallo's face embedding (optional)",
}
NEEDS = {"sd15": ("checkpoint", "motion", "clip_vision", "wav2vec2", "tokenizer"),
         "hallo": ("hallo", "checkpoint", "wav2vec2", "tokenizer")}


class SourceError(ValueError):
    """A missing or unusable source file; the message names the role and the path."""


@dataclass
class StartingModel:
    components: object  # models.components.Components, every part the objective runs
    audio_encoder: object  # the encoder that makes ClipStore's audio features
    identity_embedder: object | None = None  # frame uint8 [H, W, 3] → embedding (Hallo's ArcFace), or None
    exported_parts: tuple[str, ...] = ()  # the parts the exported file holds (the others come from user files)
    notes: list[str] = field(default_factory=list)


def parse_sources(pairs: list[str] | None) -> dict[str, str]:
    """`["role=path", ...]` from the command line → {role: path}."""
    out = {}
    for pair in pairs or ():
        role, sep, path = pair.partition("=")
        if not sep or role not in ROLES:
            raise SourceError(f"--source {pair!r}: expected ROLE=PATH with ROLE one of {', '.join(ROLES)}")
        out[role] = path
    return out


def resolve(config: dict, overrides: dict[str, str] | None = None) -> dict[str, Path]:
    """The recipe's files, checked to exist before anything is built."""
    recipe = config["init"]
    if recipe not in NEEDS:
        raise SourceError(f"training config: unknown init {recipe!r} (known: {', '.join(NEEDS)})")
    given = {**(config.get("sources") or {}), **(overrides or {})}
    paths = {role: Path(path).expanduser() for role, path in given.items() if path}
    missing = [role for role in NEEDS[recipe] if role not in paths]
    if missing:
        lines = "\n".join(f"  --source {role}=PATH   {ROLES[role]}" for role in missing)
        raise SourceError(f"the {recipe} recipe needs these files:\n{lines}")
    for role, path in paths.items():
        wanted_dir = role == "tokenizer"
        if not (path.is_dir() if wanted_dir else path.is_file()):
            raise SourceError(f"--source {role}={path}: no such {'folder' if wanted_dir else 'file'} ({ROLES[role]})")
    if "tokenizer" in paths and not all((paths["tokenizer"] / f).is_file() for f in ("vocab.json", "merges.txt")):
        raise SourceError(f"--source tokenizer={paths['tokenizer']}: needs vocab.json and merges.txt")
    return paths


def build_starting_model(config: dict, model_config: dict | None, paths: dict[str, Path], work_dir: Path,
                         log=print) -> StartingModel:
    """The components to train, by the config's recipe, in float32 on the CPU."""
    builders = {"sd15": _sd15, "hallo": _hallo}
    start = builders[config["init"]](model_config, paths, Path(work_dir), log)
    start.components.to(dtype=torch.float32)
    return start


def _sd15(model_config, paths, work_dir, log) -> StartingModel:
    from ..models.files.assemble import assemble_sd15
    from ..models.config import load_config
    from ..models.networks.image_encoder import ImageEncoder

    model_config = model_config or load_config("sd15")
    components, report = assemble_sd15(paths["checkpoint"], paths["motion"], config=model_config)
    log(report.summary().splitlines()[0])
    components.text_encoder = _text_encoder(model_config, paths)
    components.image_encoder = ImageEncoder.from_config(model_config["identity"]["image_encoder"])
    _load_into(components.image_encoder.model, paths["clip_vision"], "the CLIP vision encoder",
               prefixes=("", "model."))
    return StartingModel(components, _wav2vec2(paths), exported_parts=("identity_net", "animate_net", "image_proj",
                                                                      "audio_proj"))


def _hallo(model_config, paths, work_dir, log) -> StartingModel:
    from ..models.networks.codec import build_codec
    from ..models.files.components import load_components
    from ..models.families import HALLO, family_name
    from ..models.files.hallo import convert_hallo, is_hallo_checkpoint
    from ..models.files.weights import read_model

    source = paths["hallo"]
    if is_hallo_checkpoint(source):  # Hallo's own net.pth: convert once, with SD-1.5's attn2 K/V for the text stream
        converted = work_dir / "init" / "hallo_converted.safetensors"
        if not converted.is_file():
            converted.parent.mkdir(parents=True, exist_ok=True)
            partial = converted.with_name(".partial-" + converted.name)
            report = convert_hallo(source, partial, text_from=paths["checkpoint"], dtype=torch.float32,
                                   config=model_config)
            partial.rename(converted)
            log(report.summary())
        source = converted
    state, file_config = read_model(source)
    if family_name(file_config) != HALLO.name:
        raise SourceError(f"--source hallo={paths['hallo']}: a model of family {family_name(file_config)!r}, not hallo")
    components = load_components(file_config, state, source)
    config = components.config
    components.codec = build_codec(config["codec"])
    components.text_encoder = _text_encoder(config, paths)
    _load_sd15_parts(components, paths["checkpoint"])
    return StartingModel(components, _wav2vec2(paths), _arcface_embedder(paths.get("arcface"), config, log),
                         exported_parts=("identity_net", "animate_net", "image_proj", "audio_proj"))


def _text_encoder(model_config, paths):
    from ..models.networks.text import TextEncoder

    encoder = TextEncoder.from_config(model_config["text"])
    return encoder.with_tokenizer(str(paths["tokenizer"]))


def _load_sd15_parts(components, checkpoint) -> None:
    """The VAE and the CLIP text encoder of an SD-1.5 checkpoint (not its UNet: Hallo's networks stay)."""
    from ..models.files.convert import read_sd15_checkpoint
    from ..models.files.weights import load_component

    config = components.config
    parts = read_sd15_checkpoint(checkpoint, config["unet"], config["codec"]["vae"])
    for name, module, part in (("the VAE", components.codec.vae, "vae"),
                               ("the CLIP text encoder", components.text_encoder.model, "text_encoder")):
        if part not in parts:
            raise SourceError(f"--source checkpoint={checkpoint}: has no {name}")
        load_component(module, parts[part], name, checkpoint)


def _load_into(module, path, name: str, prefixes=("",)) -> None:
    from ..models.files.weights import load_component, read_state_dict

    state = read_state_dict(path)
    own = module.state_dict()
    for prefix in prefixes:  # a file may carry the model under a prefix
        stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if stripped and all(k in stripped for k in own if not k.endswith("position_ids")):
            state = stripped
            break
    # position_ids: a stored buffer in some files and transformers versions, a non-persistent one in others
    state = {k: v for k, v in state.items() if k in own or not k.endswith("position_ids")}
    state.update({k: v for k, v in own.items() if k.endswith("position_ids") and k not in state})
    load_component(module, state, name, path)


def _wav2vec2(paths):
    from ..models.networks.audio import Wav2Vec2Encoder
    from ..models.networks.wav2vec2 import load_wav2vec2

    return Wav2Vec2Encoder(load_wav2vec2(paths["wav2vec2"]))


def _arcface_embedder(model_path, config: dict, log):
    """Hallo's face embedding of a clip's frame: face-mesh landmarks, then ArcFace (zeros without a model)."""
    from ..faces import detect_faces
    from ..models.networks.arcface import embed

    dim = int(config["identity"]["embed_dim"])
    if model_path is None:
        log("no --source arcface: Hallo's face embedding is zeros for every clip (as Hallo without a face model)")

    def embedder(frame: np.ndarray) -> np.ndarray:
        observation = detect_faces(frame[None], "auto", None)[0]
        landmarks = observation.landmarks if observation is not None and observation.source == "mediapipe" else None
        return embed(frame, landmarks, str(model_path) if model_path else None, dim=dim, warn=log)[0]

    return embedder
