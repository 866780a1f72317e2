"""Helpers the task writers share: balanced labels, unique examples, label noise, train/dev splits."""
from __future__ import annotations

import random

from stages.common import StageError
from synthetic.config import SyntheticConfig


def _balanced_labels(rng: random.Random, n: int) -> list[int]:
    labels = [0] * (n // 2) + [1] * (n - n // 2)
    rng.shuffle(labels)
    return labels


def _unique_examples(n_total: int, make, seen: set) -> list:
    """Call make(i) until it gives an example whose text was not seen (no train/dev duplicates)."""
    out = []
    for i in range(n_total):
        for _attempt in range(200):
            ex = make(i)
            if ex is not None and ex["key"] not in seen:
                break
        else:
            raise StageError("synthetic: could not draw enough distinct task examples; lower train_size/dev_size "
                             "or raise the lexicon sizes")
        seen.add(ex["key"])
        out.append(ex)
    return out


def _apply_noise(rng: random.Random, examples: list, rate: float) -> int:
    flipped = 0
    for ex in examples:
        if rng.random() < rate:
            ex["label"] = 1 - ex["label"]
            flipped += 1
    return flipped


def _splits(rng: random.Random, cfg: SyntheticConfig, make, kinds_of) -> tuple[dict, dict]:
    """Class-balanced train and dev splits of unique examples (dev repeats no train example), label noise
    applied, and a count of the kinds of example that `kinds_of(example)` names."""
    kinds: dict[str, int] = {}
    seen: set = set()
    splits, flipped = {}, {}
    for split, n in (("train", cfg.train_size), ("dev", cfg.dev_size)):
        labels = _balanced_labels(rng, n)
        exs = _unique_examples(n, lambda i: make(labels[i]), seen)
        for ex in exs:
            for k in kinds_of(ex):
                kinds[k] = kinds.get(k, 0) + 1
        flipped[split] = _apply_noise(rng, exs, cfg.label_noise)
        splits[split] = exs
    return splits, {"kinds": dict(sorted(kinds.items())), "noisy_labels": flipped}
