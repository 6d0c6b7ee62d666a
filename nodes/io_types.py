"""The pack's own ComfyUI types, for its own objects. Everything that is a core value (IMAGE, AUDIO,
MASK, LATENT, CONDITIONING, VAE, CLIP_VISION, AUDIO_ENCODER_OUTPUT) travels as the core type."""

from comfy_api.v0_0_2 import io

# the model types carry the handles of nodes/handles.py, each holding the networks its name promises
IdentityNet = io.Custom("PORTRAITTALK_IDENTITYNET")  # handles.IdentityNet
AnimateNet = io.Custom("PORTRAITTALK_ANIMATENET")  # handles.AnimateNet, its `patch` set once patched
TextEncoder = io.Custom("PORTRAITTALK_TEXT_ENCODER")  # handles.TextEncoder
ImageEncoder = io.Custom("PORTRAITTALK_IMAGE_ENCODER")  # handles.ImageEncoder
AudioEncoder = io.Custom("PORTRAITTALK_AUDIO_ENCODER")  # MelEncoder or Wav2Vec2Encoder
Identity = io.Custom("PORTRAITTALK_IDENTITY")  # IdentityFeatures
AudioEmbeds = io.Custom("PORTRAITTALK_AUDIO_EMBEDS")  # AudioEmbeds
CropInfo = io.Custom("PORTRAITTALK_CROP_INFO")  # a list of faces.CropInfo, one per cropped image
