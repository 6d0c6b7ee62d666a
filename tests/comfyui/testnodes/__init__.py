"""Helper nodes for the harness's own tests; the test server links this folder into
custom_nodes/portraittalk-testnodes. Not part of the pack.

PTTestSleep loops `steps` times with comfy.utils.ProgressBar, so it sends `progress`
messages and is an interrupt point at every step (the same contract our sampler follows).
PTTestFail raises, to exercise `execution_error`. Both are output nodes, so one node is a
whole prompt. Vary `tag` to defeat the execution cache.
"""

import time

from comfy_api.v0_0_2 import ComfyExtension, io


class PTTestSleep(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PTTestSleep",
            display_name="PortraitTalk test: sleep with progress",
            category="testing/portraittalk",
            is_output_node=True,
            inputs=[
                io.Int.Input("steps", default=5, min=1, max=100000, tooltip="progress steps"),
                io.Float.Input("seconds_per_step", default=0.01, min=0.0, max=10.0, step=0.01, tooltip="sleep per step"),
                io.String.Input("tag", default="", tooltip="anything; vary it to defeat the cache"),
            ],
            outputs=[io.Int.Output(display_name="steps_done")],
        )

    @classmethod
    def execute(cls, steps: int, seconds_per_step: float, tag: str) -> io.NodeOutput:
        import comfy.utils

        bar = comfy.utils.ProgressBar(steps)
        done = 0
        for _ in range(steps):
            time.sleep(seconds_per_step)
            bar.update(1)  # raises InterruptProcessingException when interrupted
            done += 1
        return io.NodeOutput(done, ui={"text": [f"{done} steps {tag}"]})


class PTTestFail(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PTTestFail",
            display_name="PortraitTalk test: raise",
            category="testing/portraittalk",
            is_output_node=True,
            inputs=[io.String.Input("message", default="boom", tooltip="exception text")],
            outputs=[],
        )

    @classmethod
    def execute(cls, message: str) -> io.NodeOutput:
        raise ValueError(message)


class _TestExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [PTTestSleep, PTTestFail]


async def comfy_entrypoint() -> ComfyExtension:
    return _TestExtension()
