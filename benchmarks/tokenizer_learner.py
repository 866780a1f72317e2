"""How fast and how lean is each WordPiece learner at paper scale? (README, "Tokenizer at Wikipedia scale".)

Learners, each on the same seeded Zipf type table, to a 32K vocabulary (min_frequency 2, limit_alphabet 1000):
- old:        the exact learner before it was made to scale (kept in tests/test_tokenizer.py as the
              reference the new one must equal); by default only up to 100K types (--old-max), it grows
              like types^1.5;
- exact:      stages.tokenizer.learn_vocabulary, the default (`target.trainer: exact`);
- tokenizers: the Rust WordPiece trainer (`target.trainer: tokenizers`), fed the same table as text: each
              type repeated by its count, streamed through `train_from_iterator` in chunks. Its time
              therefore includes counting the words of that text (sum of counts ~ N ln N words: 12M at 1M
              types, 167M at 10M), which the Python learners are given already counted. It runs on every
              core the machine has (the sweep gives the node its `resources.tokenizer.cpu`).

Each measurement runs in its own process: time (wall and CPU) of the learner alone, the peak resident
memory of that process (VmHWM, see `peak_gib`), the memory after loading the table (the Counter that train_tokenizer
holds, which the Python learners drop once encoded), and a digest of the vocabulary. --determinism N runs
the exact learner twice at N types under two PYTHONHASHSEEDs and compares the digests.

The type table (`zipf_types`): N distinct strings over 60 characters (a-z, A-Z and 8 accented letters),
characters drawn with probability ~ 1 / (rank + 3) in that order, lengths 1 + Poisson(7) (mean 8, at most 30,
about the mean length of English Wikipedia's types); ranks go to the strings by length plus Gaussian noise
(sd 2: short words are frequent), and the type of rank r occurs floor(N / r) times: Zipf with exponent 1, half
the types once, and many tied counts. Random strings have no morphology: fewer shared pieces than English,
so more distinct pairs per merge, not fewer. The table is written once to --cache (TSV) and read by every run.

    python benchmarks/tokenizer_learner.py --sizes 100000 1000000 --determinism 1000000
    python benchmarks/tokenizer_learner.py --sizes 10000000 --learners exact
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ALPHABET = "etaoinshrdlucmfwygpbvkxjqz" + "ETAOINSHRDLUCMFWYGPBVKXJQZ" + "éàèüöäñç"
VOCAB_SIZE, MIN_FREQUENCY, LIMIT_ALPHABET = 32000, 2, 1000


def zipf_types(n: int, seed: int = 0) -> dict[str, int]:
    """N distinct random words with Zipf counts, in rank order (see the module docstring)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(len(ALPHABET)) + 3.0)
    chars = np.array(list(ALPHABET))
    seen: dict[str, None] = {}
    while len(seen) < n:  # short strings collide: draw until there are n distinct ones
        m = int((n - len(seen)) * 1.1) + 100
        lens = np.minimum(1 + rng.poisson(7, m), 30)
        text = "".join(chars[rng.choice(len(ALPHABET), size=int(lens.sum()), p=p / p.sum())].tolist())
        ends = np.cumsum(lens).tolist()
        for a, b in zip([0, *ends[:-1]], ends):
            seen.setdefault(text[a:b])
            if len(seen) == n:
                break
    words = list(seen)
    order = np.argsort(np.array([len(w) for w in words]) + rng.normal(0, 2, n), kind="stable")
    return {words[i]: n // (r + 1) for r, i in enumerate(order.tolist())}


def table_path(cache: Path, n: int, seed: int) -> Path:
    path = cache / f"zipf-{n}-{seed}.tsv"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(f"{w}\t{c}\n" for w, c in zipf_types(n, seed).items())
        tmp.rename(path)
    return path


def read_table(path: Path) -> dict[str, int]:
    counts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            w, c = line.split("\t")
            counts[w] = int(c)
    return counts


def _rust_trainer(counts: dict[str, int]) -> list[str]:
    """The Rust trainer on the table as text: each type repeated by its count, in chunks of at most 1M words."""
    from stages.tokenizer import SPECIAL_TOKENS, _build_trainer_tokenizer
    from tokenizers import trainers

    def text():
        for w, c in counts.items():
            while c > 0:
                yield " ".join([w] * min(c, 1_000_000))
                c -= 1_000_000

    tok, _ = _build_trainer_tokenizer(lowercase=False)
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, min_frequency=MIN_FREQUENCY,
                                        special_tokens=SPECIAL_TOKENS, limit_alphabet=LIMIT_ALPHABET,
                                        continuing_subword_prefix="##", show_progress=False)
    tok.train_from_iterator(text(), trainer, length=len(counts))
    return [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]


