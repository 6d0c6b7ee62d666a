"""Loader nodes: IdentityNet, AnimateNet, and the text, image and audio encoders a model brings."""

from __future__ import annotations

from comfy_api.v0_0_2 import io

from . import folders, handles, io_types
from .runtime import WEIGHT_DTYPE_TOOLTIP, WEIGHT_DTYPES, load_pipeline

MEL = "mel (built in, no weights)"


class _ModelLoader(io.ComfyNode):
    """One part of a PortraitTalk model file: every loader below differs only in what it says and returns."""

    NODE_ID = DISPLAY_NAME = DESCRIPTION = TOOLTIP = ""
    OUTPUT = io_types.IdentityNet
    HANDLE: type[handles._Handle] = handles.IdentityNet  # what OUTPUT carries
    OUTPUT_NAME = ""
    REQUIRES: str | None = None  # a component the model must bring, with the alternative to name
    ALTERNATIVE = ""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category="PortraitTalk/loaders",
            description=cls.DESCRIPTION,
            inputs=[io.Combo.Input("model_name", options=folders.model_names(), tooltip=cls.TOOLTIP),
                    io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="auto", optional=True,
                                   tooltip=WEIGHT_DTYPE_TOOLTIP)],
            outputs=[cls.OUTPUT.Output(cls.OUTPUT_NAME)],
        )

    @classmethod
    def validate_inputs(cls, model_name, weight_dtype="auto"):
        # ComfyUI 0.3.75 does not check V3 combo values itself; refuse unknown names (and '../') up front.
        # One message shows under every input this takes, so it names each wrong input.
        problems = []
        if model_name not in folders.model_names():
            problems.append("model_name: " + folders.unknown_name_message(folders.PORTRAITTALK, model_name, "a model"))
        if weight_dtype not in WEIGHT_DTYPES:
            problems.append(f"weight_dtype: {weight_dtype!r} is not one of {', '.join(WEIGHT_DTYPES)}")
        return "; ".join(problems) if problems else True

    @classmethod
    def execute(cls, model_name: str, weight_dtype: str = "auto") -> io.NodeOutput:
        pipeline = load_pipeline(folders.model_path(model_name), weight_dtype)
        if cls.REQUIRES and getattr(pipeline.components, cls.REQUIRES) is None:
            raise ValueError(f"{model_name} has no {cls.REQUIRES.replace('_', ' ')} of its own; {cls.ALTERNATIVE}")
        return io.NodeOutput(cls.HANDLE(pipeline))


class LoadIdentityNet(_ModelLoader):
    NODE_ID, DISPLAY_NAME = "PortraitTalkLoadIdentityNet", "Load IdentityNet (PortraitTalk)"
    DESCRIPTION = ("Loads IdentityNet, which reads the reference portraits once per video and keeps the identity "
                   "consistent, from a PortraitTalk model file in models/portraittalk (or the bundled demo model).")
    TOOLTIP = "PortraitTalk .safetensors model; the bundled demo runs on a CPU."
    OUTPUT, HANDLE, OUTPUT_NAME = io_types.IdentityNet, handles.IdentityNet, "identity_net"


class LoadAnimateNet(_ModelLoader):
    NODE_ID, DISPLAY_NAME = "PortraitTalkLoadAnimateNet", "Load AnimateNet (PortraitTalk)"
    DESCRIPTION = ("Loads AnimateNet, the video denoiser with identity, temporal and structure attention that "
                   "'Apply Decoupled Attention' patches and the sampler runs.")
    TOOLTIP = "PortraitTalk .safetensors model; usually the same file as IdentityNet's."
    OUTPUT, HANDLE, OUTPUT_NAME = io_types.AnimateNet, handles.AnimateNet, "animate_net"


class LoadTextEncoder(_ModelLoader):
    NODE_ID, DISPLAY_NAME = "PortraitTalkLoadTextEncoder", "Load Text Encoder (PortraitTalk)"
    DESCRIPTION = ("Loads the text encoder that small models such as the bundled demo bring with them. Full-size "
                   "models use ComfyUI's CLIPTextEncode with an SD-1.5 CLIP instead.")
    TOOLTIP = "A PortraitTalk model that includes its own text encoder."
    OUTPUT, HANDLE, OUTPUT_NAME = io_types.TextEncoder, handles.TextEncoder, "text_encoder"
    REQUIRES, ALTERNATIVE = "text_encoder", "use CLIPTextEncode with an SD-1.5 CLIP"


class LoadImageEncoder(_ModelLoader):
    NODE_ID, DISPLAY_NAME = "PortraitTalkLoadImageEncoder", "Load Image Encoder (PortraitTalk)"
    DESCRIPTION = ("Loads the image encoder behind the identity tokens from a PortraitTalk model that brings one "
                   "(the demo does). Full-size models can use ComfyUI's CLIPVisionLoader (CLIP ViT-H) instead, "
                   "wired to 'Encode Identity'.")
    TOOLTIP = "A PortraitTalk model that includes its own image encoder."
    OUTPUT, HANDLE, OUTPUT_NAME = io_types.ImageEncoder, handles.ImageEncoder, "image_encoder"
    REQUIRES, ALTERNATIVE = "image_encoder", "use CLIPVisionLoader (CLIP ViT-H)"


class LoadAudioEncoder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkLoadAudioEncoder", display_name="Load Audio Encoder (PortraitTalk)",
            category="PortraitTalk/loaders",
            description="The audio front end: the built-in log-mel encoder (what the demo model uses), or a "
                        "wav2vec2 (base-960h layout) safetensors file from models/audio_encoders. ComfyUI's own "
                        "AudioEncoderLoader + AudioEncoderEncode output works too, wired to 'Encode Audio'.",
            inputs=[io.Combo.Input("encoder_name", options=[MEL] + _wav2vec2_files(),
                                   tooltip="Must match the encoder the model was trained with (see its card).")],
            outputs=[io_types.AudioEncoder.Output("audio_encoder")],
        )

    @classmethod
    def validate_inputs(cls, encoder_name):
        if encoder_name != MEL and encoder_name not in _wav2vec2_files():
            return folders.unknown_name_message("audio_encoders", encoder_name, "a wav2vec2 .safetensors file")
        return True

    @classmethod
    def execute(cls, encoder_name: str) -> io.NodeOutput:
        from ..models.networks.audio import MelEncoder, Wav2Vec2Encoder
        from ..models.networks.wav2vec2 import load_wav2vec2

        if encoder_name == MEL:
            return io.NodeOutput(MelEncoder())
        return io.NodeOutput(Wav2Vec2Encoder(load_wav2vec2(folders.full_path("audio_encoders", encoder_name))))


def _wav2vec2_files() -> list[str]:
    import folder_paths

    return [n for n in folder_paths.get_filename_list("audio_encoders") if n.endswith(".safetensors")]


NODES = [LoadIdentityNet, LoadAnimateNet, LoadTextEncoder, LoadImageEncoder, LoadAudioEncoder]
