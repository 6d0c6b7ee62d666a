"""Two-stage training on HF Accelerate: one process, or N processes (DDP) started by `torchrun` or
`accelerate launch`, run the same script. Mixed precision, gradient checkpointing, EMA, resumable
checkpoints, JSONL logs and a progress bar. Configs are JSON files (see `training/configs/`); the output is a
PortraitTalk `.safetensors` model that the loaders and nodes accept.

    portraittalk train --config training/configs/demo.json --out runs/demo
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m comfyui_portraittalk.training train --config tiny_smoke --out runs/t

A stage's `rows` is the batch of one process: the global batch is `rows × processes`. Every process draws
the same global batch and takes its own rows of it (training/data.py), so a run's data and noise do not
depend on the number of processes. A checkpoint is written to a temporary folder and renamed when every
process has written its part, so a run killed at any moment resumes from its last complete checkpoint.
"""

from __future__ import annotations

import json
import shutil
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
    from .synthtalk.writer import write_dataset

    data = dict(config.get("data") or {})
    if not data:
        raise ValueError("no --data and no 'data' section to make SynthTalk clips from")
    target = out_dir / "synthtalk"
    log(f"making {data['clips']} SynthTalk clips in {target}")
    write_dataset(target, data["clips"], data["seconds"], size=data.get("size", 64), seed=data.get("seed", 0),
                  tts_fraction=data.get("tts_fraction", 0.0), workers=data.get("workers", 1))
    return target


def starting_model(config: dict, work_dir: Path, sources: dict[str, str] | None, log):
    """(StartingModel, model config, source paths): a full-size recipe from the user's files, a model file to
    fine-tune (`init_model`), or a fresh build of the config's family."""
    from ..models.files.components import build_components, default_audio_encoder, load_components
    from ..models.config import load_config
    from .sources import StartingModel, build_starting_model, resolve

    overrides = config.get("model_overrides")
    if config.get("init"):
        paths = resolve(config, sources)
        starting = build_starting_model(config, load_config(config["model"], overrides), paths, work_dir, log)
        return starting, starting.components.config, paths
    if config.get("init_model"):
        from ..models.files.weights import read_model
        from ..models.networks.structure import widen_input

        state, model_config = read_model(config["init_model"])
        # overrides of the file's config, e.g. the sampling defaults the exported model will carry, or a
        # structure encoder that now reads the reference: its new input channels start at zero
        model_config = load_config(model_config, overrides)
        state = widen_input(state, "animate_net.structure.", model_config["structure"]["in_channels"])
        components = load_components(model_config, state, config["init_model"])
        components.to(dtype=torch.float32)
    else:
        model_config = load_config(config["model"], overrides)
        components = build_components(model_config)
    return StartingModel(components, default_audio_encoder(model_config),
                         exported_parts=tuple(components.modules())), model_config, {}