def peak_gib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: on Linux, ru_maxrss survives exec, so a
    child started by a parent that holds a 10M-type table would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


def measure(learner: str, path: Path) -> dict:
    """One learner on one table, in this process (the parent starts one process per measurement)."""
    tables = [read_table(path)]
    loaded = peak_gib()
    n = len(tables[0])
    t, cpu = time.perf_counter(), time.process_time()
    # tables.pop(): the learner gets the only reference, as from train_tokenizer, and may free the table
    if learner == "exact":
        from stages.tokenizer import learn_vocabulary

        vocab = learn_vocabulary(tables.pop(), VOCAB_SIZE, MIN_FREQUENCY, LIMIT_ALPHABET)
    elif learner == "old":
        from tests.test_tokenizer import _reference_learn_vocabulary

        vocab = _reference_learn_vocabulary(tables.pop(), VOCAB_SIZE, MIN_FREQUENCY, LIMIT_ALPHABET)
    else:
        vocab = _rust_trainer(tables.pop())
    return {"learner": learner, "types": n, "seconds": time.perf_counter() - t,
            "cpu_seconds": time.process_time() - cpu, "loaded_gb": loaded,
            "peak_gb": peak_gib(),
            "vocab": len(vocab), "digest": hashlib.sha256("\n".join(vocab).encode()).hexdigest()[:16]}


def run(learner: str, path: Path, hashseed: str | None = None, timeout: float | None = None) -> dict:
    env = dict(os.environ, PYTHONHASHSEED=hashseed) if hashseed is not None else None
    cmd = [sys.executable, __file__, "--measure", learner, str(path)]
    try:
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired:
        return {"learner": learner, "types": None, "note": f"stopped after {timeout:.0f} s"}
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--learners", nargs="+", default=["old", "exact", "tokenizers"],
                    choices=["old", "exact", "tokenizers"])
    ap.add_argument("--old-max", type=int, default=100_000, help="run the old learner only up to this many types")
    ap.add_argument("--determinism", type=int, default=None, metavar="N",
                    help="also run the exact learner at N types under PYTHONHASHSEED 1 and 2 and compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/xlt-tokenizer-bench", help="where the type tables are kept")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds before a measurement is stopped")
    ap.add_argument("--measure", nargs=2, metavar=("LEARNER", "TABLE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return
    rows = []
    for n in args.sizes:
        path = table_path(Path(args.cache), n, args.seed)
        for learner in args.learners:
            if learner == "old" and n > args.old_max:
                rows.append({"learner": learner, "types": n, "note": f"skipped (over --old-max {args.old_max})"})
                continue
            rows.append(run(learner, path, timeout=args.timeout) | {"types": n})
            print(json.dumps(rows[-1]), flush=True)
    if args.determinism:
        path = table_path(Path(args.cache), args.determinism, args.seed)
        runs = [run("exact", path, hashseed=s, timeout=args.timeout) for s in ("1", "2")]
        print(json.dumps({"determinism": args.determinism, "digests": [r.get("digest") for r in runs],
                          "identical": runs[0].get("digest") == runs[1].get("digest")}), flush=True)
    print("\n| learner | types | seconds (wall) | CPU seconds | peak memory (GiB) | after loading (GiB) | vocab "
          "| digest |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "note" in r:
            print(f"| {r['learner']} | {r['types']:,} | {r['note']} | | | | | |")
        else:
            print(f"| {r['learner']} | {r['types']:,} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                  f"{r['peak_gb']:.2f} | {r['loaded_gb']:.2f} | {r['vocab']:,} | {r['digest']} |")


if __name__ == "__main__":
    main()
