"""Conditioning nodes: text, identity (IdentityNet, once), audio, and the decoupled-attention patch."""

from __future__ import annotations

import logging

import torch
from comfy_api.v0_0_2 import io

from . import handles, io_types
from .managed import encoder_network, load


def _text(conditioning) -> torch.Tensor | None:
    """The token embeddings `[1, T, D]` of a CONDITIONING (its first entry)."""
    if not conditioning:
        return None
    return conditioning[0][0][:1]


class TextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkTextEncode", display_name="Text Encode (PortraitTalk)",
            category="PortraitTalk/conditioning",
            description="Turns a prompt such as 'smiling, wearing glasses' into CONDITIONING with the text "
                        "encoder a model brings (the demo model has one), plus the empty prompt's CONDITIONING "
                        "for the negative / unconditional side.",
            inputs=[
                io_types.TextEncoder.Input("text_encoder", tooltip="From 'Load Text Encoder (PortraitTalk)'."),
                io.String.Input("text", multiline=True, default="",
                                tooltip="What to change about the portrait: e.g. 'a face with glasses, smiling'. "
                                        "Empty means no text."),
            ],
            outputs=[io.Conditioning.Output("positive"), io.Conditioning.Output("negative")],
        )

    @classmethod
    def execute(cls, text_encoder, text: str) -> io.NodeOutput:
        load(text_encoder.pipeline, *text_encoder.NETWORKS)
        prompt, empty = text_encoder.pipeline.encode_prompt(text)
        positive = prompt if prompt is not None else empty
        return io.NodeOutput([[positive.cpu(), {}]], [[empty.cpu(), {}]])


class EncodeIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkEncodeIdentity", display_name="Encode Identity (PortraitTalk)",
            category="PortraitTalk/conditioning",
            description="Runs IdentityNet once on the reference portrait(s): a batch of images means several "
                        "references of one person, whose evidence is pooled. The optional text edits the "
                        "identity (e.g. 'wearing glasses').",
            inputs=[
                io_types.IdentityNet.Input("identity_net", tooltip="From 'Load IdentityNet (PortraitTalk)'."),
                io.Image.Input("image", tooltip="Reference portrait(s), face-cropped (see 'Crop Face'). A batch "
                                                "is several references of the same person."),
                io.Image.Input("extra_references", optional=True,
                               tooltip="More references (any size); added to the batch above."),
                io_types.ImageEncoder.Input("image_encoder", optional=True,
                                            tooltip="The model's own image encoder (demo model)."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="ComfyUI CLIP vision model (CLIP ViT-H, IP-Adapter layout) for "
                                            "full-size models; used when no image_encoder is connected."),
                io.ClipVisionOutput.Input("clip_vision_output", optional=True,
                                          tooltip="Core 'CLIP Vision Encode' of the same references, one row "
                                                  "each; instead of clip_vision."),
                io.Conditioning.Input("positive", optional=True, tooltip="Text that edits the identity."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="The 'no text' conditioning (empty prompt); zeros if absent."),
                io.Vae.Input("vae", optional=True,
                             tooltip="ComfyUI VAE for full-size models; the demo model uses its own codec."),
            ],
            outputs=[io_types.Identity.Output("identity")],
        )

    @classmethod
    def execute(cls, identity_net, image, extra_references=None, image_encoder=None, clip_vision=None,
                clip_vision_output=None, positive=None, negative=None, vae=None) -> io.NodeOutput:
        from ..models.pipeline import ImageInputError, images_to_tensor

        pipe = identity_net.pipeline
        references = list(image) + (list(extra_references) if extra_references is not None else [])
        if not references:
            raise ImageInputError("image: the batch is empty (0 images); connect at least one reference portrait")
        side = pipe.reference_size(*references[0].shape[:2])  # the model's size (Hallo: the reference's)
        pixels = images_to_tensor(references, side, name="image")  # [R, 3, S, S] in 0..1
        arcface = pipe.family.arcface_identity  # face mesh → ArcFace + region masks, no image encoder
        # ComfyUI's own models (VAE, CLIP vision) run first: loading them may move other models off the GPU
        latents = vae.encode(pixels.permute(0, 2, 3, 1)) * pipe.latent_scale if vae is not None else None
        embeds = None
        if not arcface and image_encoder is None and clip_vision_output is not None:
            embeds = _encoded_references(clip_vision_output, len(references))
        elif not arcface and image_encoder is None and clip_vision is not None:
            embeds = clip_vision.encode_image(pixels.permute(0, 2, 3, 1)).image_embeds
        null = _text(negative)
        load(pipe, *identity_net.NETWORKS, *(["codec"] if latents is None else []),
             *(["image_encoder"] if embeds is None and image_encoder is None else []),
             *(["text_encoder"] if null is None else []),
             also=image_encoder.networks() if image_encoder is not None and not arcface else [])
        if latents is None:
            latents = pipe.encode_pixels(pixels)
        found = pipe.identity_embeddings(pixels, image_embeds=embeds,
                                         image_encoder=image_encoder.pipeline if image_encoder is not None else None,
                                         **(_face_tools() if arcface else {}))
        if arcface:
            logging.getLogger(__name__).info("PortraitTalk Hallo reference: %s; masks from %s", "; ".join(found.notes),
                                             found.regions.source)
        tokens = pipe.identity_tokens(image_embeds=found.embeds)
        identity = pipe.encode_identity(latents, tokens, _text(positive),
                                        null if null is not None else pipe.null_text(), found.regions)
        return io.NodeOutput(identity.to("cpu"))


