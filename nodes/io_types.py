"""The pack's own ComfyUI types, for its own objects. Everything that is a core value (IMAGE, AUDIO,
MASK, LATENT, CONDITIONING, VAE, CLIP_VISION, AUDIO_ENCODER_OUTPUT) travels as the core type."""

from comfy_api.v0_0_2 import io

IdentityNet = io.Custom("PORTRAITTALK_IDENTITYNET")  # a PortraitTalkPipeline, used for its IdentityNet
AnimateNet = io.Custom("PORTRAITTALK_ANIMATENET")  # a PortraitTalkPipeline, or a PatchedAnimateNet
TextEncoder = io.Custom("PORTRAITTALK_TEXT_ENCODER")  # a PortraitTalkPipeline with its own text encoder
ImageEncoder = io.Custom("PORTRAITTALK_IMAGE_ENCODER")  # a PortraitTalkPipeline or an ImageEncoder
AudioEncoder = io.Custom("PORTRAITTALK_AUDIO_ENCODER")  # MelEncoder or Wav2Vec2Encoder
Identity = io.Custom("PORTRAITTALK_IDENTITY")  # IdentityFeatures
AudioEmbeds = io.Custom("PORTRAITTALK_AUDIO_EMBEDS")  # AudioEmbeds
CropInfo = io.Custom("PORTRAITTALK_CROP_INFO")  # a list of faces.CropInfo, one per cropped image
