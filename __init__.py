"""ComfyUI-PortraitTalk: ComfyUI entry point.

ComfyUI imports this file at startup, so it imports nothing heavy: the nodes (and through
them diffusers, transformers and librosa) load only when ComfyUI calls `comfy_entrypoint`.
Installed with pip, the same folder is the package `comfyui_portraittalk`, and importing it
outside ComfyUI touches no ComfyUI module.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import PortraitTalkExtension

    return PortraitTalkExtension()