def _encoded_references(clip_vision_output, references: int) -> torch.Tensor:
    """The image embeddings of a core CLIP_VISION_OUTPUT, one per reference."""
    embeds = getattr(clip_vision_output, "image_embeds", None)
    if embeds is None or embeds.ndim != 2:
        raise ValueError("clip_vision_output has no image embeddings [N, D]: connect 'CLIP Vision Encode' of a "
                         "CLIP vision model with a projection (CLIP ViT-H for full-size models)")
    if embeds.shape[0] != references:
        raise ValueError(f"clip_vision_output holds {embeds.shape[0]} image embeddings for {references} "
                         f"reference image(s): encode the same images (image and extra_references) with it")
    return embeds


def _face_tools() -> dict:
    """Where ComfyUI keeps the face landmarker and ArcFace models (each optional), for an ArcFace family."""
    import os

    import folder_paths

    from .faces import landmarker_path
    from .folders import PORTRAITTALK, register

    register()
    faces = [os.path.join(f, "face") for f in folder_paths.get_folder_paths(PORTRAITTALK)]
    return {"landmarker": landmarker_path(), "arcface_folders": faces, "warn": logging.getLogger(__name__).warning}


class EncodeAudio(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkEncodeAudio", display_name="Encode Audio (PortraitTalk)",
            category="PortraitTalk/conditioning",
            description="Speech → per-frame audio tokens for AnimateNet. Any sample rate and channel count is "
                        "accepted; the video gets ceil(duration × fps) frames.",
            inputs=[
                io_types.AnimateNet.Input("animate_net", tooltip="Its audio projection turns features into tokens."),
                io.Audio.Input("audio", optional=True, tooltip="The voice recording (e.g. from LoadAudio)."),
                io_types.AudioEncoder.Input("audio_encoder", optional=True,
                                            tooltip="Defaults to the model's own encoder (mel for the demo)."),
                io.AudioEncoderOutput.Input("audio_encoder_output", optional=True,
                                            tooltip="Features from ComfyUI's AudioEncoderEncode (wav2vec2), used "
                                                    "instead of audio + audio_encoder."),
                io.Float.Input("fps", default=0.0, min=0.0, max=120.0, step=0.5,
                               tooltip="Video frame rate; 0 uses the model's (25 for the demo)."),
            ],
            outputs=[io_types.AudioEmbeds.Output("audio_embeds"), io.Int.Output("frame_count"),
                     io.Float.Output("video_fps", display_name="fps")],
        )

    @classmethod
    def execute(cls, animate_net, audio=None, audio_encoder=None, audio_encoder_output=None, fps=0.0) -> io.NodeOutput:
        from ..models.networks.audio import features_from_encoder_output, prepare_waveform

        pipe = animate_net.pipeline
        fps = fps or pipe.fps
        if audio_encoder_output is not None:
            features = features_from_encoder_output(audio_encoder_output, name="audio_encoder_output")
            load(pipe, "audio_proj")
            embeds = pipe.encode_audio(features=features, num_samples=int(audio_encoder_output["audio_samples"]), fps=fps)
        elif audio is not None:
            encoder = audio_encoder or pipe.audio_encoder
            if encoder is None:
                raise ValueError("this model needs an audio encoder: connect 'Load Audio Encoder' or ComfyUI's "
                                 "AudioEncoderEncode output")
            wav = prepare_waveform(audio["waveform"], audio["sample_rate"], name="audio")
            load(pipe, "audio_proj", also=encoder_network(encoder))
            embeds = pipe.encode_audio(features=pipe.encoder_features(encoder, wav, fps), num_samples=len(wav), fps=fps)
        else:
            raise ValueError("connect 'audio' (or 'audio_encoder_output')")
        return io.NodeOutput(embeds, embeds.num_frames, embeds.fps)


