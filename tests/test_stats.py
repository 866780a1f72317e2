"""Seed statistics against independent computations: an exhaustive bootstrap, a t-test by hand, Holm by hand,
and the report's comparisons on hand-made DONE files (including pairs that must come out 'not told apart')."""
from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
from scipy import stats as sps

from orchestrator import stats


def _exact_percentile_interval(values, level=0.95):
    """Every one of the n^n equally likely resamples, enumerated: the bootstrap distribution without sampling."""
    means = sorted(np.mean(r) for r in itertools.product(values, repeat=len(values)))
    return np.quantile(means, [(1 - level) / 2, (1 + level) / 2])


def test_bootstrap_interval_matches_the_enumerated_bootstrap_distribution():
    values = [61.0, 64.5, 70.0, 58.0, 66.0]          # 3,125 resamples enumerated
    lo, hi = stats.mean_interval(values, seed=0, key="x")
    exact_lo, exact_hi = _exact_percentile_interval(values)
    # Monte Carlo error of a 2.5% quantile from 10,000 draws: well under half a point here
    assert abs(lo - exact_lo) < 0.4 and abs(hi - exact_hi) < 0.4
    assert lo < statistics.mean(values) < hi
    # seeded per cell: the same call gives the same interval, another cell name another stream
    assert stats.mean_interval(values, 0, "x") == (lo, hi)
    assert stats.mean_interval(values, 0, "y") != (lo, hi)
    assert stats.mean_interval([50.0], 0, "x") is None


def test_two_seed_interval_spans_the_two_values():
    lo, hi = stats.mean_interval([40.0, 50.0], 0, "k")
    assert (lo, hi) == (40.0, 50.0)   # resample means are 40, 45, 50 (a quarter, half, quarter)


def test_paired_t_test_by_hand_pairs_by_seed_not_by_order():
    a = {1: 80.0, 2: 82.0, 3: 79.0, 4: 85.0, 5: 81.0}
    b = {5: 80.0, 4: 82.0, 3: 78.0, 2: 80.0, 1: 78.0}          # same seeds, other insertion order
    c = stats.paired(a, b, seed=0, key="k")
    d = [2.0, 2.0, 1.0, 3.0, 1.0]
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(5))           # 4.8107
    p = 2 * sps.t.sf(abs(t), df=4)                                           # 0.0086
    assert c.n == 5 and c.mean_diff == pytest.approx(1.8)
    assert t == pytest.approx(4.8107, abs=1e-4) and c.t_p == pytest.approx(p, rel=1e-9)
    assert c.wilcoxon_p == pytest.approx(2 / 32)    # all five differences positive: the exact test's floor
    assert c.interval[0] > 0


def test_a_gap_inside_the_seed_noise_is_not_told_apart():
    a = {1: 70.0, 2: 60.0, 3: 75.0, 4: 65.0, 5: 72.0}
    b = {1: 68.0, 2: 66.0, 3: 70.0, 4: 67.0, 5: 71.0}                         # differences 2, -6, 5, -2, 1
    c = stats.paired(a, b, 0, "k")
    assert c.mean_diff == pytest.approx(0.0, abs=1e-12) and c.t_p == pytest.approx(1.0)
    c.holm_p = stats.holm([c.t_p])[0]
    assert stats.verdict(c) == "not told apart"
    assert c.interval[0] < 0 < c.interval[1]


def test_missing_and_undefined_seeds_drop_out_of_the_pairs():
    a = {1: 70.0, 2: math.nan, 3: 72.0, 4: 71.0}
    b = {1: 60.0, 2: 61.0, 3: 63.0}
    c = stats.paired(a, b, 0, "k")
    assert c.n == 2 and c.mean_diff == pytest.approx(9.5)      # seeds 1 and 3 only
    assert stats.paired({1: 1.0}, {1: 2.0}, 0, "k") is None
    assert stats.verdict(None) == "too few seeds"


def test_holm_by_hand():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> raised to 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.2, math.nan, 0.01])
    assert math.isnan(out[1]) and out == pytest.approx([0.2, out[1], 0.02], nan_ok=True)
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])   # 0.8 x 2 caps at 1; 0.9 is raised to it
    # never more conservative than Bonferroni
    ps = [0.001, 0.02, 0.013, 0.4]
    assert all(h <= min(1, 4 * p) + 1e-12 for h, p in zip(stats.holm(ps), ps))