def _checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a partial one is named `.partial-…` and is not listed)."""
    found = [p for p in (out_dir / "checkpoints").glob("stage*-step*") if (p / "progress.json").is_file()]
    return sorted(found, key=lambda p: (int(p.name[5]), int(p.name.split("step")[1])))


def train(config: dict, out_dir: Path, data_dir: Path | None = None, *, resume: bool = True,
          max_steps: dict | None = None, log_every: int = 25, checkpoint_every: int = 500,
          sources: dict[str, str] | None = None, precomputed_dir: Path | None = None) -> Path:
    """Run the configured stages; returns the path of the exported model."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from .data import ClipStore, PairSampler, VideoSampler

    if config.get("init"):  # a full-size recipe: its files are checked before anything starts
        from .sources import resolve

        paths = resolve(config, sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    # every trainable parameter is in every step's graph (objective.py), so DDP need not search for unused
    # ones; "find_unused_parameters": true is there to measure that claim, or for recipes that break it
    ddp = DistributedDataParallelKwargs(find_unused_parameters=bool(config.get("find_unused_parameters", False)))
    # the schedule steps once per optimizer step: accelerate would step it once per process, for data
    # loaders that shard a fixed number of batches, but here a step is one global batch whatever the count
    # a config's "precision" wins; without one, the launcher's (accelerate launch --mixed_precision, its YAML)
    accelerator = Accelerator(mixed_precision=config.get("precision"), kwargs_handlers=[ddp],
                              gradient_accumulation_steps=config.get("gradient_accumulation", 1),
                              step_scheduler_with_optimizer=False)
    rank, world = accelerator.process_index, accelerator.num_processes
    # --- FSDP: not supported by this loop yet (training/accelerate/README.md says why); stop before any work
    if accelerator.distributed_type.value == "FSDP":
        raise SystemExit("FSDP is not supported by this training loop yet (see training/accelerate/README.md): "
                         "use multi_gpu.yaml (DDP) or deepspeed_zero2.yaml")
    # ---
    log_file = out_dir / "train_log.jsonl"

    def log(message: str) -> None:
        if accelerator.is_main_process:
            print(f"[train] {message}", flush=True)

    seed = int(config.get("seed", 0))
    set_seed(seed)
    with accelerator.main_process_first():  # process 0 converts a recipe's files once (Hallo's net.pth); the others read them
        starting, model_config, paths = starting_model(config, out_dir, sources, log)
    components = starting.components
    objective = PortraitTalkObjective(components, LossConfig(**{k: v for k, v in config.get("loss", {}).items()
                                                                if k in {f.name for f in fields(LossConfig)}}))
    if config.get("gradient_checkpointing"):
        components.identity_net.unet.enable_gradient_checkpointing()
        components.animate_net.unet.enable_gradient_checkpointing()
    data_dir = ensure_data(config, data_dir, out_dir, log) if accelerator.is_main_process else data_dir or out_dir / "synthtalk"
    accelerator.wait_for_everyone()
    precomputed = None
    if precomputed_dir is not None:  # shards of `portraittalk precompute`: no encoder runs in the steps
        from .precompute import PrecomputedClips, fingerprint

        precomputed = PrecomputedClips(precomputed_dir, fingerprint(model_config, paths))
    store = ClipStore(data_dir, starting.audio_encoder, int(model_config["audio"]["window_radius"]),
                      audio_at_frame_rate=bool(model_config["audio"].get("interpolate_before_encoder")),
                      identity_embedder=starting.identity_embedder, precomputed=precomputed)
    log(f"{len(store)} clips from {data_dir}; {sum(p.numel() for p in objective.parameters()) / 1e6:.2f}M parameters; "
        f"{world} process(es), {accelerator.distributed_type}")

    done = {}
    ckpts = _checkpoints(out_dir) if resume else []
    if ckpts:
        done = json.loads((ckpts[-1] / "progress.json").read_text())
        log(f"resuming from {ckpts[-1].name}")
    generator = torch.Generator().manual_seed(seed)  # the same on every rank: each takes its rows of every draw
    for stage_config in config["stages"]:
        stage = int(stage_config["stage"])
        steps = int((max_steps or {}).get(stage, stage_config["steps"]))
        if done.get(f"stage{stage}") == "complete":
            _load_weights(objective, ckpts[-1] / "model.safetensors")  # the stage's averaged weights
            continue
        objective.set_stage(stage, stage_config.get("train", "stage"))
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
                              seed=seed * 1000 + stage * 17, rank=rank, world=world)
        start = 0
        if ckpts and done.get("stage") == stage:
            accelerator.load_state(str(ckpts[-1]))
            _load_ema(ema, ckpts[-1])
            start = int(done["step"])
            _load_rng(ckpts[-1], rank, world, sampler, generator)
        log(f"stage {stage}: {steps} steps of {sampler.rows} rows × {world} process(es) = {sampler.rows * world} rows")
        bar = tqdm(range(start, steps), initial=start, total=steps, desc=f"stage {stage}",
                   disable=not accelerator.is_main_process)
        _reset_peak_memory(accelerator)
        began, running = time.time(), []
        for step in bar:
            batch = _to(sampler(), accelerator.device)
            with accelerator.accumulate(model):
                parts = model(batch, generator)
                accelerator.backward(parts["loss"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, stage_config.get("max_grad_norm", 1.0))
                optimizer.step()
                if accelerator.sync_gradients:
                    lr_schedule.step()
                optimizer.zero_grad(set_to_none=True)
            if accelerator.sync_gradients:
                ema.step(params)
            running.append({k: float(v.detach()) for k, v in parts.items()})
            if (step + 1) % log_every == 0 or step + 1 == steps:
                mean = {k: sum(r[k] for r in running) / len(running) for k in running[0]}
                if world > 1:  # the mean over ranks: the loss of the global batch
                    reduced = accelerator.reduce(torch.tensor(list(mean.values()), dtype=torch.float64,
                                                              device=accelerator.device), "mean")
                    mean = dict(zip(mean, reduced.tolist()))
                record = {"stage": stage, "step": step + 1, "seconds": round(time.time() - began, 3),
                          "lr": lr_schedule.get_last_lr()[0], **{k: round(v, 7) for k, v in mean.items()}}
                record.update(_peak_memory(accelerator))  # a collective: every rank builds the record
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
        from ..models.files.components import save_components

        save_components(_exported(components, starting, config), model_path,
                        extra={"trained_with": json.dumps(config, sort_keys=True)},
                        dtype=getattr(torch, config.get("export_dtype", "float32")))
        log(f"wrote {model_path}")
    accelerator.wait_for_everyone()
    return model_path


def _to(batch, device):
    for name in ("references", "targets", "audio", "face", "lip", "texts_dropped", "identity_embeds",
                 "reference_latents", "target_latents"):
        if getattr(batch, name) is not None:
            setattr(batch, name, getattr(batch, name).to(device))
    return batch


def _exported(components, starting, config: dict):
    """What the model file holds: every part for a self-contained model (tiny) or a fine-tuned file; for a
    full-size recipe only the parts users do not already have (CLIP, the VAE and wav2vec2 stay in their files)."""
    from dataclasses import replace

    from ..models.config import merge

    keep = set(starting.exported_parts)
    dropped = {name: None for name in components.modules() if name not in keep}
    model_config = components.config
    if any(stage.get("train") == "text_stream" for stage in config["stages"]):
        model_config = merge(model_config, {"text": {"stream_weights": "trained (text_stream)"}})
    return replace(components, config=model_config, **dropped)


def _reset_peak_memory(accelerator) -> None:
    """Start this stage's peak-memory figures from the current use (`portraittalk bench train` reads them)."""
    from ..bench.benchmark import reset_peak_rss

    reset_peak_rss()
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)