class ApplyDecoupledAttention(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkApplyDecoupledAttention", display_name="Apply Decoupled Attention (PortraitTalk)",
            category="PortraitTalk/conditioning",
            description="Binds identity, audio and text to AnimateNet through decoupled cross-attention: "
                        "out = λ_text·Attn(text) + λ_identity·Attn(identity) + λ_audio·Attn(audio). Returns a "
                        "new, patched AnimateNet; the input model is left as it was. A λ of 0 removes its "
                        "stream entirely.",
            inputs=[
                io_types.AnimateNet.Input("animate_net", tooltip="From 'Load AnimateNet', or an earlier patch."),
                io_types.Identity.Input("identity", optional=True, tooltip="From 'Encode Identity'."),
                io_types.AudioEmbeds.Input("audio_embeds", optional=True, tooltip="From 'Encode Audio'."),
                io.Conditioning.Input("positive", optional=True, tooltip="The text prompt."),
                io.Conditioning.Input("negative", optional=True,
                                      tooltip="The 'no text' conditioning, used for guidance (empty prompt)."),
                io.Float.Input("text_scale", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="λ_text: weight of the text stream (0 removes it, also from IdentityNet)."),
                io.Float.Input("identity_scale", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="λ_identity: weight of the reference identity (0 ignores the references)."),
                io.Float.Input("audio_scale", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="λ_audio: weight of the audio stream (0 makes the video ignore the audio)."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the sampling steps at which the λs start to apply."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Fraction of the sampling steps after which identity and audio are off."),
            ],
            outputs=[io_types.AnimateNet.Output("patched", display_name="animate_net")],
        )

    @classmethod
    def execute(cls, animate_net, identity=None, audio_embeds=None, positive=None, negative=None, text_scale=1.0,
                identity_scale=1.0, audio_scale=1.0, start_percent=0.0, end_percent=1.0) -> io.NodeOutput:
        pipe, base = animate_net.pipeline, animate_net.patch  # base: an earlier patch, whose streams are kept
        null = _text(negative)
        if null is None and base is None:  # the model's own empty prompt, from its text encoder if it has one
            load(pipe, "text_encoder")
            null = pipe.null_text().cpu()
        patched = pipe.patch(null_text=null, text=_text(positive), identity=identity, audio=audio_embeds,
                             base=base, text_scale=text_scale, identity_scale=identity_scale, audio_scale=audio_scale,
                             step_range=(min(start_percent, end_percent), max(start_percent, end_percent)))
        return io.NodeOutput(handles.AnimateNet(pipe, patched))


