"""Text corpora for tokenizer training and MLM pretraining: local text files or a Hugging Face dataset."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pydantic import model_validator

from stages.common import StageConfig, StageError, atomic_write, file_digest, setting


class CorpusConfig(StageConfig):
    """Where a corpus lives: local text files (one document per line, blank lines ignored) or a hub dataset."""

    files: list[str] = setting([], "plain UTF-8 text files")
    hub_dataset: str | None = setting(None, "a `datasets` id instead of files, e.g. wikimedia/wikipedia")
    hub_config: str | None = setting(None, "its config, e.g. 20231101.en")
    hub_split: str = setting("train", "its split")
    text_column: str = setting("text", "the column holding the text")
    max_documents: int | None = setting(None, "read at most this many documents: non-empty lines (a hub row is "
                                              "split at its newlines)", ge=1)

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.files) == bool(self.hub_dataset):
            raise ValueError("give either files (local text files) or hub_dataset, exactly one")
        return self

    def fingerprint(self) -> str:
        """Stable id of what the corpus holds, for caches keyed by (corpus, tokenizer) and node hashes: the
        files by content (in order), not by path, so the same text copied or mounted elsewhere is the same
        corpus, and a touched file is unchanged."""
        d = self.model_dump()
        d["files"] = [_file_stamp(f) for f in self.files]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _file_stamp(path: str) -> list:
    p = Path(path)
    if not p.is_file():
        return [p.name, None, None]
    return [p.name, p.stat().st_size, file_digest(p)]


def check_corpus(cfg: CorpusConfig, what: str = "corpus") -> None:
    """Fail early, with the fix, on a corpus that cannot be read."""
    for f in cfg.files:
        p = Path(f)
        if not p.is_file():
            raise StageError(f"{what}: corpus file {p} does not exist; fix the path in the sweep config")
        if p.stat().st_size == 0:
            raise StageError(f"{what}: corpus file {p} is empty; point the config at a file with text")


def iter_documents(cfg: CorpusConfig, what: str = "corpus") -> Iterator[str]:
    """Yield non-empty documents, in a fixed order (reproducible caches and counts)."""
    check_corpus(cfg, what)
    n = 0
    if cfg.files:
        for f in cfg.files:
            with open(f, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if line:
                        yield line
                        n += 1
                        if cfg.max_documents is not None and n >= cfg.max_documents:
                            return
    else:
        import datasets  # imported here: local-file runs should not pay for it

        try:
            ds = datasets.load_dataset(cfg.hub_dataset, cfg.hub_config, split=cfg.hub_split, streaming=True)
        except Exception as e:  # network or name problems: say which dataset and how to work offline
            raise StageError(
                f"{what}: could not load hub dataset {cfg.hub_dataset!r} ({cfg.hub_config}, {cfg.hub_split}): {e}. "
                "Check the id, or download the text once and point `files` at it."
            ) from e
        for row in ds:
            if cfg.text_column not in row:
                raise StageError(f"{what}: dataset {cfg.hub_dataset} has no column {cfg.text_column!r}; "
                                 f"set text_column to one of {sorted(row)}")
            for line in str(row[cfg.text_column]).split("\n"):
                line = line.strip()
                if line:
                    yield line
                    n += 1
                    if cfg.max_documents is not None and n >= cfg.max_documents:
                        return
    if n == 0:
        raise StageError(f"{what}: the corpus holds no text ({cfg.files or cfg.hub_dataset}); give it some text")


# --- Tokenized corpus cache -------------------------------------------------------------------------
# A corpus is tokenized once per (corpus, tokenizer) into a flat binary file of token ids (documents
# separated by [SEP]) that pretraining packs into blocks and the frequency mapping counts. A flat
# memory-mapped file scales to Wikipedia-sized corpora without holding them in RAM.

def tokenizer_fingerprint(tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


def tokenize_to_cache(cfg: CorpusConfig, tokenizer, cache_dir: str | Path, what: str = "corpus",
                      batch_docs: int = 1000, log=print) -> Path:
    """Return the path of the cached `.bin` of token ids, building it if needed (atomic: tmp + rename)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = f"{cfg.fingerprint()}-{tokenizer_fingerprint(tokenizer)}"
    path, meta_path = cache_dir / f"tokens-{key}.bin", cache_dir / f"tokens-{key}.json"
    if path.exists() and meta_path.exists():
        return path
    # Several trials may ask for the same cache at once (e.g. frequency, random-map and scratch all read
    # English text through one tokenizer): one builds it, the others wait on the lock and reuse it.
    import fcntl

    with open(cache_dir / f"tokens-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists() and meta_path.exists():
            return path
        return _build_cache(cfg, tokenizer, path, meta_path, what, batch_docs, log)


def _build_cache(cfg, tokenizer, path, meta_path, what, batch_docs, log) -> Path:
    import numpy as np

    dtype = np.uint16 if len(tokenizer) < 2**16 else np.int32
    sep = tokenizer.sep_token_id
    n_tokens = n_docs = n_unk = 0
    batch: list[str] = []
    with atomic_write(path, "wb") as out:
        def flush():
            nonlocal n_tokens, n_unk
            ids = tokenizer(batch, add_special_tokens=False)["input_ids"]
            flat = np.fromiter((t for doc in ids for t in (*doc, sep)), dtype=dtype)
            n_unk += int((flat == tokenizer.unk_token_id).sum())
            n_tokens += flat.size
            out.write(flat.tobytes())
            batch.clear()

        for doc in iter_documents(cfg, what):
            batch.append(doc)
            n_docs += 1
            if len(batch) == batch_docs:
                flush()
                if n_docs % (batch_docs * 100) == 0:
                    log(f"[tokenize] {what}: {n_docs:,} documents, {n_tokens:,} tokens")
        if batch:
            flush()
    from stages.common import write_json

    write_json(meta_path, {"dtype": np.dtype(dtype).name, "tokens": n_tokens, "documents": n_docs,
                           "unk_tokens": n_unk, "vocab_size": len(tokenizer)})
    log(f"[tokenize] {what}: cached {n_docs:,} documents, {n_tokens:,} tokens ({n_unk / max(1, n_tokens):.2%} [UNK])")
    return path


def load_token_cache(path: str | Path):
    """Memory-map a cache built by tokenize_to_cache."""
    import numpy as np

    from stages.common import read_json

    meta = read_json(Path(path).with_suffix(".json"))
    return np.memmap(path, dtype=meta["dtype"], mode="r", shape=(meta["tokens"],))


def token_counts(path: str | Path, vocab_size: int, chunk: int = 1 << 24):
    """Occurrences of every token id in a cache (chunked so a huge corpus never sits in RAM)."""
    import numpy as np

    ids = load_token_cache(path)
    counts = np.zeros(vocab_size, dtype=np.int64)
    for i in range(0, ids.shape[0], chunk):
        counts += np.bincount(np.asarray(ids[i:i + chunk]), minlength=vocab_size)[:vocab_size]
    return counts


class TokenizeConfig(StageConfig):
    """A corpus turned into a token cache once, on CPU, before the GPU trials that read it start; with the
    token counts every frequency-mapped node ranks by (English counts for the new vocabulary, source-corpus
    counts for the source rows)."""
    corpus: CorpusConfig = setting(doc="the text tokenized")
    tokenizer: str = setting(doc="tokenizer folder or hub id")
    cache_dir: str = setting(doc="the sweep's shared cache of tokenized corpora")
    output_dir: str = setting(doc="where token_counts.npy (int64, one count per token id) is written")
    name: str = setting("corpus", "what the progress lines call it", hashed=False)


@dataclass(frozen=True)
class TokenizeResult:
    cache: str          # the .bin of token ids
    counts: str         # token_counts.npy
    meta: dict          # tokens, documents, unk_tokens, vocab_size, dtype


def tokenize_corpus(cfg: TokenizeConfig, log=print) -> TokenizeResult:
    from stages.common import read_json, save_npy
    from stages.tokenizer import load_tokenizer

    tok = load_tokenizer(cfg.tokenizer)
    cache = tokenize_to_cache(cfg.corpus, tok, cfg.cache_dir, cfg.name, log=log)
    counts = Path(cfg.output_dir) / "token_counts.npy"
    save_npy(counts, token_counts(cache, len(tok)))
    return TokenizeResult(str(cache), str(counts), read_json(cache.with_suffix(".json")))
