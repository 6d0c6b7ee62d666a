"""Two-stage training on HF Accelerate: one CPU, one GPU, or `accelerate launch` on many GPUs and nodes
run the same script. Mixed precision, gradient checkpointing, EMA, resumable checkpoints, JSONL logs and a
progress bar. Configs are JSON files (see `training/configs/`); the output is a PortraitTalk
`.safetensors` model that the loaders and nodes accept.

    portraittalk train --config training/configs/demo.json --out runs/demo
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

import torch

from .objective import LossConfig, PortraitTalkObjective

CONFIG_DIR = Path(__file__).parent / "configs"


def load_train_config(path) -> dict:
    path = Path(path)
    if not path.is_file() and (CONFIG_DIR / f"{path}.json").is_file():
        path = CONFIG_DIR / f"{path}.json"  # a shipped config by name, e.g. "demo"
    config = json.loads(path.read_text())
    for key in ("model", "stages"):
        if key not in config:
            raise ValueError(f"{path}: training config lacks '{key}'")
    return config


def ensure_data(config: dict, data_dir: Path | None, out_dir: Path, log) -> Path:
    """The data set to train on: the one given, or SynthTalk clips made from the config's `data` section."""
    if data_dir is not None:
        return data_dir
    from . import synthtalk

    data = dict(config.get("data") or {})
    if not data:
        raise ValueError("no --data and no 'data' section to make SynthTalk clips from")
    target = out_dir / "synthtalk"
    log(f"making {data['clips']} SynthTalk clips in {target}")
    synthtalk.write_dataset(target, data["clips"], data["seconds"], size=data.get("size", 64), seed=data.get("seed", 0),
                            tts_fraction=data.get("tts_fraction", 0.0), workers=data.get("workers", 1))
    return target


def _checkpoints(out_dir: Path) -> list[Path]:
    return sorted((out_dir / "checkpoints").glob("stage*-step*"), key=lambda p: (int(p.name[5]), int(p.name.split("step")[1])))


