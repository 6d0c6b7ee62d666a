"""ComfyUI nodes: thin adapters from ComfyUI types to `models/` calls and back, one file per family."""

from comfy_api.v0_0_2 import ComfyExtension, io

from . import conditioning, evaluation, examples, faces, folders, full_size, loaders, preview, sampling

NODES = [*loaders.NODES, *full_size.NODES, *conditioning.NODES, *sampling.NODES, *faces.NODES, *preview.NODES,
         *evaluation.NODES, *examples.NODES]


class PortraitTalkExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        folders.register()  # ComfyUI 0.3.75 never calls on_load(), so register here
        return NODES
