"""Multi-process training on the CPU (torchrun, Accelerate's MULTI_CPU over gloo), on tiny recipes.

- A 2-process run finishes, and its loss curve equals a 1-process run with the same global batch.
  Both runs draw the same global batch (samples, noise, timesteps, dropout), each rank computes its half, and
  the loss is a mean of per-row terms, so the 2-process gradient (DDP's mean over ranks) is the 1-process one;
  what is left is float reduction order (convolutions over 2 rows instead of 4, gloo's sum of two halves),
  ~1e-7 relative per step. Hence rel 1e-5 on every logged step of both stages (the log rounds to 7 decimals).
- A 2-process run killed with SIGKILL in the middle of stage 1, then resumed, exports the same weights as
  the same run uninterrupted (≤ 1e-6).
- Every trainable parameter gets a gradient on every step, with every stream dropped or none, which is what
  lets DDP run without `find_unused_parameters`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from comfyui_portraittalk.training.train import load_train_config

pytestmark = pytest.mark.slow

STEPS = "1:10,2:2"  # 10 stage-1 steps (killed after the checkpoint of step 4), 2 stage-2 steps
TIMEOUT = 240


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true", PYTHONUNBUFFERED="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _command(processes: int, config: Path | str, out: Path, data: Path) -> list[str]:
    train = ["-m", "comfyui_portraittalk.training", "train", "--config", str(config), "--out", str(out),
             "--data", str(data), "--steps", STEPS, "--log-every", "1", "--checkpoint-every", "2"]
    if processes == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *train]


def _run(processes: int, config, out: Path, data: Path) -> str:
    result = subprocess.run(_command(processes, config, out, data), env=_env(), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _log(out: Path) -> dict:
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return {(r["stage"], r["step"]): r for r in records}


def _descendants(pid: int) -> list[int]:
    """Process ids under `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_run(proc: subprocess.Popen) -> None:
    """SIGKILL a torchrun launch: torchrun's process group and every worker (torchrun starts each worker in
    a session of its own, so killing torchrun's group alone leaves them running)."""
    workers = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in workers:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)
    deadline = time.time() + 30
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers):
        assert time.time() < deadline, "a worker outlived SIGKILL"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return next((line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith("State:")), "").lower()
    except OSError:
        return "zombie"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from comfyui_portraittalk.training import synthtalk

    config = load_train_config("tiny_smoke")["data"]
    root = tmp_path_factory.mktemp("synthtalk")
    synthtalk.write_dataset(root, config["clips"], config["seconds"], size=config["size"], seed=config["seed"])
    return root


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, data):
    """The uninterrupted 2-process run: tiny_smoke, 2 rows per rank."""
    out = tmp_path_factory.mktemp("two")
    output = _run(2, "tiny_smoke", out, data)
    return out, output


def test_two_processes_match_one_with_the_same_global_batch(two_processes, data, tmp_path):
    out2, output = two_processes
    assert "2 process(es), DistributedType.MULTI_CPU" in output
    assert "stage 1: 10 steps of 2 rows × 2 process(es) = 4 rows" in output
    config = load_train_config("tiny_smoke")
    for stage in config["stages"]:
        stage["rows"] *= 2  # one process, the same global batch
    path = tmp_path / "one.json"
    path.write_text(json.dumps(config))
    out1 = tmp_path / "one"
    output1 = _run(1, path, out1, data)
    assert "1 process(es)" in output1 and "= 4 rows" in output1
    two, one = _log(out2), _log(out1)
    assert sorted(two) == sorted(one) == [(1, s) for s in range(1, 11)] + [(2, 1), (2, 2)]
    for key in one:
        for part in ("loss", "denoise", "mask_reconstruction"):
            assert two[key][part] == pytest.approx(one[key][part], rel=1e-5, abs=1e-6), (key, part)
    losses = [one[k]["loss"] for k in sorted(one)]
    assert len(set(losses)) == len(losses)  # a real curve, not a constant
    # the same weights, up to float reduction order
    from safetensors.torch import load_file

    a, b = load_file(out2 / "portraittalk.safetensors"), load_file(out1 / "portraittalk.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-4, worst


def test_a_killed_two_process_run_resumes_to_the_same_weights(two_processes, data, tmp_path):
    from safetensors.torch import load_file

    reference, _ = two_processes
    out = tmp_path / "killed"
    proc = subprocess.Popen(_command(2, "tiny_smoke", out, data), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    target = out / "checkpoints" / "stage1-step000004"
    deadline = time.time() + TIMEOUT
    try:
        while not (target / "progress.json").is_file():
            assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before its step-4 checkpoint"
            assert time.time() < deadline, "no step-4 checkpoint"
            time.sleep(0.05)
    finally:
        _kill_run(proc)
    written = sorted(p.name for p in (out / "checkpoints").glob("stage*"))
    assert not (out / "portraittalk.safetensors").exists()
    assert written and all(name.startswith("stage1-") for name in written), written
    assert "stage1-step000010" not in written  # killed in the middle of stage 1
    for ckpt in (out / "checkpoints").glob("stage1-*"):  # each rank's own sampler and generator
        assert {p.name for p in ckpt.glob("rng_rank*.safetensors")} == {"rng_rank0.safetensors", "rng_rank1.safetensors"}

    output = _run(2, "tiny_smoke", out, data)
    assert f"resuming from {written[-1]}" in output, [line for line in output.splitlines() if "[train]" in line]
    resumed, uninterrupted = load_file(out / "portraittalk.safetensors"), load_file(reference / "portraittalk.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for key in uninterrupted:
        assert torch.allclose(resumed[key], uninterrupted[key], rtol=0, atol=1e-6), key
    # the resumed steps repeat the uninterrupted run's losses
    again, first = _log(out), _log(reference)
    for key, record in again.items():
        assert record["loss"] == pytest.approx(first[key]["loss"], rel=1e-5), key


def test_each_rank_reads_its_own_rows_of_one_global_batch(data):
    """Two ranks of 2 rows see exactly the rows that one process of 4 rows sees, split in two."""
    from comfyui_portraittalk.models.files.components import default_audio_encoder
    from comfyui_portraittalk.models.config import load_config
    from comfyui_portraittalk.training.data import ClipStore, PairSampler, VideoSampler

    model = load_config("tiny")
    store = ClipStore(data, default_audio_encoder(model), int(model["audio"]["window_radius"]))
    for cls in (PairSampler, VideoSampler):
        kw = dict(edit_probability=0.5, text_dropout=0.3, seed=11)
        whole = cls(store, 4, 3, **kw)
        ranks = [cls(store, 2, 3, rank=r, world=2, **kw) for r in (0, 1)]
        for _ in range(3):
            full, parts = whole(), [s() for s in ranks]
            assert [p.row_offset for p in parts] == [0, 2] and {p.global_rows for p in parts} == {4}
            for name in ("references", "targets", "audio", "face", "lip", "texts_dropped"):
                assert torch.equal(torch.cat([getattr(p, name) for p in parts]), getattr(full, name)), name
            assert parts[0].captions + parts[1].captions == full.captions
            assert not torch.equal(parts[0].targets, parts[1].targets)  # different data on each rank
        assert ranks[0].rng.bit_generator.state == whole.rng.bit_generator.state


@pytest.mark.parametrize("stage,overrides", [(1, None), (2, None),
                                             (1, {"structure": {"in_channels": 4, "reference": True}})],
                         ids=["stage1", "stage2", "stage1-structure-reads-reference"])
def test_every_trainable_parameter_gets_a_gradient_whatever_is_dropped(data, stage, overrides):
    from comfyui_portraittalk.models.files.components import build_components, default_audio_encoder
    from comfyui_portraittalk.models.config import load_config
    from comfyui_portraittalk.training.data import ClipStore, PairSampler, VideoSampler
    from comfyui_portraittalk.training.objective import LossConfig, PortraitTalkObjective

    torch.manual_seed(0)
    model = load_config("tiny", overrides)
    components = build_components(model)
    store = ClipStore(data, default_audio_encoder(model), int(model["audio"]["window_radius"]))
    sampler_cls = PairSampler if stage == 1 else VideoSampler
    for drop in (0.0, 1.0):
        loss = LossConfig(audio_dropout=drop, identity_dropout=drop, structure_dropout=drop)
        objective = PortraitTalkObjective(components, loss, stage)
        trainable = dict((n, p) for n, p in objective.named_parameters() if p.requires_grad)
        assert trainable
        objective.zero_grad(set_to_none=True)
        batch = sampler_cls(store, 2, 3, edit_probability=0.5, text_dropout=drop, seed=0)()
        objective(batch, torch.Generator().manual_seed(0))["loss"].backward()
        missing = [n for n, p in trainable.items() if p.grad is None]
        assert not missing, (drop, missing[:5])
        assert all(torch.isfinite(p.grad).all() for p in trainable.values())
    if stage == 1:  # the frozen dead block: IdentityNet's last transformer after its self-attention input
        dead = objective.dead_parameter_names()
        assert dead and all(".up_blocks." in n and n.startswith("identity_net.") for n in dead)
        assert not any(".norm1." in n for n in dead)


def test_a_dropped_stream_is_the_same_forward_as_no_stream(data):
    """Dropping identity and structure with masks gives the prediction of a forward without them."""
    from comfyui_portraittalk.models.networks.attention import AttentionContext, IdentityBank, StreamScales
    from comfyui_portraittalk.models.files.components import build_components
    from comfyui_portraittalk.models.config import load_config
    from conftest import wake_zero_branches

    torch.manual_seed(0)
    components = build_components(load_config("tiny"))
    wake_zero_branches(components)
    net = components.animate_net
    rows, frames, size = 2, 2, 64
    t = torch.tensor([10, 500])
    per_frame = torch.arange(rows).repeat_interleave(frames)
    face = (torch.rand(rows, frames, 1, size, size) > 0.5).float()
    with torch.no_grad():
        text = components.text_encoder(["a face with glasses", "a face on a red background"])
        references = torch.rand(rows, 3, size, size)
        ids = components.image_proj(components.image_encoder(references))
        features = components.identity_net.rows(components.codec.encode(references * 2 - 1), text, ids)
        tokens = ids[per_frame]
        latent = components.codec.encode(torch.rand(rows * frames, 3, size, size) * 2 - 1)
        latents = torch.randn(rows, frames, *latent.shape[1:])
        off = AttentionContext(scales=StreamScales(identity=0.0), identity_tokens=tokens, bank=IdentityBank(features),
                               condition_rows=per_frame)
        masked = AttentionContext(identity_tokens=tokens * 0.0, bank=IdentityBank(features),
                                  condition_rows=torch.full_like(per_frame, -1))
        kept = AttentionContext(identity_tokens=tokens, bank=IdentityBank(features), condition_rows=per_frame)
        plain = net(latents, t, text, off, None)
        dropped = net(latents, t, text, masked, face, structure_weight=torch.zeros(rows))
        with_both = net(latents, t, text, kept, face, structure_weight=torch.ones(rows))
    assert (with_both - plain).abs().max() > 1e-3  # the streams do matter when kept
    # equal up to float order (an attention with the bank masked out by -inf vs one without the bank)
    assert torch.allclose(dropped, plain, rtol=1e-5, atol=1e-5), float((dropped - plain).abs().max())


def test_the_training_module_runs_or_says_why():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    bare = subprocess.run([sys.executable, "-m", "comfyui_portraittalk.training"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert bare.returncode == 2 and "usage: python -m comfyui_portraittalk.training" in bare.stderr
    assert "no command given" in bare.stderr
    train = subprocess.run([sys.executable, "-m", "comfyui_portraittalk.training.train"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert train.returncode == 2 and "--out" in train.stderr
    helped = subprocess.run([sys.executable, "-m", "comfyui_portraittalk.training", "train", "--help"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "--checkpoint-every" in helped.stdout


def test_rng_state_files_are_per_rank_and_checked(tmp_path):
    """`_load_rng` restores this rank's file only; a missing or foreign file is an error that says why; a
    1-process checkpoint of the earlier format (generator.pt, sampler state in progress.json) still loads."""
    from types import SimpleNamespace

    from safetensors.torch import save_file

    from comfyui_portraittalk.training.train import _load_rng

    def sampler(seed):
        return SimpleNamespace(rng=np.random.default_rng(seed))

    saved_gen, saved_sampler = torch.Generator().manual_seed(5), sampler(9)
    saved_sampler.rng.random(3)
    ckpt = tmp_path / "stage1-step000004"
    ckpt.mkdir()
    (ckpt / "progress.json").write_text(json.dumps({"stage": 1, "step": 4}))
    save_file({"generator": saved_gen.get_state()}, str(ckpt / "rng_rank1.safetensors"),
              metadata={"sampler_state": json.dumps(saved_sampler.rng.bit_generator.state), "rank": "0", "world": "2"})
    with pytest.raises(FileNotFoundError, match="rank 0.*resume with 1"):
        _load_rng(ckpt, 0, 2, sampler(0), torch.Generator())
    with pytest.raises(ValueError, match="state of rank 0, not 1"):
        _load_rng(ckpt, 1, 2, sampler(0), torch.Generator())
    save_file({"generator": saved_gen.get_state()}, str(ckpt / "rng_rank1.safetensors"),
              metadata={"sampler_state": json.dumps(saved_sampler.rng.bit_generator.state), "rank": "1", "world": "2"})
    gen, restored = torch.Generator(), sampler(0)
    _load_rng(ckpt, 1, 2, restored, gen)
    assert torch.equal(gen.get_state(), saved_gen.get_state())
    assert restored.rng.random() == saved_sampler.rng.random()

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save(saved_gen.get_state(), legacy / "generator.pt")
    (legacy / "progress.json").write_text(json.dumps({"stage": 1, "step": 4,
                                                      "sampler_state": saved_sampler.rng.bit_generator.state}))
    gen, restored = torch.Generator(), sampler(0)
    _load_rng(legacy, 0, 1, restored, gen)
    assert torch.equal(gen.get_state(), saved_gen.get_state())
    assert restored.rng.random() == saved_sampler.rng.random()