def train(config: dict, out_dir: Path, data_dir: Path | None = None, *, resume: bool = True,
          max_steps: dict | None = None, log_every: int = 25, checkpoint_every: int = 500) -> Path:
    """Run the configured stages; returns the path of the exported model."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from ..models.components import build_components, default_audio_encoder
    from ..models.config import load_config
    from .data import ClipStore, PairSampler, VideoSampler

    out_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(mixed_precision=config.get("precision", "no"),
                              gradient_accumulation_steps=config.get("gradient_accumulation", 1))
    log_file = out_dir / "train_log.jsonl"

    def log(message: str) -> None:
        if accelerator.is_main_process:
            print(f"[train] {message}", flush=True)

    seed = int(config.get("seed", 0))
    set_seed(seed)
    if config.get("init_model"):  # fine-tune an existing model file
        from ..models.components import load_components
        from ..models.weights import read_model

        state, model_config = read_model(config["init_model"])
        # overrides of the file's config, e.g. the sampling defaults the exported model will carry
        model_config = load_config(model_config, config.get("model_overrides"))
        components = load_components(model_config, state, config["init_model"])
        components.to(dtype=torch.float32)
    else:
        model_config = load_config(config["model"], config.get("model_overrides"))
        components = build_components(model_config)
    objective = PortraitTalkObjective(components, LossConfig(**{k: v for k, v in config.get("loss", {}).items()
                                                                if k in {f.name for f in fields(LossConfig)}}))
    if config.get("gradient_checkpointing"):
        components.identity_net.unet.enable_gradient_checkpointing()
        components.animate_net.unet.enable_gradient_checkpointing()
    data_dir = ensure_data(config, data_dir, out_dir, log) if accelerator.is_main_process else data_dir or out_dir / "synthtalk"
    accelerator.wait_for_everyone()
    store = ClipStore(data_dir, default_audio_encoder(model_config), int(model_config["audio"]["window_radius"]))
    log(f"{len(store)} clips from {data_dir}; {sum(p.numel() for p in objective.parameters()) / 1e6:.2f}M parameters")

    done = {}
    ckpts = _checkpoints(out_dir) if resume else []
    if ckpts:
        done = json.loads((ckpts[-1] / "progress.json").read_text())
        log(f"resuming from {ckpts[-1].name}")
    generator = torch.Generator().manual_seed(seed + accelerator.process_index)
    for stage_config in config["stages"]:
        stage = int(stage_config["stage"])
        steps = int((max_steps or {}).get(stage, stage_config["steps"]))
        if done.get(f"stage{stage}") == "complete":
            _load_weights(objective, ckpts[-1] / "model.safetensors")  # the stage's averaged weights
            continue
        objective.set_stage(stage)
        params = objective.trainable_parameters()
        optimizer = torch.optim.AdamW(params, lr=stage_config["lr"], weight_decay=stage_config.get("weight_decay", 0.01))
        lr_schedule = get_scheduler(stage_config.get("lr_schedule", "cosine"), optimizer,
                                    num_warmup_steps=stage_config.get("warmup", 100), num_training_steps=steps)
        ema = EMAModel(params, decay=config.get("ema_decay", 0.999), use_ema_warmup=True)
        model, optimizer, lr_schedule = accelerator.prepare(objective, optimizer, lr_schedule)
        sampler_cls = PairSampler if stage == 1 else VideoSampler
        sampler = sampler_cls(store, stage_config["rows"], stage_config["frames"],
                              edit_probability=stage_config.get("edit_probability", 0.0),
                              text_dropout=config.get("text_dropout", 0.1),
                              seed=seed * 1000 + stage * 17 + accelerator.process_index)
        start = 0
        if ckpts and done.get("stage") == stage:
            accelerator.load_state(str(ckpts[-1]))
            _load_ema(ema, ckpts[-1])
            start = int(done["step"])
            sampler.rng.bit_generator.state = done["sampler_state"]
            generator.set_state(torch.load(ckpts[-1] / "generator.pt", weights_only=True))
        bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"stage {stage}",
                   disable=not accelerator.is_main_process)
        began, running = time.time(), []
        for step in bar:
            batch = _to(sampler(), accelerator.device)
            with accelerator.accumulate(model):
                parts = model(batch, generator)
                accelerator.backward(parts["loss"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, stage_config.get("max_grad_norm", 1.0))
                optimizer.step()
                lr_schedule.step()
                optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                ema.step(params)
            running.append({k: float(v.detach()) for k, v in parts.items()})
            if (step + 1) % log_every == 0 or step + 1 == steps:
                mean = {k: sum(r[k] for r in running) / len(running) for k in running[0]}
                record = {"stage": stage, "step": step + 1, "seconds": round(time.time() - began, 1),
                          "lr": lr_schedule.get_last_lr()[0], **{k: round(v, 5) for k, v in mean.items()}}
                if accelerator.is_main_process:
                    with open(log_file, "a") as f:
                        f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{mean['loss']:.4f}")
                running = []
            final = step + 1 == steps
            if final:
                ema.copy_to(params)  # the next stage (and the export) starts from the averaged weights
            if (step + 1) % checkpoint_every == 0 or final:
                _checkpoint(accelerator, out_dir, stage, step + 1, ema, sampler, generator, complete=final)
        objective = accelerator.unwrap_model(model)
        accelerator.free_memory()

    model_path = out_dir / "portraittalk.safetensors"
    if accelerator.is_main_process:
        from ..models.components import save_components

        save_components(components, model_path, extra={"trained_with": json.dumps(config, sort_keys=True)},
                        dtype=getattr(torch, config.get("export_dtype", "float32")))
        log(f"wrote {model_path}")
    accelerator.wait_for_everyone()
    return model_path


def _to(batch, device):
    for name in ("references", "targets", "audio", "face", "lip", "texts_dropped"):
        setattr(batch, name, getattr(batch, name).to(device))
    return batch


def _checkpoint(accelerator, out_dir: Path, stage: int, step: int, ema, sampler, generator, complete: bool) -> None:
    """accelerate's state (model, optimizer, schedule, RNGs) plus the EMA, the data sampler and the noise
    generator, so a resumed run continues the same sequence."""
    from safetensors.torch import save_file

    path = out_dir / "checkpoints" / f"stage{stage}-step{step:06d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        save_file({str(i): p.detach().cpu().contiguous() for i, p in enumerate(ema.shadow_params)},
                  str(path / "ema_shadow.safetensors"), metadata={"optimization_step": str(ema.optimization_step)})
        torch.save(generator.get_state(), path / "generator.pt")
        progress = {"stage": stage, "step": step, "sampler_state": sampler.rng.bit_generator.state,
                    **{f"stage{s}": "complete" for s in range(1, stage)},
                    f"stage{stage}": "complete" if complete else "running"}
        (path / "progress.json").write_text(json.dumps(progress))


def _load_ema(ema, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path / "ema_shadow.safetensors"), "pt") as f:
        for i, param in enumerate(ema.shadow_params):
            param.data.copy_(f.get_tensor(str(i)))
        ema.optimization_step = int(f.metadata()["optimization_step"])


def _load_weights(objective, path: Path) -> None:
    from ..models.weights import read_safetensors

    state, _ = read_safetensors(path)
    objective.load_state_dict(state, strict=False)


def train_main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="portraittalk train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo", help="training config JSON (or a shipped name: demo, tiny_smoke)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (checkpoints, logs, the model)")
    parser.add_argument("--data", type=Path, default=None,
                        help="clip data set (portraittalk synth / preprocess); default: make SynthTalk clips")
    parser.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    parser.add_argument("--steps", default=None, help="override steps per stage, e.g. '1:200,2:50'")
    args = parser.parse_args(argv)
    config = load_train_config(args.config)
    steps = {int(k): int(v) for k, v in (x.split(":") for x in args.steps.split(","))} if args.steps else None
    path = train(config, args.out, args.data, resume=not args.no_resume, max_steps=steps)
    print(path)
    return 0


