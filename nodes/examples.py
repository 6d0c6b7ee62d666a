"""The bundled example inputs, so the example workflows run out of the box without writing anything
into ComfyUI's input/ folder."""

from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..bundled import ASSETS, REFERENCES, SPEECH


class DemoInputs(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkDemoInputs", display_name="Demo Inputs (PortraitTalk)",
            category="PortraitTalk/examples",
            description="A bundled reference portrait (a SynthTalk face, or a public-domain photo) and speech clip "
                        "for trying the pack. Replace them with LoadImage and LoadAudio for your own.",
            inputs=[
                io.Combo.Input("reference", options=list(REFERENCES), tooltip="Bundled reference portrait."),
                io.Combo.Input("speech", options=list(SPEECH), tooltip="Bundled speech clip."),
            ],
            outputs=[io.Image.Output("image"), io.Audio.Output("audio")],
        )

    @classmethod
    def execute(cls, reference: str, speech: str) -> io.NodeOutput:
        import numpy as np
        import torch
        from PIL import Image

        from ..training.layout import read_wav

        image = np.asarray(Image.open(ASSETS / REFERENCES[reference]).convert("RGB"), dtype=np.float32) / 255.0
        wav, rate = read_wav(ASSETS / SPEECH[speech])
        audio = {"waveform": torch.from_numpy(wav)[None, None], "sample_rate": rate}
        return io.NodeOutput(torch.from_numpy(image)[None], audio)


NODES = [DemoInputs]
