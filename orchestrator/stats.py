"""Seed statistics for the report: intervals of a mean over seeds, paired comparisons, Holm's correction.

Every number in the paper's tables is a mean over fine-tuning seeds; what a reader needs beside it is how far
that mean could move with other seeds, and whether a gap between two models is larger than their seed noise.

- `mean_interval`: a percentile bootstrap of the mean over seeds (resampling seeds with replacement), seeded
  from the sweep's seed and the cell's name, so every report of the same runs prints the same interval. With
  n seeds it can only span the values the n seeds took, so at 2-3 seeds it is narrow by construction: read it
  with the seed count beside it.
- `paired`: two models fine-tuned with the same seeds are compared seed by seed (a seed draws the same
  classifier initialisation and shuffle for both, so the pairing removes that share of the noise). The test
  is the paired t-test (scipy's `ttest_rel`); the Wilcoxon signed-rank test (`wilcoxon`, exact) is reported
  beside it but not used for the verdict: with n pairs its smallest two-sided p is 2 / 2^n (0.0625 at the
  paper's 5 seeds), so at this study's seed counts it can never say "different" at 5%. The t-test assumes
  roughly normal seed-to-seed differences, the usual reading of fine-tuning noise (Dror et al., 2018, "The
  Hitchhiker's Guide to Testing Statistical Significance in NLP", recommend it when that is plausible).
- A verdict needs MIN_PAIRS (3) seeds in common; below that the numbers are shown and no verdict is drawn.
- `holm`: the p-values of one family (one question of the study: orchestrator/report.py `study_pairs`); Holm's
  step-down correction holds the family-wise error at 5% under any dependence between them and rejects at
  least what Bonferroni rejects.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
BOOTSTRAP_SAMPLES = 10_000
ALPHA = 0.05
# No verdict on fewer pairs. With 2 the t-test has one degree of freedom and its spread rests on a single
# difference; GLUE scores are quantised (an accuracy on 500 dev examples moves in steps of 0.2 points), so two
# seeds with the same difference to a few hundredths are common and give p near 0 by coincidence (the demo
# had "fvt lower than frequency on RTE, -0.80 and -0.80, p < 0.001").
MIN_PAIRS = 3


def _rng(seed: int, key: str) -> np.random.Generator:
    # The cell's own stream: an interval does not change when other cells are added to or dropped from a report.
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def mean_interval(values: list[float], seed: int, key: str, level: float = LEVEL,
                  samples: int = BOOTSTRAP_SAMPLES) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (the seeds' scores); None below 2 values."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    idx = _rng(seed, key).integers(0, x.size, size=(samples, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@dataclass
class Paired:
    """Model a minus model b over the seeds both have a defined score for."""
    n: int
    mean_diff: float
    interval: tuple[float, float] | None   # bootstrap interval of the mean difference
    t_p: float                             # paired t-test, two-sided; NaN when the differences do not vary
    wilcoxon_p: float                      # exact signed-rank test, two-sided; NaN below 2 pairs
    holm_p: float = math.nan               # t_p after Holm's correction over the report's family


def paired(a: dict[int, float], b: dict[int, float], seed: int, key: str) -> Paired | None:
    """Paired comparison of two models' scores by fine-tuning seed; None with fewer than 2 common seeds."""
    from scipy.stats import ttest_rel, wilcoxon

    common = sorted(s for s in a if s in b and _finite(a[s]) and _finite(b[s]))
    if len(common) < 2:
        return None
    xa = np.array([a[s] for s in common], dtype=float)
    xb = np.array([b[s] for s in common], dtype=float)
    d = xa - xb
    tol = 1e-9 * max(1.0, float(np.abs(d).max()))
    if np.allclose(d, d[0], rtol=0, atol=tol):   # equal up to float noise
        # No spread: the t statistic is 0/0 (equal runs) or d/0; neither is evidence the test can weigh.
        zero = abs(d[0]) <= tol
        t_p = 1.0 if zero else math.nan
        w_p = 1.0 if zero else (2.0 / 2 ** len(d))
    else:
        t_p = float(ttest_rel(xa, xb).pvalue)
        w_p = float(wilcoxon(xa, xb, zero_method="wilcox", method="auto").pvalue)
    return Paired(n=len(common), mean_diff=float(d.mean()), interval=mean_interval(list(d), seed, key),
                  t_p=t_p, wilcoxon_p=w_p)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values in the input order; NaN stays NaN and is not counted in the family."""
    order = sorted((p, i) for i, p in enumerate(pvalues) if _finite(p))
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def verdict(c: Paired | None, alpha: float = ALPHA) -> str:
    """'higher' / 'lower' (a minus b, Holm-corrected t-test at alpha), 'not told apart', or 'too few seeds'
    (fewer than MIN_PAIRS pairs)."""
    if c is None or c.n < MIN_PAIRS:
        return "too few seeds"
    if _finite(c.holm_p) and c.holm_p < alpha:
        return "higher" if c.mean_diff > 0 else "lower"
    return "not told apart"


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _dspr_of(lengths: np.ndarray, spearman: np.ndarray, idx: np.ndarray, min_words: int, max_words: int
             ) -> np.ndarray:
    """DSpr of each resample (a row of sentence indices): per length the mean of its sentences' mean row
    Spearman, then the unweighted mean over the lengths min_words..max_words present in that resample."""
    rows, n = idx.shape
    span = max_words - min_words + 1
    lens, sp = lengths[idx], spearman[idx]
    ok = (lens >= min_words) & (lens <= max_words) & np.isfinite(sp)
    key = (np.arange(rows)[:, None] * span + (lens - min_words)).ravel()[ok.ravel()]
    total = np.bincount(key, weights=sp.ravel()[ok.ravel()], minlength=rows * span).reshape(rows, span)
    count = np.bincount(key, minlength=rows * span).reshape(rows, span)
    with np.errstate(invalid="ignore"):
        per_length = total / np.where(count > 0, count, 1)
    present = count > 0
    return np.where(present.any(1), (per_length * present).sum(1) / np.maximum(present.sum(1), 1), 0.0)


def sentence_paired(a: dict, b: dict, seed: int, key: str, min_words: int = 5, max_words: int = 50,
                    level: float = LEVEL, samples: int = BOOTSTRAP_SAMPLES) -> dict | None:
    """Two probes on the same test sentences (stages/probe.py `sentence_scores`), compared by a paired
    bootstrap over sentences: UUAS (corpus ratio of correct to gold edges) and DSpr (H&M's length-bucketed
    mean) of a minus b, with each difference's percentile interval. The seed's variation is not in it: one
    probe per model and layer is what the study trains. None when the sentences differ."""
    n = len(a["length"])
    if n == 0 or len(b["length"]) != n or not np.array_equal(a["length"], b["length"]) \
            or not np.array_equal(a["uuas_gold"], b["uuas_gold"]):
        return None
    rng = _rng(seed, key)
    u_diff, d_diff = [], []
    for start in range(0, samples, 1000):        # 1,000 resamples at a time: EWT's 2,077 test sentences
        idx = rng.integers(0, n, size=(min(1000, samples - start), n))
        gold = np.maximum(a["uuas_gold"][idx].sum(1), 1)
        u_diff.append((a["uuas_correct"][idx].sum(1) - b["uuas_correct"][idx].sum(1)) / gold)
        d_diff.append(_dspr_of(a["length"], a["spearman"], idx, min_words, max_words)
                      - _dspr_of(b["length"], b["spearman"], idx, min_words, max_words))
    every = np.arange(n)[None, :]
    q = [(1 - level) / 2, (1 + level) / 2]
    out = {}
    for name, diffs, point in (
            ("uuas", np.concatenate(u_diff),
             (a["uuas_correct"].sum() - b["uuas_correct"].sum()) / max(a["uuas_gold"].sum(), 1)),
            ("dspr", np.concatenate(d_diff),
             float(_dspr_of(a["length"], a["spearman"], every, min_words, max_words)[0]
                   - _dspr_of(b["length"], b["spearman"], every, min_words, max_words)[0]))):
        lo, hi = np.quantile(diffs, q)
        out[name] = (float(point), (float(lo), float(hi)))
    return out
