"""fastText vectors for the initialisations that need them: trained once per (corpus, unit) and shared.

- unit `tokens` (FOCUS): the corpus tokenized by a tokenizer, one token per fastText word, so every target
  token gets a vector of its own (FOCUS's `fasttext-tokenlevel` mode, trained the way `deepfocus` trains it:
  CBOW, 10 negatives).
- unit `words` (WECHSEL): the corpus cut into words by BERT's normalizer and pre-tokenizer (WECHSEL's own helper
  uses NLTK's Punkt, which downloads its model), fastText's subword n-grams on.

One thread: fastText's Hogwild updates make multi-threaded training differ run to run. With one thread, the
demo's token vectors came out the same (by SHA-256 of the input matrix) from the sweep's node and from two
standalone trainings of the same config into other folders, in other processes (2026-12-04). fastText 0.9.3's
Python API takes no seed for unsupervised training, though, and its C++ side has read memory it did not
initialise (one earlier run held values of 8e37 in its input matrix; an earlier session saw vectors change
with the text file's path, not seen since; "Encountered NaN." at times, retried below). So the vectors are
trained once, in a node of their own, and every init that needs them reads that node's file: a finished sweep
never depends on fastText training the same twice. Writes `vectors.bin` (loadable by `fasttext.load_model`)
and `vectors.json`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from stages.common import StageConfig, StageError, setting, write_json
from stages.corpus import CorpusConfig, iter_documents


ATTEMPTS = 3   # fastText 0.9.3 at times stops with "Encountered NaN." on the same text it trains on the next call


class VectorSettings(StageConfig):
    """fastText training settings (`inits.focus.vectors`, `inits.wechsel.vectors` in a sweep)."""
    dim: int = setting(100, "vector size (FOCUS and WECHSEL train 100)", ge=2)
    epochs: int = setting(3, "passes over the corpus", ge=1)
    min_count: int = setting(10, "occurrences a word needs to get a vector of its own", ge=1)
    minn: int = setting(3, "shortest character n-gram (0: no subword vectors)", ge=0)
    maxn: int = setting(6, "longest character n-gram", ge=0)
    bucket: int = setting(2_000_000, "hash buckets of the n-gram vectors (fastText's default; the model holds "
                                     "bucket x dim floats, 800 MB at the defaults)", ge=1)


class VectorsConfig(VectorSettings):
    corpus: CorpusConfig = setting(doc="the text")
    unit: Literal["tokens", "words"] = setting(doc="tokens: tokenized by `tokenizer` (FOCUS); words (WECHSEL)")
    tokenizer: str | None = setting(None, "tokenizer folder or hub id (unit tokens)")
    lowercase: bool = setting(False, "unit words: lowercase as an uncased BERT would")
    output_dir: str = setting(doc="folder written: vectors.bin, vectors.json")


@dataclass(frozen=True)
class VectorsResult:
    path: str
    words: int           # vocabulary of the fastText model
    tokens: int          # running words it was trained on
    seconds: float


def _lines(cfg: VectorsConfig) -> Callable[[str], str]:
    if cfg.unit == "tokens":
        if not cfg.tokenizer:
            raise StageError("vectors of unit tokens need a tokenizer (the target tokenizer's folder)")
        from stages.tokenizer import load_tokenizer
        tok = load_tokenizer(cfg.tokenizer)
        return lambda doc: " ".join(tok.tokenize(doc))
    from stages.tokenizer import _build_trainer_tokenizer
    pipe, _ = _build_trainer_tokenizer(cfg.lowercase)
    return lambda doc: " ".join(w for w, _ in pipe.pre_tokenizer.pre_tokenize_str(pipe.normalizer.normalize_str(doc)))


def train_vectors(cfg: VectorsConfig, log: Callable[[str], None] = print) -> VectorsResult:
    import fasttext

    t0 = time.time()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = out / "train.txt"
    cut, n_tokens = _lines(cfg), 0
    with open(text, "w", encoding="utf-8") as f:
        for doc in iter_documents(cfg.corpus, "vectors corpus"):
            line = cut(doc)
            n_tokens += line.count(" ") + 1
            f.write(line + "\n")
    if n_tokens == 0:
        raise StageError("the vectors corpus has no text")
    log(f"[vectors] fastText ({cfg.unit}) on {n_tokens:,} running {cfg.unit}, dim {cfg.dim}, {cfg.epochs} epochs")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            model = fasttext.train_unsupervised(str(text), model="cbow", dim=cfg.dim, epoch=cfg.epochs,
                                                minCount=cfg.min_count, minn=cfg.minn, maxn=cfg.maxn,
                                                bucket=cfg.bucket, neg=10, thread=1, verbose=0)
            break
        except RuntimeError as e:   # "Encountered NaN.": the uninitialised memory of the docstring, at times
            if "NaN" not in str(e) or attempt == ATTEMPTS:
                where = cfg.corpus.files or cfg.corpus.hub_dataset
                raise StageError(f"fastText training failed ({e}) {attempt} time(s) on {where}; more text or a "
                                 "larger min_count makes it less likely") from e
            log(f"[vectors] fastText: {e} (attempt {attempt} of {ATTEMPTS}); training again")
    path = out / "vectors.bin"
    tmp = out / "vectors.bin.tmp"
    model.save_model(str(tmp))
    tmp.replace(path)   # a crash mid-save never leaves a half-written model under the final name
    text.unlink()
    res = VectorsResult(str(path), len(model.words), n_tokens, time.time() - t0)
    write_json(out / "vectors.json", {"path": res.path, "words": res.words, "tokens": res.tokens,
                                      "seconds": res.seconds, "unit": cfg.unit})
    return res