def test_verdict_needs_the_corrected_p():
    a = {1: 80.0, 2: 82.0, 3: 79.0, 4: 85.0, 5: 81.0}
    b = {1: 78.0, 2: 80.0, 3: 78.0, 4: 82.0, 5: 80.0}
    c = stats.paired(a, b, 0, "k")
    c.holm_p = stats.holm([c.t_p])[0]
    assert stats.verdict(c) == "higher"
    c.holm_p = stats.holm([c.t_p] + [0.5] * 9)[0]   # the same test among ten: 0.086 > 0.05
    assert stats.verdict(c) == "not told apart"
    r = stats.paired(b, a, 0, "k")
    r.holm_p = r.t_p
    assert stats.verdict(r) == "lower"


# --- the report's statistics on hand-made DONE files ------------------------------------------------------

def _write_done(graph, node_id, metrics, flags=()):
    from stages.common import write_json

    write_json(graph.node_dir(node_id) / "settings.json", {"hash": graph.nodes[node_id].hash})
    write_json(graph.node_dir(node_id) / "DONE", {"metrics": metrics, "result": {"flags": list(flags)}})


def _graph(tmp_path, seeds=5):
    from orchestrator.config import REPO_ROOT, load_sweep
    from orchestrator.graph import build_graph

    return build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml",
                                  [f"output_dir={tmp_path}", f"finetune.seeds={list(range(1, seeds + 1))}"],
                                  base_dir=tmp_path))


KEYS = {"cola": "mcc", "rte": "accuracy", "sst2": "accuracy"}
SCRATCH = {"cola": [40, 42, 39, 45, 41], "rte": [58, 60, 57, 59, 61], "sst2": [75, 77, 74, 76, 78]}


def test_report_comparisons_holm_and_degenerate_runs(tmp_path):
    from orchestrator.report import comparisons, glue_by_seed, write_report

    g = _graph(tmp_path)
    gain = {"cola": [30, 31, 29, 33, 30], "rte": [2, 3, 1, 2, 4], "sst2": [9, 10, 8, 11, 9]}
    noise = [3, -4, 2, -3, 2]                                            # random-map: scratch + noise, mean 0
    for task, key in KEYS.items():
        for i, seed in enumerate(range(1, 6)):
            _write_done(g, f"finetune/en-scratch/{task}/seed{seed}", {key: SCRATCH[task][i] / 100})
            _write_done(g, f"finetune/S-to-en-frequency/{task}/seed{seed}",
                        {key: (SCRATCH[task][i] + gain[task][i]) / 100})
            _write_done(g, f"finetune/S-to-en-random-map/{task}/seed{seed}",
                        {key: (SCRATCH[task][i] + gain[task][i] + noise[i]) / 100},
                        flags=("one_class",) if (task, seed) == ("rte", 5) else ())
    comps = comparisons(g)
    by = {(c["a"], c["b"], c["column"]): c for c in comps}
    c = by[("S-to-en-frequency", "en-scratch", "AVG")]
    # by hand: the AVG difference of each seed is the mean of its three task gains
    d = [statistics.mean(gain[t][i] for t in KEYS) for i in range(5)]
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(5))
    assert c["result"].mean_diff == pytest.approx(statistics.mean(d))
    assert c["result"].t_p == pytest.approx(2 * sps.t.sf(t, 4))
    # its family is the transfer question; of its pairs only this one has runs, so Holm leaves its p as it is
    assert c["family"] == "GLUE AVG: transfer"
    assert [x["a"] for x in comps if x["family"] == c["family"] and x["result"]] == ["S-to-en-frequency"]
    assert c["result"].holm_p == pytest.approx(c["result"].t_p)
    assert c["verdict"] == "higher"
    # the per-task family holds all six task comparisons with runs (frequency and random-map vs scratch or each
    # other): each Holm p is at least its own p and at most 6x it
    tasks = [x for x in comps if x["family"] == "GLUE per task" and x["result"] is not None]
    assert len(tasks) == 6
    assert all(x["result"].t_p <= x["result"].holm_p <= min(1, 6 * x["result"].t_p) + 1e-12 for x in tasks)
    assert min(x["result"].holm_p for x in tasks) == pytest.approx(6 * min(x["result"].t_p for x in tasks))
    # the control differs from frequency by seed noise only: not told apart; the flagged seed is left out
    r = by[("S-to-en-frequency", "S-to-en-random-map", "AVG")]
    assert r["verdict"] == "not told apart" and r["result"].n == 4
    assert by[("S-to-en-frequency", "S-to-en-random-map", "RTE")]["result"].n == 4
    # pairs whose models have no finished runs are still listed, as too few seeds
    assert by[("S-to-en-fvt", "S-to-en-frequency", "AVG")]["verdict"] == "too few seeds"
    cols, models = glue_by_seed(g)
    assert cols == ["CoLA", "RTE", "SST-2", "AVG"] and 5 not in models["S-to-en-random-map"]["cols"]["AVG"]
    text, folder = write_report(g)
    rm_rte = statistics.mean(SCRATCH["rte"][i] + gain["rte"][i] + noise[i] for i in range(4))
    assert f"{rm_rte:.2f}† (4/5)" in text                      # Table 2: the mean without the degenerate run
    assert "finetune/S-to-en-random-map/rte/seed5: run: one_class" in text
    assert "1. Transferred models beat the English model from scratch on GLUE" in text and "holds (+" in text
    assert (folder / "comparisons.csv").read_text().splitlines()[0].startswith("family,a,b,column,n,a - b,lo,hi")
    seeds = (folder / "glue_seeds.csv").read_text().splitlines()
    # 3 models with runs x (3 tasks + AVG) x 5 seeds, less random-map's flagged RTE seed and its AVG
    assert seeds[0] == "Lang,Vocab,column,seed,score" and len(seeds) - 1 == 3 * 4 * 5 - 1
    assert "S→en,en (random-map),RTE,5,nan" in seeds and (folder / "seed_spread.png").stat().st_size > 10_000
    rows = (folder / "table2_glue_intervals.csv").read_text().splitlines()
    assert rows[0].startswith("Lang,Vocab,CoLA mean,CoLA lo,CoLA hi,CoLA n")
    scratch = next(x for x in rows if x.startswith("en,en,")).split(",")
    lo, hi = _exact_percentile_interval(SCRATCH["cola"])
    assert float(scratch[2]) == pytest.approx(statistics.mean(SCRATCH["cola"])) and scratch[5] == "5/5"
    assert float(scratch[3]) == pytest.approx(lo, abs=0.4) and float(scratch[4]) == pytest.approx(hi, abs=0.4)


