"""ComfyUI nodes: thin adapters from ComfyUI types to `models/` calls and back."""

from comfy_api.v0_0_2 import ComfyExtension, io

from . import folders


class PortraitTalkExtension(ComfyExtension):
    async def on_load(self) -> None:
        folders.register()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return []
