"""A tiny CLIP trained here on SynthTalk, to measure `portraittalk caption` where the truth is known.

No CLIP is downloaded: `train_caption_clip` renders SynthTalk clips, learns a small byte-level BPE tokenizer
(written as vocab.json + merges.txt, which `CLIPTokenizer` reads), trains a transformers `CLIPModel` with
small towers contrastively for a few hundred steps on the CPU, and saves it as a CLIPModel folder
(safetensors). `caption_accuracy` then runs the caption command on held-out SynthTalk clips (other seed, the
test split's identities) and compares with their meta.json attributes.

Its texts are SynthTalk captions and the caption command's own prompt sentences (caption.py), each paired
with every frame it is true of: a real CLIP has seen such sentences; this one would not know "without"
otherwise. So the figures measure the scoring, thresholds and file handling end to end on a model that has
learnt these attributes, not how well some public CLIP knows them.

    python tools/train_caption_clip.py OUT_DIR [--steps 600] [--clips 192] [--test-clips 60]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .caption import ATTRIBUTE_PROMPTS, BACKGROUND_PROMPT, caption_data
from .layout import read_frames, read_index
from .synthtalk.identities import BACKGROUNDS, caption_for
from .synthtalk.writer import write_dataset

SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>"]


def write_clip_tokenizer(folder: Path, texts: list[str], vocab_size: int = 600):
    """Learn byte-level BPE merges on `texts` with CLIP's own normalisation and word splitting, write
    vocab.json + merges.txt, and load them back as a `CLIPTokenizer`."""
    from tokenizers import pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    backend = CLIPTokenizer().backend_tokenizer  # an empty CLIP tokenizer: CLIP's normaliser and splitter
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet,
                                  end_of_word_suffix="</w>", show_progress=False)
    backend.train_from_iterator(texts, trainer)
    backend.model.save(str(folder))  # merges.txt ("#version" header, as CLIP's); vocab.json is rebuilt below
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    # CLIP's vocabulary order, and a deterministic one (the trainer's ids follow set order): every byte, every
    # byte as a word end (so unseen words still tokenize without <unk>), each merge's result, the specials
    tokens = sorted(alphabet) + [c + "</w>" for c in sorted(alphabet)] + [m.replace(" ", "") for m in merges]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(tokens + SPECIAL_TOKENS))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder, local_files_only=True)


def text_pool() -> list[tuple[str, dict]]:
    """(text, the attributes it states): every SynthTalk caption and every prompt of the caption command."""
    pool = []
    for glasses in (False, True):
        for hat in (False, True):
            for smiling in (False, True):
                for bg in BACKGROUNDS:
                    attrs = {"glasses": glasses, "hat": hat, "smiling": smiling, "background": bg}
                    pool.append((caption_for(attrs), attrs))
    for name, (present, absent) in ATTRIBUTE_PROMPTS.items():
        pool += [(present, {name: True}), (absent, {name: False})]
    pool += [(BACKGROUND_PROMPT.format(bg), {"background": bg}) for bg in BACKGROUNDS]
    return pool


def _load_frames(data_dir: Path) -> tuple[np.ndarray, list[dict]]:
    frames, attributes = [], []
    for clip_id in read_index(data_dir)["clips"]:
        clip_dir = data_dir / "clips" / clip_id
        clip_frames = np.asarray(read_frames(clip_dir))
        attrs = json.loads((clip_dir / "meta.json").read_text())["attributes"]
        frames.append(clip_frames)
        attributes += [attrs] * len(clip_frames)
    return np.concatenate(frames), attributes


def tiny_clip_config(vocab_size: int, tokenizer, image_size: int):
    from transformers import CLIPConfig

    width = 64
    text = dict(vocab_size=vocab_size, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=32, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(image_size=image_size, patch_size=8, hidden_size=width, intermediate_size=2 * width,
                  num_hidden_layers=2, num_attention_heads=4)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=width)


def clip_loss(logits, target, groups: list[list[int]]):
    """CLIP's symmetric contrastive loss where a frame has several true texts (and a text several frames):
    soft targets spread over them. Plus, for each prompt group of the caption command (a yes/no pair, the
    backgrounds), the softmax over that group that zero-shot scoring reads, with the true prompt as target:
    without it the smile, a few pixels at 64², is learnt far later than the rest."""
    import torch.nn.functional as F

    image_loss = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    used = target.sum(0) > 0
    text_target = target[:, used] / target[:, used].sum(0, keepdim=True)
    text_loss = -(text_target * logits[:, used].log_softmax(0)).sum(0).mean()
    group_loss = sum(F.cross_entropy(logits[:, g], target[:, g].argmax(1)) for g in groups) / len(groups)
    return (image_loss + text_loss) / 2 + group_loss


def prompt_groups(pool: list[tuple[str, dict]]) -> list[list[int]]:
    """Indices into `pool` of each prompt group the caption command compares."""
    index = {text: i for i, (text, _) in enumerate(pool)}
    groups = [[index[present], index[absent]] for present, absent in ATTRIBUTE_PROMPTS.values()]
    return groups + [[index[BACKGROUND_PROMPT.format(bg)] for bg in BACKGROUNDS]]


def train_caption_clip(out_dir: str | Path, *, work_dir: str | Path | None = None, clips: int = 192,
                       seconds: float = 0.4, size: int = 64, seed: int = 0, steps: int = 600, batch: int = 32,
                       lr: float = 2e-3, log=print) -> Path:
    """Train the tiny CLIP and save it (CLIPModel, tokenizer, image processor) in `out_dir`."""
    import torch
    from transformers import CLIPImageProcessor, CLIPModel

    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="caption_clip_"))
    start = time.monotonic()
    write_dataset(work / "synthtalk_train", clips, seconds, size=size, seed=seed, split="train")
    frames, attributes = _load_frames(work / "synthtalk_train")

    pool = text_pool()
    tokenizer = write_clip_tokenizer(out_dir, [text for text, _ in pool])
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]  # exactly what captioning sees
    tokens = tokenizer([text for text, _ in pool], padding=True, return_tensors="pt")
    # consistent[i, j]: text j is true of frame i (every attribute it states matches)
    consistent = torch.tensor([[all(a[k] == v for k, v in stated.items()) for _, stated in pool]
                               for a in attributes], dtype=torch.float32)
    groups = prompt_groups(pool)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs faster on one thread than on two busy ones
    try:
        torch.manual_seed(seed)
        model = CLIPModel(tiny_clip_config(len(tokenizer), tokenizer, size))
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for step in range(steps):
            rows = torch.randint(len(pixels), (batch,), generator=generator)
            flip = torch.rand(batch, generator=generator) < 0.5  # the attributes are left-right symmetric
            images = torch.where(flip[:, None, None, None], pixels[rows].flip(-1), pixels[rows])
            out = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=images)
            loss = clip_loss(out.logits_per_image, consistent[rows], groups)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if log and (step % 100 == 0 or step == steps - 1):
                log(f"caption clip: step {step + 1}/{steps} loss {loss.item():.3f} ({time.monotonic() - start:.0f} s)")
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(out_dir)  # safetensors (transformers 4.45+ default; 5 writes nothing else)
    tokenizer.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def caption_accuracy(clip_model: str | Path, data_dir: str | Path, *, out: str | Path | None = None,
                     **caption_options) -> dict:
    """Run the caption command on SynthTalk clips and compare with their known attributes: per attribute the
    fraction right and, for yes/no ones, the balanced accuracy (mean of the rates right on clips with and
    without it: 0.5 for a guess that ignores the image, whatever the attribute's frequency), and the fraction
    of whole captions right."""
    data_dir = Path(data_dir)
    path = caption_data(data_dir, clip_model, out, **caption_options)
    entries = json.loads(path.read_text())["clips"]
    pairs = {name: [] for name in (*ATTRIBUTE_PROMPTS, "background")}  # (truth, guess) per clip
    exact = 0
    clip_ids = read_index(data_dir)["clips"]
    for clip_id in clip_ids:
        truth = json.loads((data_dir / "clips" / clip_id / "meta.json").read_text())["attributes"]
        for name in pairs:
            pairs[name].append((truth[name], entries[clip_id]["attributes"][name]))
        exact += entries[clip_id]["caption"] == caption_for(truth)
    result = {"clips": len(clip_ids), "caption": exact / len(clip_ids)}
    for name, found in pairs.items():
        result[name] = float(np.mean([t == g for t, g in found]))
        if name in ATTRIBUTE_PROMPTS:
            rates = [np.mean([t == g for t, g in found if t == side]) for side in (True, False)
                     if any(t == side for t, _ in found)]
            result[f"{name}_balanced"] = float(np.mean(rates))
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Train the tiny caption CLIP on SynthTalk and measure the caption "
                                            "command's accuracy on held-out SynthTalk clips.")
    p.add_argument("out_dir", type=Path, help="where the CLIPModel folder goes")
    p.add_argument("--work", type=Path, default=None, help="scratch folder for the SynthTalk clips")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--clips", type=int, default=192, help="training clips (0.4 s each)")
    p.add_argument("--test-clips", type=int, default=60, help="held-out clips (test split, seed + 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="caption_clip_"))
    start = time.monotonic()
    train_caption_clip(args.out_dir, work_dir=work, clips=args.clips, steps=args.steps, seed=args.seed)
    trained = time.monotonic() - start
    held_out = work / "synthtalk_test"
    write_dataset(held_out, args.test_clips, 0.4, size=64, seed=args.seed + 1, split="test")
    accuracy = caption_accuracy(args.out_dir, held_out, out=work / "captions_test.json")
    print(json.dumps({"accuracy": accuracy, "train_seconds": round(trained, 1),
                      "total_seconds": round(time.monotonic() - start, 1)}, indent=1))
    return 0