def test_forgetting_and_wic_findings(tmp_path):
    from orchestrator.report import comparisons, findings

    g = _graph(tmp_path, seeds=2)
    for seed, (src, moved) in zip((1, 2), ((0.80, 0.60), (0.82, 0.61))):
        _write_done(g, f"forget/S/scandisent-S/seed{seed}", {"accuracy": src})
        _write_done(g, f"forget/S-to-en-frequency/scandisent-S/seed{seed}", {"accuracy": moved})
        _write_done(g, f"wic/S/seed{seed}", {"accuracy": 0.50 + seed / 100})
        _write_done(g, f"wic/S-to-en-frequency/seed{seed}", {"accuracy": 0.52 - seed / 100})
    comps = comparisons(g)
    f = next(c for c in comps if c["family"] == "forgetting" and c["column"] == "scandisent-S")
    assert f["result"].mean_diff == pytest.approx(-20.5)
    text = findings(g, comps)
    assert "4. The source language is forgotten" in text and "scandisent-S" in text
    # 2 seeds, one family member: t-test on differences -20, -21 (df 1)
    d = [-20.0, -21.0]
    t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(2))
    assert f["result"].t_p == pytest.approx(2 * sps.t.sf(abs(t), 1))
    assert "3. Semantics is retained" in text and "near chance" in text


def test_two_seeds_get_numbers_but_no_verdict_and_float_noise_is_no_spread():
    # Quantised scores: both seeds 0.8 points apart, up to float noise -> a t statistic of ~1e15 if trusted.
    a = {1: 60.3, 2: 60.1}
    b = {1: 60.3 - 0.8, 2: 60.1 - 0.8}
    c = stats.paired(a, b, 0, "k")
    assert math.isnan(c.t_p) and c.mean_diff == pytest.approx(0.8)
    # a real two-seed test with a tiny p still gets no verdict: one degree of freedom
    c2 = stats.paired({1: 60.0, 2: 61.0}, {1: 50.0, 2: 50.9}, 0, "k")
    c2.holm_p = c2.t_p
    assert c2.t_p < 0.05 and stats.verdict(c2) == "too few seeds"


