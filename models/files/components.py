"""The parts of a PortraitTalk model, built from a config, and their (de)serialisation.

A model file holds the trained parts (IdentityNet, AnimateNet, the identity and audio projections) and,
for self-contained models such as the tiny demo, the text encoder, image encoder and codec too. Parts a
file lacks come from elsewhere: a user's SD-1.5 checkpoint, CLIP vision and wav2vec2 files, or ComfyUI's
own types.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from ..networks.animate_net import AnimateNet
from ..networks.audio import AudioProjection, MelEncoder
from ..networks.codec import LatentCodec, build_codec
from ..config import attention_streams, codec_factor, uses_audio_modules
from ..families import family_of
from ..networks.identity_net import IdentityNet
from ..networks.image_encoder import ImageEncoder
from ..networks.structure import StructureEncoder
from ..networks.temporal import build_motion_unet
from ..networks.text import TextEncoder
from .weights import ModelFileError, load_component, save_model, split_components

TRAINED = ("identity_net", "animate_net", "image_proj", "audio_proj")
OPTIONAL = ("text_encoder", "image_encoder", "codec")


@dataclass
class Components:
    config: dict
    identity_net: IdentityNet
    animate_net: AnimateNet
    image_proj: nn.Module
    audio_proj: AudioProjection
    text_encoder: TextEncoder | None = None
    image_encoder: ImageEncoder | None = None
    codec: LatentCodec | None = None

    def modules(self) -> dict[str, nn.Module]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "config" and getattr(self, f.name) is not None}

    def to(self, device=None, dtype=None) -> Components:
        for name, module in self.modules().items():
            module.to(device=device, dtype=None if name == "codec" and dtype != torch.float32 else dtype)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, module in self.modules().items() for k, v in module.state_dict().items()}


def audio_feature_shape(config: dict) -> tuple[int, int]:
    """(layers, dim) of the configured audio encoder's features."""
    audio = config["audio"]
    if audio["encoder"] == "mel":
        return 1, int(audio.get("mel", {}).get("n_mels", 80))
    if audio["encoder"] == "wav2vec2":
        w2v = audio["wav2vec2"]
        return int(w2v["num_hidden_layers"]), int(w2v["hidden_size"])
    raise ValueError(f"unknown audio encoder {audio['encoder']!r}")


def image_embed_dim(config: dict) -> int:
    identity = config["identity"]
    if "embed_dim" in identity:  # an embedding from outside (Hallo: ArcFace, 512)
        return int(identity["embed_dim"])
    return int(identity["image_encoder"]["projection_dim"])


def stream_tokens(config: dict, streams: tuple[str, ...]) -> tuple[int, ...]:
    counts = {"identity": config["identity"]["tokens"], "audio": config["audio"]["tokens"],
              "text": config["text"]["max_length"]}
    return tuple(int(counts[s]) for s in streams)


def build_components(config: dict, *, with_text_encoder: bool | None = None, with_image_encoder: bool | None = None,
                     with_codec: bool | None = None) -> Components:
    """Randomly initialised components. By default the tiny family builds every part; full-size
    families leave out the pretrained ones (CLIP text and vision, the VAE), which come from user files."""
    from diffusers import UNet2DConditionModel
    from diffusers.models.embeddings import ImageProjection

    own = not family_of(config).pretrained_encoders  # the model's own encoders and codec (tiny), built here
    unet_cfg, dim = config["unet"], int(config["unet"]["cross_attention_dim"])
    id_tokens, audio = int(config["identity"]["tokens"]), config["audio"]
    base, streams = attention_streams(config)
    identity_streams = tuple(s for s in streams if s != "audio")  # audio never reaches IdentityNet
    identity_net = IdentityNet(UNet2DConditionModel.from_config(unet_cfg), id_tokens, base=base,
                               streams=identity_streams, num_tokens=stream_tokens(config, identity_streams))
    structure = StructureEncoder(config["structure"]["in_channels"], tuple(config["structure"]["channels"]),
                                 unet_cfg["block_out_channels"][0])
    temporal = config.get("temporal") or {}
    motion_unet = build_motion_unet(unet_cfg, config["motion"])
    if uses_audio_modules(config):
        from ..networks.audio_module import attach_audio_modules

        attach_audio_modules(motion_unet, unet_cfg, dim)
    animate_net = AnimateNet(motion_unet, structure, id_tokens, int(audio["tokens"]), base=base, streams=streams,
                             num_tokens=stream_tokens(config, streams), motion_frames=family_of(config).motion_frames,
                             per_frame_norm=bool(temporal.get("per_frame_norm", False)),
                             skip_temporal=tuple(temporal.get("skip", ())))
    layers, feat_dim = audio_feature_shape(config)
    audio_proj = AudioProjection((2 * int(audio["window_radius"]) + 1) * layers * feat_dim, int(audio["hidden"]),
                                 int(audio["tokens"]), dim)
    image_proj = ImageProjection(image_embed_dim(config), dim, id_tokens)
    text_encoder = image_encoder = codec = None
    if own if with_text_encoder is None else with_text_encoder:
        text_encoder = TextEncoder.from_config(config["text"])
    if own if with_image_encoder is None else with_image_encoder:
        image_encoder = ImageEncoder.from_config(config["identity"]["image_encoder"])
    if (own if with_codec is None else with_codec) or config["codec"]["type"] == "space_to_depth":
        codec = build_codec(config["codec"])
    assert codec is None or codec.factor == codec_factor(config)
    return Components(config, identity_net, animate_net, image_proj, audio_proj, text_encoder, image_encoder, codec)


def load_components(config: dict, state: dict[str, torch.Tensor], source) -> Components:
    """Build from the config and load the file's tensors; every trained part must be present."""
    parts = split_components(state)
    missing = [name for name in TRAINED if name not in parts]
    if missing:
        raise ModelFileError(source, f"lacks the parts {missing} (has {sorted(parts)})")
    with torch.device("meta"):  # no random init: every tensor comes from the file
        components = build_components(config, with_text_encoder="text_encoder" in parts,
                                      with_image_encoder="image_encoder" in parts, with_codec="codec" in parts)
    for name, module in components.modules().items():
        module.to_empty(device="cpu")
        _restore_buffers(module, config)
        load_component(module, parts.get(name, {}), name, source)
    unknown = sorted(set(parts) - set(components.modules()))
    if unknown:
        raise ModelFileError(source, f"has unknown parts {unknown}")
    return components


def _restore_buffers(module: nn.Module, config: dict) -> None:
    """Non-persistent buffers are not in the file; recompute them after a meta-device build."""
    from ..networks.image_encoder import CLIP_MEAN, CLIP_STD

    if isinstance(module, ImageEncoder):
        module.mean.copy_(torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        module.std.copy_(torch.tensor(CLIP_STD).view(1, 3, 1, 1))
    for sub in module.modules():  # transformers' CLIP keeps position_ids as a non-persistent buffer
        if hasattr(sub, "position_ids") and isinstance(sub.position_ids, torch.Tensor):
            sub.position_ids.copy_(torch.arange(sub.position_ids.shape[-1]).expand_as(sub.position_ids))


def save_components(components: Components, path, extra: dict | None = None, dtype: torch.dtype | None = None):
    return save_model(path, components.state_dict(), components.config, extra, dtype)


def default_audio_encoder(config: dict):
    """The audio encoder that needs no weights, where the config uses one (the tiny family's mel)."""
    audio = config["audio"]
    return MelEncoder(**audio.get("mel", {})) if audio["encoder"] == "mel" else None