def _peak_memory(accelerator) -> dict:
    """This stage's peak so far, the max over ranks: process RSS high-water mark (Linux resets it per stage;
    elsewhere it is the process's lifetime peak) and, on a GPU, CUDA's peak allocation. In MiB."""
    from ..bench.benchmark import peak_rss_bytes

    peaks = [peak_rss_bytes() / 2**20]
    if accelerator.device.type == "cuda":
        peaks.append(torch.cuda.max_memory_allocated(accelerator.device) / 2**20)
    if accelerator.num_processes > 1:
        peaks = accelerator.reduce(torch.tensor(peaks, dtype=torch.float64, device=accelerator.device), "max").tolist()
    return dict(zip(("peak_rss_mb", "peak_cuda_mb"), (round(v, 1) for v in peaks)))


def _checkpoint(accelerator, out_dir: Path, stage: int, step: int, ema, sampler, generator, complete: bool) -> None:
    """accelerate's state (model, optimizer, schedule, each rank's RNGs) plus the EMA, and each rank's data
    sampler and noise generator (`rng_rank{r}.safetensors`), so a resumed run continues the same sequence.

    Written to `checkpoints/.partial-…` and renamed when every rank has written its part (and
    `progress.json`, last): a folder named `stage*-step*` is always complete."""
    from safetensors.torch import save_file

    name = f"stage{stage}-step{step:06d}"
    final = out_dir / "checkpoints" / name
    partial = out_dir / "checkpoints" / f".partial-{name}"
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left by a run killed while writing it
    accelerator.wait_for_everyone()
    partial.mkdir(parents=True, exist_ok=True)
    accelerator.save_state(str(partial))
    rank, world = accelerator.process_index, accelerator.num_processes
    save_file({"generator": generator.get_state()}, str(partial / f"rng_rank{rank}.safetensors"),
              metadata={"sampler_state": json.dumps(sampler.rng.bit_generator.state), "rank": str(rank),
                        "world": str(world)})
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_file({str(i): p.detach().cpu().contiguous() for i, p in enumerate(ema.shadow_params)},
                  str(partial / "ema_shadow.safetensors"), metadata={"optimization_step": str(ema.optimization_step)})
        progress = {"stage": stage, "step": step, "world": world,
                    **{f"stage{s}": "complete" for s in range(1, stage)},
                    f"stage{stage}": "complete" if complete else "running"}
        (partial / "progress.json").write_text(json.dumps(progress))
        if final.exists():  # the same step written again (a resumed run that repeats it)
            shutil.rmtree(final)
        partial.rename(final)
    accelerator.wait_for_everyone()


def _load_rng(path: Path, rank: int, world: int, sampler, generator) -> None:
    """This rank's sampler and noise-generator state (safetensors and JSON: nothing is unpickled)."""
    from safetensors import safe_open

    file = path / f"rng_rank{rank}.safetensors"
    legacy = json.loads((path / "progress.json").read_text()).get("sampler_state")
    if not file.is_file() and legacy is not None and world == 1 and (path / "generator.pt").is_file():
        # a 1-process checkpoint of the earlier format: the state in progress.json and a tensor file
        generator.set_state(torch.load(path / "generator.pt", weights_only=True))
        sampler.rng.bit_generator.state = legacy
        return
    if not file.is_file():
        saved = len(list(path.glob("rng_rank*.safetensors")))
        raise FileNotFoundError(f"{file}: no sampler state for rank {rank}; {path.name} was written by {saved} "
                                f"process(es), this run has {world}: resume with {saved}")
    with safe_open(str(file), "pt") as f:
        if int(f.metadata()["rank"]) != rank:
            raise ValueError(f"{file} holds the state of rank {f.metadata()['rank']}, not {rank}")
        generator.set_state(f.get_tensor("generator"))
        sampler.rng.bit_generator.state = json.loads(f.metadata()["sampler_state"])


def _load_ema(ema, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path / "ema_shadow.safetensors"), "pt") as f:
        for i, param in enumerate(ema.shadow_params):
            param.data.copy_(f.get_tensor(str(i)))
        ema.optimization_step = int(f.metadata()["optimization_step"])


def _load_weights(objective, path: Path) -> None:
    from ..models.files.weights import read_safetensors

    state, _ = read_safetensors(path)
    objective.load_state_dict(state, strict=False)


if __name__ == "__main__":  # `python -m comfyui_portraittalk.training.train`: the same as `portraittalk train`
    from ..cli.train import main

    raise SystemExit(main())