def test_equal_compute_scratch_is_its_own_family(tmp_path):
    """scratch_budget: match: [S->en][en] against the [en][en] trained on its tokens plus S's, a family of its
    own (the transfer family's Holm is unchanged), and a line under finding 1."""
    from orchestrator.config import REPO_ROOT, load_sweep
    from orchestrator.graph import build_graph
    from orchestrator.report import comparisons, write_report

    g = build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml", [f"output_dir={tmp_path}",
                                                                      "experiments.scratch_budget=match"],
                               base_dir=tmp_path))
    for task, key in KEYS.items():
        for i, seed in enumerate((1, 2, 3)):
            _write_done(g, f"finetune/S-to-en-frequency/{task}/seed{seed}", {key: (SCRATCH[task][i] + 2 * i) / 100})
            _write_done(g, f"finetune/en-scratch-match-S/{task}/seed{seed}", {key: SCRATCH[task][i] / 100})
    c = next(x for x in comparisons(g) if x["b"] == "en-scratch-match-S" and x["column"] == "AVG")
    # per seed the AVG gap is 0, 2, 4 points: mean 2, t = 2 / (2 / sqrt 3), two-sided p from t with 2 df
    assert c["family"] == "GLUE AVG: equal compute" and c["result"].mean_diff == pytest.approx(2.0)
    assert c["result"].t_p == pytest.approx(sps.ttest_rel([2, 4, 6], [2, 2, 2]).pvalue)
    assert c["verdict"] == "not told apart"        # p 0.23
    text, _ = write_report(g)
    assert "At equal compute ([en][en] trained on [S→en][en]'s English tokens plus [S]'s own pretraining): " \
           "cannot be told apart at 3 seeds" in text
    assert "equal compute, a fourth" in text


def test_any_target_language_names_the_keys_rows_and_findings(tmp_path):
    """target.language: sv moves S to Swedish: keys S-to-sv-*, sv-scratch, the Swedish vocabulary's node, rows
    and findings in [S→sv][sv]; the study's pairs are found under those keys."""
    from orchestrator.config import REPO_ROOT, load_sweep
    from orchestrator.graph import build_graph
    from orchestrator.report import comparisons, write_report

    g = build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml", [
        f"output_dir={tmp_path}", "target.language=sv", "probe=null", "wic=null", "forgetting=null",
        "winogender=null", "learning_curve=null"], base_dir=tmp_path))
    assert {"pretrain/S-to-sv-frequency", "pretrain/sv-scratch", "pretrain/sv-scratch-match-S",
            "tokenizer/sv-1000-cased"} <= set(g.nodes)
    assert not any("-to-en-" in n or "en-scratch" in n for n in g.nodes)
    assert g.nodes["pretrain/S-to-sv-random-map"].row == ("S→sv", "sv (random-map)")
    assert g.nodes["pretrain/sv-scratch"].row == ("sv", "sv")
    for task, key in KEYS.items():
        for i, seed in enumerate((1, 2, 3)):
            _write_done(g, f"finetune/S-to-sv-frequency/{task}/seed{seed}", {key: (SCRATCH[task][i] + 9) / 100})
            _write_done(g, f"finetune/sv-scratch/{task}/seed{seed}", {key: SCRATCH[task][i] / 100})
    c = next(x for x in comparisons(g) if x["a"] == "S-to-sv-frequency" and x["b"] == "sv-scratch"
             and x["column"] == "AVG")
    assert c["family"] == "GLUE AVG: transfer" and c["result"].mean_diff == pytest.approx(9.0)
    text, _ = write_report(g)
    assert "1. Transferred models beat the [sv] model from scratch on GLUE (AVG, [S→sv][sv] − [sv][sv]): " in text
    assert "| sv | sv |" in text and "| S→sv | sv |" in text


def _exact_sentence_bootstrap(a, b, stat):
    """Every one of the n^n equally likely resamples of sentence indices, enumerated."""
    n = len(a["length"])
    diffs = sorted(stat(a, list(r)) - stat(b, list(r)) for r in itertools.product(range(n), repeat=n))
    return np.quantile(diffs, [0.025, 0.975])


