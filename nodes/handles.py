"""What the pack's model types carry: one small handle per type, holding the networks its name promises.

A model file becomes one PortraitTalkPipeline, read once and shared by every loader that names the same file and
precision (nodes/runtime.py, nodes/full_size.py). Each handle keeps that shared `pipeline`, whose methods the nodes
call, and names in `NETWORKS` the pipeline's networks it carries: those are the ComfyUI-managed networks
(nodes/managed.py) that `networks()` returns and the nodes load for it. A network the handle does not name stays
off the device until another node loads it: "Load IdentityNet" hands over IdentityNet, not AnimateNet, although
the file's weights are read once for both.

Every handle has the same attributes (`pipeline`, `NETWORKS`, `networks()`), and the AnimateNet handle adds its
`patch`, so no node has to probe what it was given. Handles are frozen: ComfyUI caches node outputs, so a node
that changes one returns a new handle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..models.pipeline import PatchedAnimateNet, PortraitTalkPipeline


@dataclass(frozen=True, eq=False)  # a handle is a reference: equal only to itself
class _Handle:
    pipeline: PortraitTalkPipeline  # the model the networks belong to, shared with the other handles of its file
    NETWORKS: ClassVar[tuple[str, ...]] = ()  # names in pipeline.components.modules()

    def networks(self) -> list:
        """ComfyUI's ModelPatchers of the networks this handle carries (of those with weights)."""
        from .managed import networks

        return networks(self.pipeline, *self.NETWORKS)


@dataclass(frozen=True, eq=False)
class IdentityNet(_Handle):
    """PORTRAITTALK_IDENTITYNET: IdentityNet and the image projection that makes its identity tokens."""

    NETWORKS: ClassVar[tuple[str, ...]] = ("identity_net", "image_proj")


@dataclass(frozen=True, eq=False)
class AnimateNet(_Handle):
    """PORTRAITTALK_ANIMATENET: AnimateNet and the audio projection that makes its audio tokens; after 'Apply
    Decoupled Attention', also the streams bound to it (`patch`; None before)."""

    patch: PatchedAnimateNet | None = None
    NETWORKS: ClassVar[tuple[str, ...]] = ("animate_net", "audio_proj")

    def patched(self) -> PatchedAnimateNet:
        """The bound streams, which sampling needs: an AnimateNet straight from a loader has none."""
        if self.patch is None:
            raise ValueError("animate_net is not patched: connect it through 'Apply Decoupled Attention' first")
        return self.patch


@dataclass(frozen=True, eq=False)
class TextEncoder(_Handle):
    """PORTRAITTALK_TEXT_ENCODER: the text encoder a model brings (the demo model has one)."""

    NETWORKS: ClassVar[tuple[str, ...]] = ("text_encoder",)


@dataclass(frozen=True, eq=False)
class ImageEncoder(_Handle):
    """PORTRAITTALK_IMAGE_ENCODER: the image encoder a model brings (the demo model has one)."""

    NETWORKS: ClassVar[tuple[str, ...]] = ("image_encoder",)
