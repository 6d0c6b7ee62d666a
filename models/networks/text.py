"""Text encoders that a model brings itself.

Full-size models take text as CONDITIONING from the user's SD-1.5 CLIP (ComfyUI's CLIPTextEncode), or
from a transformers `CLIPTextModel` with a tokenizer folder the user supplies. The tiny family ships its
own: a small transformers `CLIPTextModel` behind a word-level tokenizer whose vocabulary is part of the
model config, so it needs no files from a hub.
"""

from __future__ import annotations

import torch
from torch import nn


def word_tokenizer(vocabulary: list[str], max_length: int):
    """A `tokenizers` word-level tokenizer: lower-case, punctuation dropped, unknown words → [UNK]."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    specials = ["[PAD]", "[BOS]", "[EOS]", "[UNK]"]
    vocab = {token: i for i, token in enumerate(specials + [w for w in vocabulary if w not in specials])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(),
                                           normalizers.Replace(Regex(r"[^\w\s]"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 1), ("[EOS]", 2)])
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=max_length)
    tok.enable_truncation(max_length)
    return tok


class TextEncoder(nn.Module):
    """Prompts → token embeddings `[N, T, D]` (the CONDITIONING tensor)."""

    def __init__(self, model: nn.Module, tokenize=None):
        super().__init__()
        self.model = model
        self._tokenize = tokenize  # list[str] -> LongTensor [N, T]

    @classmethod
    def from_config(cls, config: dict) -> TextEncoder:
        """The tiny family's own encoder, or a full-size CLIP text model awaiting its tokenizer."""
        if config["encoder"] == "tiny":
            return cls.tiny(config)
        from transformers import CLIPTextConfig, CLIPTextModel

        return cls(CLIPTextModel(CLIPTextConfig(**config["model"])))

    def with_tokenizer(self, tokenizer_dir: str) -> TextEncoder:
        """Attach a CLIP tokenizer folder (vocab.json, merges.txt) the user supplies."""
        return TextEncoder.from_clip(self.model, tokenizer_dir)

    @classmethod
    def tiny(cls, config: dict) -> TextEncoder:
        from transformers import CLIPTextConfig, CLIPTextModel

        vocab, length = list(config["vocabulary"]), int(config["max_length"])
        tokenizer = word_tokenizer(vocab, length)
        model_config = CLIPTextConfig(vocab_size=tokenizer.get_vocab_size(), max_position_embeddings=length,
                                      pad_token_id=0, bos_token_id=1, eos_token_id=2, **config["model"])

        def tokenize(prompts: list[str]) -> torch.Tensor:
            return torch.tensor([e.ids for e in tokenizer.encode_batch(prompts)], dtype=torch.long)

        return cls(CLIPTextModel(model_config), tokenize)

    @classmethod
    def from_clip(cls, model: nn.Module, tokenizer_dir: str) -> TextEncoder:
        """A full-size CLIP text model with a CLIP tokenizer folder (vocab.json, merges.txt)."""
        from transformers import CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        # the model's positions, not the folder's model_max_length (ComfyUI's sd1_tokenizer says 8192)
        length = min(tokenizer.model_max_length, model.config.max_position_embeddings)

        def tokenize(prompts: list[str]) -> torch.Tensor:
            return tokenizer(prompts, padding="max_length", max_length=length, truncation=True,
                             return_tensors="pt").input_ids

        return cls(model, tokenize)

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def forward(self, prompts: list[str]) -> torch.Tensor:
        if self._tokenize is None:
            raise ValueError("this CLIP text encoder has no tokenizer: pass a tokenizer folder (vocab.json, "
                             "merges.txt), or give text as CONDITIONING from ComfyUI's CLIPTextEncode")
        ids = self._tokenize([p or "" for p in prompts]).to(self.model.device)
        return self.model(ids).last_hidden_state
