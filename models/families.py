"""Model families: what the generic code asks of a model, answered in one place.

The shipped families are `TINY`, `SD15` and `HALLO`. A family is read from a config by `family_of`, the only
reader of the config keys that set these answers, key by key: a config of one family with another's options
(the tests' tiny model in Hallo's layout) gets that layout's answers, as the sampler has always given it.
`family_name` reads only the name, for configs that may not be complete.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import attention_streams

BLENDED, MOTION_FRAMES = "blended", "motion_frames"
LONG_AUDIO_SCHEMES = (BLENDED, MOTION_FRAMES)


@dataclass(frozen=True)
class Family:
    name: str  # the config's "family"
    identity_source: str  # "clip": image-encoder embeddings; "arcface": ArcFace face embeddings plus region masks
    base_stream: str  # the stream on the UNet's own cross-attention K/V: "text", or "identity" (Hallo)
    guidance: str  # "compositional" (text and audio terms), or "joint" (Hallo's cfg)
    long_audio: str  # the configured long-audio scheme ("blended" or "motion_frames"), before `long_audio_scheme`
    motion_frames: int  # frames of the previous window prepended before each temporal layer; 0: none
    follows_reference_size: bool  # runs at the reference's size (a multiple of 64 px), not only at the model's
    # its text and image encoders and its codec are pretrained networks (CLIP, the SD VAE) from the user's files,
    # left out of a new model and frozen in training; False: the model builds and trains its own small ones (tiny)
    pretrained_encoders: bool = False
    # its audio encoder is a pretrained network with weights from a file (wav2vec2); False: built in (mel)
    pretrained_audio_encoder: bool = False

    @property
    def arcface_identity(self) -> bool:
        """Identity embeddings are ArcFace face embeddings, made with Hallo's region masks, not CLIP's."""
        return self.identity_source == "arcface"

    @property
    def identity_is_base(self) -> bool:
        return identity_is_base(self.base_stream)

    @property
    def joint_guidance(self) -> bool:
        return self.guidance == "joint"

    def long_audio_scheme(self, requested: str | None = None) -> str:
        """The scheme a sampling run uses: `requested`, else the configured one; blended without motion frames."""
        mode = requested or self.long_audio
        if mode not in LONG_AUDIO_SCHEMES:
            raise ValueError(f"long_audio must be 'blended' or 'motion_frames', not {mode!r}")
        return mode if self.motion_frames > 0 else BLENDED

    def reference_side(self, model_size: int, height: int, width: int) -> int:
        """The side references are resized to: the model's size, or for a family that follows the reference,
        its shorter side rounded down to a multiple of 64 (at least 64, at most 1024)."""
        if not self.follows_reference_size:
            return model_size
        return int(min(1024, max(64, min(height, width) // 64 * 64)))


def identity_is_base(base_stream: str) -> bool:
    """Hallo's layout, asked of a network's or a conditioning's base stream: the face embedding drives the UNet's
    own K/V, so "no text" means no text stream at all and text, when there is any, is an extra stream."""
    return base_stream == "identity"


def text_is_base(base_stream: str) -> bool:
    """The usual layout: the prompt drives the UNet's own K/V, so a network always gets a text context."""
    return base_stream == "text"


def family_of(config: dict) -> Family:
    """The family a complete config describes, from its keys (the shipped ones equal TINY, SD15, HALLO)."""
    sampling = config["sampling"]
    return Family(
        name=str(config["family"]),
        identity_source="arcface" if config["identity"].get("encoder") == "arcface" else "clip",
        base_stream=attention_streams(config)[0],
        guidance="joint" if sampling.get("guidance") == "joint" else "compositional",
        long_audio=sampling.get("long_audio", BLENDED),
        motion_frames=int((config.get("temporal") or {}).get("motion_frames", 0)),
        follows_reference_size=bool(config["video"].get("size_from_reference", False)),
        pretrained_encoders=config["family"] != TINY.name,
        pretrained_audio_encoder=config["audio"].get("encoder") == "wav2vec2")


def family_name(config) -> str | None:
    """The family a config names, without reading the rest (a file's config may be partial or broken): for
    messages, and for the code that makes one family only. None where it names none."""
    return config.get("family") if isinstance(config, dict) else None


TINY = Family("tiny", "clip", "text", "compositional", BLENDED, 0, False)
SD15 = Family("sd15", "clip", "text", "compositional", BLENDED, 0, False, pretrained_encoders=True,
              pretrained_audio_encoder=True)
HALLO = Family("hallo", "arcface", "identity", "joint", MOTION_FRAMES, 2, True, pretrained_encoders=True,
               pretrained_audio_encoder=True)
SHIPPED = {family.name: family for family in (TINY, SD15, HALLO)}