def test_sentence_bootstrap_of_uuas_and_dspr_against_the_enumerated_distribution():
    """Two probes on the same 5 sentences: UUAS as the ratio of summed correct to gold edges, DSpr as the mean
    over lengths of the per-length mean of each sentence's mean row Spearman (lengths 5..50 only), both
    recomputed by hand for every resample."""
    length = np.array([5, 5, 6, 7, 3])       # the 3-word sentence counts for UUAS, not for DSpr
    a = {"uuas_correct": np.array([3, 4, 2, 5, 2]), "uuas_gold": np.array([4, 4, 5, 6, 2]), "length": length,
         "spearman": np.array([0.9, 0.7, 0.8, 0.6, 0.5])}
    b = {"uuas_correct": np.array([2, 4, 1, 3, 2]), "uuas_gold": a["uuas_gold"], "length": length,
         "spearman": np.array([0.5, 0.6, 0.7, 0.2, 0.1])}

    def uuas(s, idx):
        return sum(s["uuas_correct"][i] for i in idx) / sum(s["uuas_gold"][i] for i in idx)

    def dspr(s, idx):
        by = {}
        for i in idx:
            if 5 <= s["length"][i] <= 50:
                by.setdefault(s["length"][i], []).append(s["spearman"][i])
        return statistics.mean(statistics.mean(v) for v in by.values()) if by else 0.0

    r = stats.sentence_paired(a, b, seed=0, key="t", samples=20_000)
    assert r["uuas"][0] == pytest.approx(uuas(a, range(5)) - uuas(b, range(5)))       # 16/21 - 12/21
    assert r["dspr"][0] == pytest.approx(dspr(a, range(5)) - dspr(b, range(5)))       # (0.8 + 0.8 + 0.6)/3 - ...
    for name, stat in (("uuas", uuas), ("dspr", dspr)):
        lo, hi = _exact_sentence_bootstrap(a, b, stat)
        assert r[name][1] == pytest.approx((lo, hi), abs=0.02), name
    other = dict(b, length=np.array([5, 5, 6, 7, 4]))
    assert stats.sentence_paired(a, other, seed=0, key="t") is None      # not the same sentences


def test_syntax_finding_gets_a_sentence_bootstrap_interval(tmp_path):
    """Finding 2 with the probes' per-sentence scores: the difference and its 95% interval over sentences, and
    the verdict from the intervals ("holds" when both exclude 0 upwards); without the files, the old line."""
    from orchestrator.config import REPO_ROOT, load_sweep
    from orchestrator.graph import build_graph
    from orchestrator.report import write_report

    g = build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml", [f"output_dir={tmp_path}"], base_dir=tmp_path))
    rng = np.random.default_rng(0)
    length = rng.integers(5, 12, size=40)
    gold = length - 1
    scores = {"S": (rng.integers(1, 3, size=40), rng.uniform(0.2, 0.4, size=40)),
              "S-to-en-frequency": (None, None)}
    scores["S-to-en-frequency"] = (scores["S"][0] + 2, scores["S"][1] + 0.3)    # better on every sentence
    for model, (correct, spearman) in scores.items():
        by = {}
        for n, sp in zip(length, spearman):
            by.setdefault(int(n), []).append(sp)
        u, d = correct.sum() / gold.sum(), float(np.mean([np.mean(v) for v in by.values()]))
        nid = f"probe/{model}/layer2"
        _write_done(g, nid, {"uuas": u, "dspr": d, "dev_uuas": u, "dev_dspr": d})
        np.savez(g.node_dir(nid) / "test_sentences.npz", uuas_correct=correct, uuas_gold=gold, length=length,
                 spearman=spearman)
    text, _ = write_report(g)
    du = 100 * 80 / gold.sum()                 # two more correct edges in each of 40 sentences
    line = next(x for x in text.splitlines() if x.startswith("2. Syntax"))
    assert line.startswith(f"2. Syntax is learned during transfer (structural probe, [S→en][en] − [S]): holds: "
                           f"UUAS {du:+.2f} [") and "DSpr +30.00 [" in line
    assert "paired bootstrap over the 40 test sentences" in line
    (g.node_dir("probe/S/layer2") / "test_sentences.npz").unlink()
    text, _ = write_report(g)
    assert "holds in direction" in text and "no per-sentence scores" in text