LONG_AUDIO = ["motion_frames", "blended"]
FIDELITY = ["hallo", "own"]


class HalloSettings(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkHalloSettings", display_name="Hallo Settings (PortraitTalk)",
            category="PortraitTalk/conditioning",
            description="Options of models converted from Hallo's weights: the weights of the audio attention in "
                        "the background (pose), face and lip regions, and how long audio is split: Hallo's motion "
                        "frames (windows one after another, each starting from the last frames of the previous "
                        "one) or blended overlapping windows; and, by default, Hallo's own reference rows and noise, so "
                        "that its weights run as in Hallo (docs/hallo.md). Returns a new patched AnimateNet.",
            inputs=[
                io_types.AnimateNet.Input("animate_net", tooltip="From 'Apply Decoupled Attention'."),
                io.Float.Input("pose_weight", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="Audio attention outside the face (head pose); Hallo's default is 1."),
                io.Float.Input("face_weight", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="Audio attention on the face without the lips (expression)."),
                io.Float.Input("lip_weight", default=1.0, min=0.0, max=3.0, step=0.05,
                               tooltip="Audio attention on the lips."),
                io.Combo.Input("long_audio", options=LONG_AUDIO, default="motion_frames",
                               tooltip="motion_frames: Hallo's scheme (set the sampler's overlap to 0). blended: "
                                       "overlapping windows blended at every step, each starting from the reference."),
                io.Vae.Input("vae", optional=True,
                             tooltip="Motion frames are decoded and encoded again between windows, as Hallo does; "
                                     "without a VAE their latents are used as they are."),
                io.Combo.Input("reference_rows", options=FIDELITY, default="hallo", optional=True,
                               tooltip="hallo: the reference features Hallo's guided pass gives its conditional frames "
                                       "(alternating between the real and the zero face embedding), what its weights "
                                       "were judged by. own: every conditional frame sees the reference under the "
                                       "real embedding."),
                io.Combo.Input("noise", options=FIDELITY, default="hallo", optional=True,
                               tooltip="hallo: each window draws its noise from one generator seeded once, as Hallo's "
                                       "inference does (seed 42 gives Hallo's noise). own: one draw for the video."),
            ],
            outputs=[io_types.AnimateNet.Output("patched", display_name="animate_net")],
        )

    @classmethod
    def validate_inputs(cls, long_audio, reference_rows="hallo", noise="hallo"):
        if long_audio not in LONG_AUDIO:
            return f"long_audio must be one of {LONG_AUDIO}, got {long_audio!r}"
        for name, value in (("reference_rows", reference_rows), ("noise", noise)):
            if value not in FIDELITY:
                return f"{name} must be one of {FIDELITY}, got {value!r}"
        return True

    @classmethod
    def execute(cls, animate_net, pose_weight, face_weight, lip_weight, long_audio, vae=None, reference_rows="hallo",
                noise="hallo") -> io.NodeOutput:
        import dataclasses

        patched = animate_net.patched()
        scale = animate_net.pipeline.latent_scale

        def reencode(latents):
            images = vae.decode(latents / scale)
            return (vae.encode(images.reshape(-1, *images.shape[-3:])[..., :3]) * scale).float().cpu()

        conditioning = dataclasses.replace(patched.conditioning, region_weights=(pose_weight, face_weight, lip_weight),
                                           long_audio=long_audio, reencode=reencode if vae is not None else None,
                                           reference_rows=reference_rows, noise=noise)
        # new values, never changed ones: the input handle may still sit in ComfyUI's cache
        patch = dataclasses.replace(patched, conditioning=conditioning)
        return io.NodeOutput(handles.AnimateNet(animate_net.pipeline, patch))


NODES = [TextEncode, EncodeIdentity, EncodeAudio, ApplyDecoupledAttention, HalloSettings]
