"""How fast the tokenizer node counts words: the Rust pipeline alone against `count_words`.

    python benchmarks/word_counting.py [--words 5000000] [--non-ascii 0.05] [--workers 1 2] [--repeats 3]

The text is seeded and Wikipedia-like in the ways that matter here: Zipf-distributed words of mean length ~6,
punctuation attached to words, paragraphs of ~60 words, and a share of words (`--non-ascii`) carrying a
non-ASCII character (accents, typographic dashes and quotes, CJK), which `count_words` sends through the Rust
pipeline. Each line is timed in its own turn, interleaved over the repetitions (old, new x workers, old, ...),
and every result's counts are checked equal to the Rust pipeline's. Prints words/s min/median/max per way.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stages.tokenizer import _build_trainer_tokenizer, count_words  # noqa: E402

PUNCT = [",", ".", ";", ":", "'s", ")", "?"]
NON_ASCII = ["é", "ö", "–", "”", "ñ", "ü", "中", "—", "’"]


def make_documents(n_words: int, non_ascii: float, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(100_000)]
    weights = [1.0 / (r + 1) for r in range(len(vocab))]
    words = rng.choices(vocab, weights=weights, k=n_words)
    docs, doc = [], []
    for w in words:
        if rng.random() < non_ascii:
            i = rng.randrange(len(w) + 1)
            w = w[:i] + rng.choice(NON_ASCII) + w[i:]
        if rng.random() < 0.12:
            w += rng.choice(PUNCT)
        if rng.random() < 0.05:
            w = w.capitalize()
        doc.append(w)
        if len(doc) >= 60:
            docs.append(" ".join(doc))
            doc = []
    if doc:
        docs.append(" ".join(doc))
    return docs


def rust_only(docs: list[str], lowercase: bool) -> Counter:
    """The counting path before the fast one: Rust normalizer and pre-tokenizer over the whole text."""
    pipeline, _ = _build_trainer_tokenizer(lowercase)
    counts: Counter = Counter()
    batch, size = [], 0
    for d in docs + [None]:
        if d is not None:
            batch.append(d)
            size += len(d) + 1
        if batch and (d is None or size >= 1 << 22):
            text = pipeline.normalizer.normalize_str("\n".join(batch))
            counts.update(w for w, _ in pipeline.pre_tokenizer.pre_tokenize_str(text))
            batch, size = [], 0
    return counts


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=5_000_000)
    ap.add_argument("--non-ascii", type=float, default=0.05, help="share of words with a non-ASCII character")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lowercase", action="store_true")
    args = ap.parse_args(argv)

    docs = make_documents(args.words, args.non_ascii)
    ways = {"rust pipeline (old path)": lambda: rust_only(docs, args.lowercase)}
    for w in args.workers:
        ways[f"count_words, {w} process{'es' if w > 1 else ''}"] = (
            lambda w=w: count_words(iter(docs), args.lowercase, workers=w))
    times: dict[str, list[float]] = {k: [] for k in ways}
    reference = None
    for _ in range(args.repeats):
        for name, fn in ways.items():
            t = time.perf_counter()
            counts = fn()
            times[name].append(time.perf_counter() - t)
            if reference is None:
                reference = counts
            elif counts != reference:
                raise SystemExit(f"{name}: counts differ from the Rust pipeline's")
    n = sum(reference.values())
    print(f"{n:,} words, {len(reference):,} types, {args.non_ascii:.0%} of words with a non-ASCII character, "
          f"{args.repeats} interleaved repetitions; counts equal in every run")
    print(f"{'way':<30}{'words/s min':>14}{'median':>14}{'max':>14}")
    for name, ts in times.items():
        rates = sorted(n / t for t in ts)
        print(f"{name:<30}{rates[0]:>14,.0f}{statistics.median(rates):>14,.0f}{rates[-1]:>14,.0f}")
    return {"words": n, "types": len(reference), "seconds": times}


if __name__ == "__main__":
    main()
