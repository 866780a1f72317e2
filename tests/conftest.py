"""Shared fixtures: tiny real BERT models and tokenizers built from a config (no hub access needed)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from stages.corpus import CorpusConfig
from stages.tokenizer import TokenizerConfig, train_tokenizer

WORDS_A = ("the a one big small red old new dog cat bird house tree car runs sees likes eats finds "
           "quickly slowly very good bad happy sad and but not with near under over").split()


def write_corpus(path: Path, n_lines: int, seed: int, words=WORDS_A) -> Path:
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n_lines):
            f.write(" ".join(rng.choice(words) for _ in range(rng.randint(4, 14))).capitalize() + ".\n")
    return path


def make_tiny_bert(folder: Path, corpus: Path, vocab_size: int = 200, hidden: int = 32, seed: int = 0) -> str:
    """Train a WordPiece tokenizer on `corpus` and save a random tiny BertForMaskedLM beside it."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    res = train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(corpus)]), output_dir=str(folder),
                                          vocab_size=vocab_size, min_frequency=1))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=res.vocab_size, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=hidden * 4, max_position_embeddings=160, pad_token_id=0)
    BertForMaskedLM(cfg).save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(autouse=True, scope="session")
def _private_caches(tmp_path_factory):
    """The per-user caches `xlt` keeps (file digests, the last `xlt run` per config) point into a temporary
    folder: tests must not read or write the home folder of whoever runs them."""
    import os

    cache = tmp_path_factory.mktemp("user-cache")
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "XLT_CACHE_DIR")}
    os.environ["XDG_CACHE_HOME"], os.environ["XLT_CACHE_DIR"] = str(cache), str(cache / "xlt")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "en.txt", 3000, seed=1)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, tiny_corpus) -> str:
    """Folder with a tiny random BertForMaskedLM and its tokenizer (loads with the Auto classes)."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), tiny_corpus)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray on 2 CPUs for every test that sweeps through Ray (starting it costs seconds)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()
