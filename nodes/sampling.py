"""Sampling nodes: denoise AnimateNet frames (LATENT), and decode them to IMAGE + fps + trimmed AUDIO."""

from __future__ import annotations

import torch
from comfy_api.v0_0_2 import io

from . import io_types
from .managed import load, sampling_memory
from .runtime import Progress

SCHEDULERS = ["ddim", "euler", "dpmpp_2m"]


class Sampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkSampler", display_name="Sample AnimateNet Frames (PortraitTalk)",
            category="PortraitTalk/sampling",
            description="Denoises the talking-face video with the patched AnimateNet. Long audio runs in "
                        "overlapping context windows, so memory stays flat; guidance passes run batched.",
            inputs=[
                io_types.AnimateNet.Input("animate_net", tooltip="From 'Apply Decoupled Attention'."),
                io.Int.Input("steps", default=20, min=1, max=200, tooltip="Denoising steps (20–30 is typical)."),
                io.Combo.Input("scheduler", options=SCHEDULERS, default="ddim",
                               tooltip="diffusers scheduler: DDIM, Euler, or DPM++ 2M."),
                io.Boolean.Input("karras", default=False, tooltip="Karras sigmas (Euler and DPM++ 2M only)."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True,
                             tooltip="Noise seed; noise is drawn on the CPU, so a seed gives the same video on "
                                     "any device."),
                io.Float.Input("text_guidance", default=1.0, min=1.0, max=15.0, step=0.1,
                               tooltip="Guidance on the prompt; 1 turns it off and saves a pass."),
                io.Float.Input("audio_guidance", default=1.0, min=1.0, max=10.0, step=0.1,
                               tooltip="Guidance on the audio; 1 turns it off and saves a pass (too high "
                                       "exaggerates the mouth)."),
                io.Int.Input("window", default=16, min=2, max=32,
                             tooltip="Frames per context window (the temporal layers see at most 32)."),
                io.Int.Input("overlap", default=4, min=0, max=31,
                             tooltip="Frames shared by neighbouring windows, blended with tapered weights."),
                io.Int.Input("frames", default=0, min=0, max=100000,
                             tooltip="Number of frames; 0 takes it from the audio."),
                io.Mask.Input("structure", optional=True,
                              tooltip="Face-region mask: one for all frames, or one per frame (e.g. from "
                                      "'Crop Face')."),
                io.Float.Input("denoise", default=1.0, min=0.05, max=1.0, step=0.05, optional=True,
                               tooltip="Share of the schedule to run, as in KSampler: below 1, sampling starts "
                                       "from the reference noised to that level (keeps more of its look; "
                                       "too low freezes the face)."),
            ],
            outputs=[io.Latent.Output("latent")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, window, overlap):
        # ComfyUI skips its own min/max checks for inputs that validate_inputs takes: check them here.
        if isinstance(window, int) and not 2 <= window <= 32:
            return f"window must be 2 to 32 frames (the temporal layers see at most 32), got {window}"
        if isinstance(overlap, int) and overlap < 0:
            return f"overlap must be 0 or more frames, got {overlap}"
        if isinstance(window, int) and isinstance(overlap, int) and overlap >= window:
            return f"overlap ({overlap}) must be smaller than window ({window})"
        return True

    @classmethod
    def execute(cls, animate_net, steps, scheduler, karras, seed, text_guidance, audio_guidance, window, overlap,
                frames=0, structure=None, denoise=1.0) -> io.NodeOutput:
        from ..models.sampling.sampler import SamplingOptions, context_windows

        patched = animate_net.patched()
        pipe = animate_net.pipeline
        num_frames = frames or patched.num_frames
        if not num_frames:
            raise ValueError("no frame count: patch in audio_embeds, or set 'frames'")
        maps = None
        if structure is not None:
            maps = torch.nn.functional.interpolate(structure.reshape(-1, 1, *structure.shape[-2:]).float(),
                                                   size=(pipe.size, pipe.size), mode="bilinear", align_corners=False)
            if maps.shape[0] not in (1, num_frames):
                raise ValueError(f"structure has {maps.shape[0]} masks; give 1 or one per frame ({num_frames})")
        options = SamplingOptions(num_frames=num_frames, steps=steps, scheduler=scheduler, karras=karras, seed=seed,
                                  text_guidance=text_guidance, audio_guidance=audio_guidance, window=window,
                                  overlap=overlap, structure=maps, denoise=denoise)
        runs = (steps - options.skipped_steps()) * len(context_windows(num_frames, window, overlap))
        options.callback = Progress(runs, pipe, cls.hidden.unique_id, num_frames, patched.fps)
        with sampling_memory(pipe, patched.conditioning, options):
            latents = pipe.sample(patched.conditioning, options)
        # in place: the sampler's latents are ours, and a copy would double the memory of a long video
        return io.NodeOutput({"samples": latents.div_(pipe.latent_scale), "portraittalk_fps": patched.fps})


class Decode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PortraitTalkDecode", display_name="Decode Frames (PortraitTalk)",
            category="PortraitTalk/sampling",
            description="Decodes the sampled video in chunks (no out-of-memory at the end of long clips) and "
                        "returns IMAGE frames, the fps and the audio trimmed to the video, ready for CreateVideo "
                        "or VideoHelperSuite.",
            inputs=[
                io.Latent.Input("latent", tooltip="From 'Sample AnimateNet Frames'."),
                io_types.AnimateNet.Input("animate_net", optional=True,
                                          tooltip="Decode with the model's own codec (demo model)."),
                io.Vae.Input("vae", optional=True, tooltip="Decode with a ComfyUI VAE (full-size models)."),
                io.Audio.Input("audio", optional=True, tooltip="The input audio, to trim to the video's length."),
                io.Int.Input("chunk", default=8, min=1, max=256, tooltip="Frames decoded at a time."),
            ],
            outputs=[io.Image.Output("images"), io.Float.Output("fps"),
                     io.Audio.Output("trimmed_audio", display_name="audio")],
        )

    @classmethod
    def execute(cls, latent, animate_net=None, vae=None, audio=None, chunk=8) -> io.NodeOutput:
        import comfy.utils

        from ..media import mixed_down_soundtrack
        from ..models.pipeline import trim_audio

        samples = latent["samples"]
        fps = float(latent.get("portraittalk_fps", 25.0))
        bar = comfy.utils.ProgressBar(samples.shape[0])
        if vae is not None:
            images = torch.cat([vae.decode(samples[i: i + chunk]) for i in range(0, samples.shape[0], chunk)
                                if not bar.update_absolute(min(i + chunk, samples.shape[0]))])
        elif animate_net is not None:
            pipe = animate_net.pipeline
            load(pipe, "codec")
            images = pipe.decode(samples, chunk=chunk, scale=pipe.latent_scale,
                                 on_chunk=lambda done, total: bar.update_absolute(done, total))
        else:
            raise ValueError("connect animate_net (its own codec) or a vae to decode with")
        trimmed = None
        if audio is not None:
            waveform, rate = mixed_down_soundtrack(audio)
            channels = [torch.from_numpy(trim_audio(waveform[c], rate, images.shape[0], fps))
                        for c in range(waveform.shape[0])]
            trimmed = {"waveform": torch.stack(channels)[None], "sample_rate": rate}
        return io.NodeOutput(images, fps, trimmed)


NODES = [Sampler, Decode]
