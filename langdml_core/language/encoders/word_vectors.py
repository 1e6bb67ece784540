"""Word vectors (fastText .vec / GloVe .txt): a text is the mean of its known words' vectors."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from langdml_core.cache import files_digest
from langdml_core.errors import ConfigError, WeightsError
from langdml_core.language.encoders.base import ENCODERS, WEIGHTS, TextEncoder, check_pooling

_WORD = re.compile(r"[^\W\d_]+")


def words_of(text: str) -> list[str]:
    """Lower-cased words: maximal runs of letters."""
    return _WORD.findall(text.lower())


def _vectors_header(file: Path) -> tuple[int, bool]:
    """(dim, has_header): a first line 'N D' of two integers is a fastText header; GloVe has none.

    Without a header, D is the most common field count - 1 over the first lines (a few GloVe words
    contain spaces, so one line alone can mislead).
    """
    with open(file, encoding="utf-8", errors="replace") as f:
        lines = [line.rstrip() for line in islice(f, 100)]
    first = lines[0].split(" ") if lines else []
    if len(first) == 2 and all(p.isdigit() for p in first):
        return int(first[1]), True
    counts = Counter(len(line.split(" ")) - 1 for line in lines if line)
    if not counts or counts.most_common(1)[0][0] < 1:
        raise ConfigError(f"Word-vectors file {file} does not start with 'N D' or lines 'word v1 ... vD'.")
    return counts.most_common(1)[0][0], False


class WordVectorEncoder(TextEncoder):
    tokenizer: Any = None
    file: Path

    def _lookup(self, vocab: set[str]) -> dict[str, np.ndarray]:
        """Stream the file once, keeping only ``vocab``; an exact lower-case entry beats a case-folded one."""
        exact: dict[str, np.ndarray] = {}
        folded: dict[str, np.ndarray] = {}
        dim = self.dim
        with open(self.file, encoding="utf-8", errors="replace") as f:
            if self.has_header:
                f.readline()
            for line in f:
                head = line.split(" ", 1)[0]
                key = head.lower()
                if key not in vocab or key in exact:
                    continue
                parts = line.rstrip().split(" ")
                if len(parts) < dim + 1:
                    continue
                word = " ".join(parts[:-dim])
                if word.lower() != key:
                    continue
                if word == key:
                    exact[key] = np.asarray(parts[-dim:], dtype=np.float64)
                elif key not in folded:
                    folded[key] = np.asarray(parts[-dim:], dtype=np.float64)
                if len(exact) == len(vocab):
                    break
        return {**folded, **exact}

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        tokens = [words_of(t) for t in texts]
        table = self._lookup({w for ws in tokens for w in ws})
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for i, (text, ws) in enumerate(zip(texts, tokens, strict=True)):
            known = [table[w] for w in ws if w in table]
            if not known:
                raise ConfigError(
                    f"language encoder {self.name!r}: no word of the text {text!r} is in {self.file}; "
                    "use a larger vocabulary or another encoder."
                )
            out[i] = np.mean(known, axis=0)
        return out


def _word_vectors_file(name: str, path: str = "") -> Path:
    if not path:
        raise WeightsError(
            f"language encoder {name!r} needs a local word-vectors text file: set language.encoder_path "
            f"(e.g. {'crawl-300d-2M.vec' if name == 'fasttext' else 'glove.840B.300d.txt'})."
        )
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsError(
            f"language encoder {name!r}: word-vectors file {file} not found; set language.encoder_path "
            "to a local fastText .vec or GloVe .txt file."
        )
    return file


def _build_word_vectors(name: str, path: str = "", pooling: str = "auto", device: str = "cpu") -> TextEncoder:
    """Mean of the word vectors of a text's lower-cased words (OOV words skipped)."""
    check_pooling(name, pooling, ("mean",))
    file = _word_vectors_file(name, path)
    dim, has_header = _vectors_header(file)
    encoder = WordVectorEncoder(name, dim, files_digest(file, name), "mean", device)
    encoder.file, encoder.has_header = file, has_header
    return encoder


WORD_VECTOR_ENCODERS: dict[str, Callable[..., TextEncoder]] = {}
for _name in ("fasttext", "glove"):
    WORD_VECTOR_ENCODERS[_name] = ENCODERS.register(_name)(partial(_build_word_vectors, _name))
    WEIGHTS.register(_name)(partial(_word_vectors_file, _name))
