"""`PortraitTalkPipeline`: references + audio (+ prompt) → talking-face frames, the diffusers way.

The stages are public, because the ComfyUI nodes call them one by one:
`encode_prompt` → `encode_identity` (IdentityNet, once) → `encode_audio` → `conditioning` (the
decoupled-attention patch) → `sample` → `decode`. `__call__` runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .networks.attention import StreamScales
from .networks.audio import AudioFeatures, AudioInputError, features_per_frame, frame_windows, prepare_waveform
from .audio_contract import num_video_frames
from .files.components import Components, build_components, default_audio_encoder, load_components, save_components
from .config import load_config, structure_reads_reference
from .families import MOTION_FRAMES, Family, family_of
from .networks.identity_net import IdentityFeatures
from .networks.structure import with_reference
from .sampling.sampler import SamplingOptions, SamplingProgress, VideoConditioning, sample_video
from .files.weights import read_model

DEMO_MODEL = Path(__file__).resolve().parent.parent / "assets" / "portraittalk_demo.safetensors"
LARGE_FILE = 512 * 1024 * 1024


def _read_large_model(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A single large model file, memory-mapped, with its config checked as `read_model` checks it."""
    import json

    from .config import ConfigError, validate
    from .files.safetensors_stream import read_mapped
    from .files.weights import FORMAT, ModelFileError

    state, metadata = read_mapped(path)
    if metadata.get("format") != FORMAT or "config" not in metadata:
        return read_model(path)  # read_model says what is wrong with it
    try:
        config = json.loads(metadata["config"])
        validate(config)
    except (json.JSONDecodeError, ConfigError, TypeError, KeyError) as err:
        raise ModelFileError(path, f"its PortraitTalk config is invalid ({err})") from None
    return state, config


@dataclass
class AudioEmbeds:
    """The AUDIO_EMBEDS value: `tokens` `[F, Na, D]`, one set per video frame."""

    tokens: torch.Tensor
    fps: float
    num_frames: int
    duration: float  # seconds of input audio


@dataclass(frozen=True)
class PatchedAnimateNet:
    """AnimateNet with its streams bound: what the decoupled-attention patch returns. A new value, so the
    model it came from (which ComfyUI may still hold in its cache) is never changed."""

    pipeline: PortraitTalkPipeline
    conditioning: VideoConditioning
    audio: AudioEmbeds | None = None

    @property
    def num_frames(self) -> int | None:
        return self.audio.num_frames if self.audio is not None else None

    @property
    def fps(self) -> float:
        return self.audio.fps if self.audio is not None else self.pipeline.fps


@dataclass(frozen=True)
class ReferenceEmbeddings:
    """What `PortraitTalkPipeline.identity_embeddings` makes of the references: `embeds` `[R, E]`, and for an
    ArcFace family the first reference's RegionMasks and a note per reference on how its embedding was made."""

    embeds: torch.Tensor
    regions: object | None = None
    notes: tuple[str, ...] = ()


@dataclass
class PortraitTalkOutput:
    frames: np.ndarray  # [F, H, W, 3] float32 in 0..1
    fps: float
    audio: np.ndarray  # [T] mono float32 at `sample_rate`, exactly F / fps seconds
    sample_rate: int


class ImageInputError(ValueError):
    """An image that cannot be used, with a message that names it."""


def images_to_tensor(images, size: int, *, name: str = "reference_images") -> torch.Tensor:
    """PIL images, HWC arrays (uint8 or float 0..1) or a `[N, H, W, C]` batch → `[N, 3, size, size]` in 0..1.

    Grey and RGBA inputs become RGB (alpha composited on white); non-square images are centre-cropped.
    """
    from PIL import Image

    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)) and not (
            hasattr(images, "ndim") and images.ndim == 4):
        images = [images]
    out = []
    for i, image in enumerate(images):
        label = f"{name}[{i}]"
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGBA") if "A" in image.getbands() else image.convert("RGB"))
        arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4) or min(arr.shape[:2]) < 1:
            raise ImageInputError(f"{label}: expected an image [H, W, 1|3|4], got shape {tuple(arr.shape)}")
        arr = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
        if not np.isfinite(arr).all():
            raise ImageInputError(f"{label}: contains NaN or infinite values")
        if arr.shape[-1] == 4:
            arr = arr[..., :3] * arr[..., 3:] + (1.0 - arr[..., 3:])
        elif arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        t = torch.from_numpy(np.clip(arr, 0, 1)).permute(2, 0, 1)[None]
        h, w = t.shape[-2:]
        side = min(h, w)
        t = t[..., (h - side) // 2: (h - side) // 2 + side, (w - side) // 2: (w - side) // 2 + side]
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bicubic", align_corners=False,
                                            antialias=side > size).clamp(0, 1)
        out.append(t)
    if not out:
        raise ImageInputError(f"{name}: no images given")
    return torch.cat(out)


class PortraitTalkPipeline:
    def __init__(self, components: Components, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 audio_encoder=None):
        self.components = components
        self.config = components.config
        self.device, self.dtype = torch.device(device), dtype
        self.audio_encoder = audio_encoder or default_audio_encoder(self.config)
        components.to(self.device, dtype)
        for module in components.modules().values():
            module.eval()

    # ------------------------------------------------------------------------------------------ files

    @classmethod
    def from_config(cls, config: str | dict = "tiny", *, seed: int | None = 0, **kwargs) -> PortraitTalkPipeline:
        """Random weights, with temporal, structure and new-stream outputs zero-initialised."""
        if seed is not None:
            torch.manual_seed(seed)
        return cls(build_components(load_config(config)), **kwargs)

    @classmethod
    def from_pretrained(cls, path: str | Path = "demo", **kwargs) -> PortraitTalkPipeline:
        """A `.safetensors` model file or folder; "demo" is the bundled tiny model."""
        path = DEMO_MODEL if str(path) == "demo" else Path(path)
        if path.suffix == ".safetensors" and path.is_file() and path.stat().st_size > LARGE_FILE:
            state, config = _read_large_model(path)  # full-size models: no second copy in memory
        else:
            state, config = read_model(path)
        return cls(load_components(config, state, path), **kwargs)

    def save_pretrained(self, path: str | Path, extra: dict | None = None, dtype: torch.dtype | None = None) -> Path:
        """One `.safetensors` file with the config in its metadata; `dtype` (e.g. float16) shrinks it."""
        return save_components(self.components, path, extra, dtype)

    # ----------------------------------------------------------------------------------------- stages

    @property
    def size(self) -> int:
        return int(self.config["video"]["size"])

    @property
    def fps(self) -> float:
        return float(self.config["video"]["fps"])

    def to(self, device=None, dtype=None) -> PortraitTalkPipeline:
        """Move every component (in place) and remember where they are."""
        from .sampling.offload import is_offloaded

        if is_offloaded(self):  # the offloaded networks' CPU copies would go stale
            raise ValueError("this pipeline is offloaded (models/sampling/offload.py): remove_offload(pipeline) before moving "
                             "or casting it, and offload again afterwards")
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        self.components.to(self.device, self.dtype)
        return self

    @property
    def latent_scale(self) -> float:
        """Model latents = codec latents × this (1 for the tiny codec, 0.18215 for the SD VAE); ComfyUI's
        LATENT holds the unscaled ones."""
        return float(getattr(self.components.codec, "scale", 1.0)) if self.components.codec is not None else 0.18215

    @torch.no_grad()
    def null_text(self) -> torch.Tensor:
        """The "no text" embedding `[1, T, D]`: the model's own empty prompt, or zeros without an encoder."""
        if self.components.text_encoder is not None and self.components.text_encoder._tokenize is not None:
            return self.encode_prompt(None)[1]
        text = self.config["text"]
        return torch.zeros(1, int(text["max_length"]), int(self.config["unet"]["cross_attention_dim"]),
                           dtype=self.dtype, device=self.device)

    @torch.no_grad()
    def encode_prompt(self, prompt: str | None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(prompt embedding or None, empty-prompt embedding), each `[1, T, D]`."""
        encoder = self.components.text_encoder
        if encoder is None:
            raise ValueError("this model has no text encoder of its own; pass text embeddings (CONDITIONING)")
        text = encoder([prompt or "", ""]).to(self.dtype)
        return (text[:1] if prompt and prompt.strip() else None), text[1:]

    @torch.no_grad()
    def encode_references(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """Images → (latents `[R, C, h, w]`, pixels `[R, 3, H, W]` in 0..1) at the model's resolution."""
        pixels = images_to_tensor(images, self.size).to(self.device)
        return self.encode_pixels(pixels), pixels

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels `[N, 3, H, W]` in 0..1 → model latents with the model's own codec."""
        if self.components.codec is None:
            raise ValueError("this model has no codec of its own; encode with an SD-1.5 VAE")
        return self.components.codec.encode((pixels.to(self.device) * 2 - 1).to(self.dtype))

    @torch.no_grad()
    def image_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        """Reference pixels `[R, 3, H, W]` in 0..1 → embeddings `[R, E]` with the model's own image encoder."""
        if self.components.image_encoder is None:
            raise ValueError("this model has no image encoder of its own; pass image embeddings (CLIP vision)")
        return self.components.image_encoder(pixels.to(self.device))

    @torch.no_grad()
    def identity_tokens(self, pixels: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Identity tokens `[1, R·N, D]` from reference pixels (own image encoder) or image embeddings
        `[R, E]` (e.g. ComfyUI's CLIP_VISION output), all references concatenated."""
        if image_embeds is None:
            image_embeds = self.image_embeds(pixels)
        width = getattr(getattr(self.components.image_proj, "image_embeds", None), "in_features", None)
        if width is not None and (image_embeds.ndim != 2 or image_embeds.shape[-1] != width):
            raise ValueError(f"image embeddings of shape {list(image_embeds.shape)}: this model's identity "
                             f"projection takes [references, {width}] (full-size models: CLIP ViT-H/14, 1024)")
        tokens = self.components.image_proj(image_embeds.to(self.device, self.dtype))
        return tokens.reshape(1, -1, tokens.shape[-1])

    @torch.no_grad()
    def null_identity_tokens(self, count: int = 1) -> torch.Tensor:
        """Tokens of `count` zero embeddings `[1, count·N, D]`: Hallo's unconditional face embedding."""
        proj = self.components.image_proj
        zeros = torch.zeros(count, proj.image_embeds.in_features, device=self.device, dtype=self.dtype)
        tokens = proj(zeros)
        return tokens.reshape(1, -1, tokens.shape[-1])

    @property
    def family(self) -> Family:
        """What this model's family answers: identity source, base stream, guidance, long audio, sizes."""
        return family_of(self.config)

    @torch.no_grad()
    def encode_identity(self, reference_latents: torch.Tensor, tokens: torch.Tensor, text: torch.Tensor | None,
                        null_text: torch.Tensor, regions=None) -> IdentityFeatures:
        """Run IdentityNet once: on the prompt and the empty prompt when there is a prompt, else on the empty one.
        (Hallo layout: "no text" is no text stream at all, and the features keep what motion frames and
        Hallo's unconditional pass need.)"""
        hallo = self.family.identity_is_base
        if hallo:
            null_text = torch.zeros_like(null_text)
        conditions = ("text", "null") if text is not None else ("null",)
        context = torch.cat([text, null_text]) if text is not None else null_text
        latents = reference_latents.to(self.device, self.dtype)
        features = self.components.identity_net(latents, context.to(self.device, self.dtype), tokens)
        null_tokens = null_identity = None
        if hallo:  # Hallo's unconditional face embedding, and the references under it (its guided bank reads them)
            null_tokens = self.null_identity_tokens(reference_latents.shape[0])
            null_identity = self.components.identity_net(latents, None, null_tokens)
        return IdentityFeatures(features, tokens, conditions, reference_latents.shape[0], null_tokens, latents, regions,
                                null_identity)

    def reference_analysis(self, images: np.ndarray, *, landmarker: str | None = None, arcface: str | None = None,
                           arcface_folders=(), warn=None):
        """Hallo layout: face-mesh landmarks of each reference `[R, H, W, 3]` (uint8 or 0..1) → (ArcFace
        embeddings `[R, 512]`, the first reference's RegionMasks, notes). Without face tools the masks come
        from the centre box and the embedding is zeros; without an ArcFace model the embedding is zeros."""
        import logging

        from ..faces import detect_faces
        from .networks.arcface import embed, find_model
        from .networks.hallo_masks import region_masks

        warn = warn or logging.getLogger(__name__).warning
        images = np.asarray(images)
        if images.dtype != np.uint8:
            images = np.clip(images * 255.0 + 0.5, 0, 255).astype(np.uint8)
        observations = detect_faces(images, "auto", landmarker)
        model = find_model(arcface, arcface_folders)
        masks = self.config.get("masks", {})
        embeds, notes, regions = [], [], None
        for image, obs in zip(images, observations):
            landmarks = obs.landmarks if obs is not None and obs.source == "mediapipe" else None
            vector, how = embed(image, landmarks, model, warn=warn, dim=self.components.image_proj.image_embeds.in_features)
            embeds.append(torch.from_numpy(vector))
            notes.append(how)
            if regions is None:
                regions = region_masks(image.shape[0], image.shape[1], landmarks,
                                       face_expand=float(masks.get("face_expand", 1.2)),
                                       lip_expand=float(masks.get("lip_expand", 2.0)), grid=int(masks.get("grid", 64)),
                                       face_blur=int(masks.get("face_blur", 51)), lip_blur=int(masks.get("lip_blur", 31)))
        return torch.stack(embeds), regions, notes

    @torch.no_grad()
    def identity_embeddings(self, pixels: torch.Tensor, *, image_embeds: torch.Tensor | None = None,
                            image_encoder=None, landmarker: str | None = None, arcface_folders=(),
                            warn=None) -> ReferenceEmbeddings:
        """References `[R, 3, H, W]` in 0..1 → their identity embeddings, the family's way: ArcFace face
        embeddings and region masks (`reference_analysis`, which takes the face-tool arguments), or image
        embeddings: `image_embeds` when given (e.g. ComfyUI's CLIP vision output), else those of
        `image_encoder` (a pipeline with its own), else the model's own. Encode Identity and `__call__` both
        come here, so the two make the same identity."""
        if self.family.arcface_identity:
            embeds, regions, notes = self.reference_analysis(pixels.permute(0, 2, 3, 1).cpu().numpy(),
                                                             landmarker=landmarker, arcface_folders=arcface_folders,
                                                             warn=warn)
            return ReferenceEmbeddings(embeds, regions, tuple(notes))
        if image_embeds is None:
            image_embeds = (image_encoder if image_encoder is not None else self).image_embeds(pixels)
        return ReferenceEmbeddings(image_embeds)

    def audio_features(self, waveform, sample_rate: int) -> tuple[AudioFeatures, int]:
        """Encoder features and the number of samples at 16 kHz (the clip's length)."""
        if self.audio_encoder is None:
            raise ValueError("this model's audio encoder needs weights; load one (e.g. wav2vec2) or pass features")
        wav = prepare_waveform(waveform, sample_rate)
        return self.encoder_features(self.audio_encoder, wav), len(wav)

    def encoder_features(self, encoder, wav16k: np.ndarray, fps: float | None = None) -> AudioFeatures:
        """An encoder's features of a prepared clip, in the variant the model expects (Hallo: wav2vec2 run
        at the video's frame rate, on the clip padded to whole windows)."""
        audio = self.config["audio"]
        if audio.get("interpolate_before_encoder") and hasattr(encoder, "at_frame_rate"):
            pad = int(self.config["sampling"]["window"]) if audio.get("pad_to_window", True) else 1
            return encoder.at_frame_rate(wav16k, float(fps or self.fps), pad)
        return encoder(wav16k)

    @torch.no_grad()
    def encode_audio(self, waveform=None, sample_rate: int | None = None, *, features: AudioFeatures | None = None,
                     num_samples: int | None = None, fps: float | None = None) -> AudioEmbeds:
        """Audio (or precomputed encoder features and the clip length in 16 kHz samples) → AUDIO_EMBEDS."""
        fps = float(fps or self.fps)
        if features is None:
            features, num_samples = self.audio_features(waveform, sample_rate)
        num_frames = num_video_frames(num_samples, 16000, fps)
        if num_frames < 1:
            raise AudioInputError("audio: shorter than one video frame")
        # features already at the video's rate may run past the clip (Hallo pads to whole windows): keep them
        covered = num_frames
        if features.rate == fps:
            covered = max(num_frames, features.values.shape[0])
        per_frame = features_per_frame(features, covered, fps)
        windows = frame_windows(per_frame, int(self.config["audio"]["window_radius"]))
        proj = self.components.audio_proj
        tokens = torch.cat([proj(windows[i: i + 256].to(self.device, self.dtype)).cpu()
                            for i in range(0, covered, 256)])
        return AudioEmbeds(tokens, fps, num_frames, num_samples / 16000)

    def patch(self, *, null_text: torch.Tensor | None = None, text: torch.Tensor | None = None,
              identity: IdentityFeatures | None = None, audio: AudioEmbeds | None = None, base: PatchedAnimateNet | None = None,
              **scales) -> PatchedAnimateNet:
        """Bind streams and λs into a new handle; fields not given are kept from `base`."""
        old = base.conditioning if base is not None else None
        conditioning = self.conditioning(
            null_text=null_text if null_text is not None else (old.null_text if old is not None else self.null_text()),
            text=text if text is not None else (old.text if old is not None else None),
            identity=identity if identity is not None else (old.identity if old is not None else None),
            audio=audio if audio is not None else (base.audio if base is not None else None), **scales)
        return PatchedAnimateNet(self, conditioning, audio if audio is not None else (base.audio if base else None))

    def conditioning(self, *, null_text: torch.Tensor, text: torch.Tensor | None = None,
                     identity: IdentityFeatures | None = None, audio: AudioEmbeds | None = None,
                     text_scale: float = 1.0, identity_scale: float = 1.0, audio_scale: float = 1.0,
                     step_range: tuple[float, float] = (0.0, 1.0),
                     region_weights: tuple[float, float, float] | None = None) -> VideoConditioning:
        """The decoupled-attention patch: bind the streams and their λs (nothing is mutated). For a model
        with Hallo's audio modules, `region_weights` are its pose, face and lip weights."""
        base = self.family.base_stream
        if self.family.identity_is_base:  # Hallo: "no text" means no text stream, never an empty prompt's K/V
            null_text = torch.zeros_like(null_text)
            if text_scale != 0 and not self.config["text"].get("stream_weights"):
                if text is not None:
                    import logging

                    logging.getLogger(__name__).warning(
                        "this model has no text K/V (convert it with --text-from an SD-1.5 checkpoint): λ_text is 0")
                text_scale = 0.0
        if region_weights is None:
            weights = self.config["audio"].get("weights", {})
            region_weights = tuple(float(weights.get(k, 1.0)) for k in ("pose", "face", "lip"))
        return VideoConditioning(null_text=null_text, text=text, identity=identity,
                                 audio_tokens=audio.tokens if audio is not None else None,
                                 scales=StreamScales(text_scale, identity_scale, audio_scale), step_range=step_range,
                                 base_stream=base, region_weights=tuple(region_weights))

    def latent_shape(self, size: int | None = None) -> tuple[int, int, int]:
        codec = self.components.codec
        factor = codec.factor if codec is not None else 8
        channels = self.config["unet"]["in_channels"]
        return channels, (size or self.size) // factor, (size or self.size) // factor

    def sample(self, conditioning: VideoConditioning, options: SamplingOptions, size: int | None = None) -> torch.Tensor:
        """Denoise the video. Models with motion frames (Hallo) run window after window when
        `long_audio` is "motion_frames", or blended windows that all start from the reference."""
        import dataclasses

        from .sampling.motion_frames import motion_features, sample_motion_frames
        from .sampling.sampler import follows_hallo, make_passes

        components, shape = self.components, self.video_latent_shape(conditioning, size)
        identity = conditioning.identity
        joint = self.family.joint_guidance
        for name in ("long_audio", "reference_rows", "noise"):  # what the conditioning sets, the options did not
            if getattr(options, name) is None and getattr(conditioning, name) is not None:
                options = dataclasses.replace(options, **{name: getattr(conditioning, name)})
        if options.reencode is None and conditioning.reencode is not None:
            options = dataclasses.replace(options, reencode=conditioning.reencode)
        if options.structure is None and identity is not None and identity.regions is not None:
            box = identity.regions.structure()  # Hallo's face locator reads the reference's face box
            options = dataclasses.replace(options, structure=torch.nn.functional.interpolate(
                box, size=(shape[1] * self._factor(), shape[2] * self._factor()), mode="bilinear", align_corners=False))
        if options.reencode is None and components.codec is not None:
            options = dataclasses.replace(options, reencode=self._reencode)
        if structure_reads_reference(self.config) and identity is not None and identity.latents is not None:
            pixels = (components.codec.decode(identity.latents[:1].float()) + 1) / 2  # the first reference
            mask = None if options.structure is None else options.structure.float()
            options = dataclasses.replace(options, structure=with_reference(mask, pixels[0].clamp(0, 1)))
        count = self.family.motion_frames
        if count and self.family.long_audio_scheme(options.long_audio) == MOTION_FRAMES:
            if options.skipped_steps():
                raise ValueError("denoise below 1 applies to blended windows; Hallo's motion frames run the whole "
                                 "schedule (set long_audio to 'blended', or denoise 1)")
            return sample_motion_frames(components.animate_net, components.identity_net, conditioning, options, shape,
                                        self.config["scheduler"], joint=joint)
        motion = None
        if count and identity is not None and identity.latents is not None:
            from .sampling.offload import execution_device

            first = identity.to(execution_device(components.identity_net), next(components.identity_net.parameters()).dtype)
            motion = motion_features(components.identity_net, components.animate_net, first,
                                     first.latents[:1].repeat(count, 1, 1, 1), make_passes(conditioning, options, joint),
                                     conditioning.null_text, follows_hallo(options, "reference_rows", joint))
        start = identity.latents[:1] if identity is not None and identity.latents is not None else None
        return sample_video(components.animate_net, conditioning, options, shape, self.config["scheduler"],
                            joint=joint, motion=motion, start=start)

    def video_latent_shape(self, conditioning: VideoConditioning, size: int | None = None) -> tuple[int, int, int]:
        """(channels, h, w) of the video's latents: the model's size, or the reference's for Hallo-style models."""
        shape = self.latent_shape(size)
        identity = conditioning.identity
        if size is None and self.family.follows_reference_size and identity is not None and identity.latents is not None:
            shape = (shape[0], *identity.latents.shape[-2:])
        return shape

    @property
    def sampling_networks(self) -> tuple[str, ...]:
        """The networks `sample` runs: AnimateNet, the codec (previews, Hallo's re-encoded motion frames) and,
        with motion frames, IdentityNet."""
        return ("animate_net", "codec") + (("identity_net",) if self.family.motion_frames else ())

    def memory_estimate(self, conditioning: VideoConditioning, options: SamplingOptions, *, weights: int = 0,
                        size: int | None = None):
        """The peak that `sample` needs beyond `weights` bytes still to load (see models/sampling/memory.py)."""
        from .sampling.memory import sampling_estimate
        from .sampling.sampler import make_passes

        _, h, w = self.video_latent_shape(conditioning, size)
        return sampling_estimate(self.config, weights=weights, frames=min(options.window, options.num_frames),
                                 passes=len(make_passes(conditioning, options, self.family.joint_guidance)),
                                 latent_size=(h, w), dtype=self.dtype)

    def reference_size(self, height: int, width: int) -> int:
        """The side references of `height`×`width` are resized to (see `Family.reference_side`)."""
        return self.family.reference_side(self.size, height, width)

    def _factor(self) -> int:
        return self.components.codec.factor if self.components.codec is not None else 8

    @torch.no_grad()
    def _reencode(self, latents: torch.Tensor) -> torch.Tensor:
        """Model latents → frames → model latents, with the model's own codec (Hallo's motion frames are
        decoded frames, encoded again)."""
        codec = self.components.codec
        images = codec.decode(latents.to(self.device), chunk=latents.shape[0]).clamp(-1, 1)
        return codec.encode(images.to(self.device, self.dtype)).float().cpu()

    def decode(self, latents: torch.Tensor, chunk: int = 8, on_chunk=None, scale: float = 1.0) -> torch.Tensor:
        """Latents (times `scale`) → frames `[F, H, W, 3]` in 0..1 (CPU float32), decoded `chunk` frames at a
        time into the output, so that memory beyond the latents and the frames is one chunk, however long
        the video. `scale` applies per chunk: the latents are neither copied whole nor changed."""
        frames = None
        for start, images in self.components.codec.decode_chunks(latents, chunk, on_chunk, self.device, scale):
            if frames is None:
                frames = images.new_empty((latents.shape[0], *images.shape[2:], images.shape[1]))
            frames[start: start + images.shape[0]] = ((images + 1) / 2).clamp_(0, 1).permute(0, 2, 3, 1)
        return frames if frames is not None else torch.zeros((0, 0, 0, 3))

    @torch.no_grad()
    def preview_frames(self, latents: torch.Tensor) -> np.ndarray:
        """Model latents `[N, C, h, w]` → uint8 frames `[N, H', W', 3]`, cheaply decoded (exactly for the tiny
        codec, a linear latent→RGB map for the VAE)."""
        codec = self.components.codec
        if codec is None:  # full-size models decode with the user's VAE: preview with the SD latent→RGB map
            from .networks.codec import VaeCodec

            rgb = VaeCodec.preview(VaeCodec, latents.to(self.device)).float()
        else:
            rgb = codec.preview(latents.to(self.device, self.dtype)).float()
        return ((rgb + 1) * 127.5).clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()

    def preview_image(self, latents: torch.Tensor):
        """A PIL image of the middle frame of model latents `[F, C, h, w]`."""
        from PIL import Image

        middle = latents.shape[0] // 2
        return Image.fromarray(self.preview_frames(latents[middle: middle + 1])[0])

    # ------------------------------------------------------------------------------------------- all

    def __call__(self, reference_images, audio, sample_rate: int, prompt: str | None = None, *,
                 text_scale: float = 1.0, identity_scale: float = 1.0, audio_scale: float = 1.0,
                 text_guidance_scale: float | None = None, audio_guidance_scale: float | None = None,
                 num_inference_steps: int | None = None, scheduler: str | None = None, karras: bool = False,
                 seed: int = 0, window: int | None = None, overlap: int | None = None, structure=None,
                 denoise: float | None = None, callback=None) -> PortraitTalkOutput:
        defaults = self.config["sampling"]
        if self.components.text_encoder is None and not prompt:
            text, null_text = None, self.null_text()
        else:
            text, null_text = self.encode_prompt(prompt)
        latents, pixels = self.encode_references(reference_images)
        references = self.identity_embeddings(pixels)
        identity = self.encode_identity(latents, self.identity_tokens(image_embeds=references.embeds), text, null_text,
                                        references.regions)
        embeds = self.encode_audio(audio, sample_rate)
        cond = self.conditioning(null_text=null_text, text=text, identity=identity, audio=embeds,
                                 text_scale=text_scale, identity_scale=identity_scale, audio_scale=audio_scale)
        options = SamplingOptions(
            num_frames=embeds.num_frames, steps=num_inference_steps or defaults["steps"],
            scheduler=scheduler or defaults["scheduler"], karras=karras, seed=seed,
            text_guidance=defaults["text_guidance"] if text_guidance_scale is None else text_guidance_scale,
            audio_guidance=defaults["audio_guidance"] if audio_guidance_scale is None else audio_guidance_scale,
            window=window or defaults["window"], overlap=defaults["overlap"] if overlap is None else overlap,
            structure=structure, callback=callback,
            denoise=defaults.get("denoise", 1.0) if denoise is None else denoise)
        frames = self.decode(self.sample(cond, options))
        return PortraitTalkOutput(frames.numpy(), embeds.fps, trim_audio(audio, sample_rate, embeds.num_frames, embeds.fps),
                                  int(sample_rate))


def trim_audio(waveform, sample_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """The input audio as mono, cut or zero-padded to exactly `num_frames / fps` seconds."""
    wav = waveform.detach().cpu().float().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform, np.float32)
    while wav.ndim > 1:
        wav = wav.mean(axis=0)
    length = int(round(num_frames / fps * sample_rate))
    return np.pad(wav[:length], (0, max(0, length - len(wav[:length])))).astype(np.float32)


__all__ = ["PortraitTalkPipeline", "PortraitTalkOutput", "AudioEmbeds", "ReferenceEmbeddings", "SamplingProgress", "images_to_tensor",
           "trim_audio"]
