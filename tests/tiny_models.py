"""Tiny randomly initialised models saved exactly as users (or the Hugging Face Hub) store the real ones.

Used by the encoder tests and by the smoke runs of the paper sweeps (tests/paper_world.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TEXTS = ["a photo of a red circle", "a photo of a red square", "a photo of a blue car", "the dog"]
WORDS = ["a", "photo", "of", "red", "circle", "square", "blue", "car", "the", "dog"]
SMALL = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
TINY_CLIP_CFG = {
    "embed_dim": 8,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def _bpe_files(folder: Path, specials: list[str]) -> int:
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 3, vocab_size=300, min_frequency=1, special_tokens=specials)
    bpe.save_model(str(folder))
    return bpe.get_vocab_size()


def save_bert(folder: Path) -> Path:
    """bert-base's format: WordPiece vocab + BertModel with a pooler, written by save_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder.parent / f"{folder.name}-vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]))
    tokenizer = BertTokenizerFast(vocab=str(vocab))  # transformers 5: vocab, not vocab_file
    assert tokenizer.unk_token_id not in tokenizer(TEXTS[0])["input_ids"]
    tokenizer.save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(tokenizer), max_position_embeddings=64, **SMALL)).save_pretrained(
        folder
    )
    return folder


def save_roberta(folder: Path) -> Path:
    """roberta-large's format: byte-level BPE, saved WITHOUT a pooler like the released checkpoint."""
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    bpe = folder.parent / f"{folder.name}-bpe"
    bpe.mkdir(parents=True, exist_ok=True)
    n = _bpe_files(bpe, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = RobertaTokenizerFast.from_pretrained(bpe)  # reads vocab.json + merges.txt
    assert len(tokenizer(TEXTS[0])["input_ids"]) > 2
    config = RobertaConfig(
        vocab_size=n, max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2, **SMALL
    )
    tokenizer.save_pretrained(folder)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def save_gpt2(folder: Path) -> Path:
    """gpt2's format: byte-level BPE with only <|endoftext|> (no pad token), GPT2Model."""
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    bpe = folder.parent / f"{folder.name}-bpe"
    bpe.mkdir(parents=True, exist_ok=True)
    n = _bpe_files(bpe, ["<|endoftext|>"])
    tokenizer = GPT2TokenizerFast.from_pretrained(bpe)
    assert tokenizer.pad_token is None and tokenizer.eos_token_id == 0
    assert len(tokenizer(TEXTS[0])["input_ids"]) > 2
    config = GPT2Config(
        vocab_size=n, n_positions=64, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
    )
    tokenizer.save_pretrained(folder)
    GPT2Model(config).save_pretrained(folder)
    return folder


def tiny_clip():
    """A tiny open_clip model (real SimpleTokenizer vocab) built from TINY_CLIP_CFG."""
    from open_clip.model import CLIP

    cfg = dict(TINY_CLIP_CFG)
    return CLIP(cfg["embed_dim"], cfg["vision_cfg"], cfg["text_cfg"], quick_gelu=cfg["quick_gelu"])


def save_clip_dir(folder: Path, model=None) -> Path:
    """open_clip's Hub layout: open_clip_config.json + open_clip_model.safetensors in one folder."""
    from safetensors.torch import save_file

    model = model if model is not None else tiny_clip()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {}})
    )
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    return folder


def save_timm_random(name: str, file: Path) -> Path:
    """Randomly initialised weights of timm model ``name`` as a .safetensors file (the Hub's format)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    return file


def hub_snapshot(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in a Hugging Face cache laid out like a real one (refs/main)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot
