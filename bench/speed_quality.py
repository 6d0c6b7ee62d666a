"""Speed against quality: one model sampled with fewer steps and other schedulers on held-out SynthTalk
clips, each setting timed and scored with ADFD (against the clip's ground truth) and lip sync.

    portraittalk bench curve [--model demo] [--settings ddim:20 ddim:10 dpmpp_2m+karras:8 ...] [--clips 4]

A setting is `scheduler[+karras]:steps`. The table shows what a step-reducing configuration costs in
quality; the figures in docs/performance.md come from this command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

DEFAULT_SETTINGS = ("ddim:20", "ddim:10", "ddim:6", "dpmpp_2m:10", "dpmpp_2m+karras:8", "dpmpp_2m+karras:6",
                    "dpmpp_2m+karras:4", "euler+karras:8")


@dataclass(frozen=True)
class Setting:
    scheduler: str
    steps: int
    karras: bool = False

    @classmethod
    def parse(cls, text: str) -> Setting:
        name, _, steps = text.partition(":")
        scheduler, _, flag = name.partition("+")
        if not steps.isdigit() or int(steps) < 1 or flag not in ("", "karras"):
            raise ValueError(f"setting {text!r}: expected scheduler[+karras]:steps, e.g. dpmpp_2m+karras:8")
        return cls(scheduler, int(steps), flag == "karras")

    @property
    def label(self) -> str:
        return f"{self.scheduler}{'+karras' if self.karras else ''}:{self.steps}"


def held_out_clips(count: int, seconds: float, size: int) -> list:
    """SynthTalk clips of test-split identities (never trained on), neutral look, no prompt."""
    from ..evaluation.synthtalk_protocol import _test_clip

    neutral = {"glasses": False, "hat": False, "smiling": False}
    return [_test_clip(2468, i, seconds, size, neutral) for i in range(count)]


def measure(pipeline, setting: Setting, clips: list, *, seed: int = 0) -> dict:
    """Generate every clip with one setting: the whole generation's time per frame (wall and process CPU;
    sampling dominates), ADFD and its parts against the clip's own frames, and lip sync."""
    from ..training import synthtalk as st
    from ..evaluation.evaluate import evaluate
    from ..evaluation.synthtalk_protocol import lip_sync

    wall, cpu, frames_done, scores = 0.0, 0.0, 0, []
    for clip in clips:
        identity = st.Identity.from_dict(clip.meta["identity"])
        reference = st.render_reference(identity, clip.meta["attributes"], size=pipeline.size)
        started, started_cpu = time.perf_counter(), time.process_time()
        out = pipeline([reference], clip.audio, clip.sample_rate, num_inference_steps=setting.steps,
                       scheduler=setting.scheduler, karras=setting.karras, seed=seed)
        wall += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
        frames = np.clip(out.frames * 255 + 0.5, 0, 255).astype(np.uint8)
        frames_done += len(frames)
        result = evaluate(frames, clip.audio, clip.sample_rate, out.fps, ground_truth=clip.frames,
                          metrics=("adfd",), backend="colour")["metrics"]["adfd"]
        scores.append({"adfd": result["score"], "spatial": result["spatial"], "temporal": result["temporal"],
                       "jitter": result["jitter"], "lip_sync_r": lip_sync(frames, clip.audio, clip.sample_rate)["r"]})
    mean = {k: round(float(np.mean([s[k] for s in scores])), 3) for k in scores[0]}
    return {"setting": setting.label, "scheduler": setting.scheduler, "karras": setting.karras,
            "steps": setting.steps, "seconds_per_frame": round(wall / frames_done, 5),
            "cpu_seconds_per_frame": round(cpu / frames_done, 5), **mean, "per_clip": scores}


def table(rows: list[dict]) -> str:
    base = rows[0]
    head = f"{'setting':<20} {'s/frame':>8} {'speed-up':>8} {'ADFD':>6} {'spatial':>7} {'temporal':>8} " \
           f"{'jitter':>6} {'lip r':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['setting']:<20} {r['seconds_per_frame']:>8.4f} "
                     f"{base['cpu_seconds_per_frame'] / r['cpu_seconds_per_frame']:>7.2f}x {r['adfd']:>6.3f} "
                     f"{r['spatial']:>7.3f} {r['temporal']:>8.3f} {r['jitter']:>6.3f} {r['lip_sync_r']:>6.3f}")
    lines.append("speed-up from process CPU time, against the first setting")
    return "\n".join(lines)
