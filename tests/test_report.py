"""Table 2 / Table 7 shapes from DONE files, checked against the paper's own numbers and `statistics`."""
from __future__ import annotations

import csv
import json
import math
import shutil
import statistics

import pytest

from orchestrator.config import REPO_ROOT, load_sweep
from orchestrator.graph import build_graph
from orchestrator.report import tables, write_report
from stages.common import write_json

# The paper's Table 2 row [en][en]; its AVG, 72.97, is the mean of these nine columns.
EN_EN = {"cola": {"mcc": 25.68}, "mnli": {"m_accuracy": 76.21, "mm_accuracy": 76.13}, "mrpc": {"f1": 82.69},
         "qnli": {"accuracy": 85.86}, "qqp": {"f1": 85.21}, "rte": {"accuracy": 54.21}, "sst2": {"accuracy": 88.04},
         "stsb": {"spearman": 82.71}}


def _done(graph, node_id, metrics):
    write_json(graph.node_dir(node_id) / "settings.json", {"hash": graph.nodes[node_id].hash})
    write_json(graph.node_dir(node_id) / "DONE", {"metrics": metrics})


def test_table2_reproduces_the_papers_average(tmp_path):
    g = build_graph(load_sweep(REPO_ROOT / "configs" / "paper.yaml",
                               [f"output_dir={tmp_path}", "finetune.seeds=[1]"], base_dir=tmp_path))
    for task, m in EN_EN.items():
        _done(g, f"finetune/en-scratch/{task}/seed1", {k: v / 100 for k, v in m.items()})
    mean_rows, _ = tables(g)
    assert mean_rows[0] == ["Lang", "Vocab", "CoLA", "MNLI-m", "MNLI-mm", "MRPC", "QNLI", "QQP", "RTE", "SST-2",
                            "STS-B", "AVG"]
    row = next(r for r in mean_rows if r[:2] == ["en", "en"])
    assert [round(v, 2) for v in row[2:-1]] == [25.68, 76.21, 76.13, 82.69, 85.86, 85.21, 54.21, 88.04, 82.71]
    assert round(row[-1], 2) == 72.97
    unfinished = next(r for r in mean_rows if r[:2] == ["sv→en", "en"])
    assert unfinished[2:] == [None] * 10  # nothing finished: no numbers, no average


def test_mean_and_sample_std_over_seeds(tmp_path):
    g = build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml", [f"output_dir={tmp_path}", "finetune.seeds=[1,2]"],
                               base_dir=tmp_path))
    scores = {"cola": [0.10, 0.30], "rte": [0.55, 0.61], "sst2": [0.70, 0.80]}
    keys = {"cola": "mcc", "rte": "accuracy", "sst2": "accuracy"}
    for task, vals in scores.items():
        for seed, v in zip((1, 2), vals):
            _done(g, f"finetune/S-to-en-frequency/{task}/seed{seed}", {keys[task]: v})
    # one seed of one task of another model: its mean shows, its AVG does not (incomplete)
    _done(g, "finetune/S/cola/seed1", {"mcc": 0.2})
    mean_rows, std_rows = tables(g)
    assert mean_rows[0] == ["Lang", "Vocab", "CoLA", "RTE", "SST-2", "AVG"]
    row = next(r for r in mean_rows if r[:2] == ["S→en", "en"])
    expected = [100 * statistics.mean(scores[t]) for t in ("cola", "rte", "sst2")]
    assert [round(v, 6) for v in row[2:5]] == [round(v, 6) for v in expected]
    assert round(row[5], 6) == round(statistics.mean(expected), 6)
    srow = next(r for r in std_rows if r[:2] == ["S→en", "en"])
    assert [round(v, 6) for v in srow[2:]] == [round(100 * statistics.stdev(scores[t]), 6) for t in ("cola", "rte", "sst2")]
    s_row = next(r for r in mean_rows if r[:2] == ["S", "S"])
    assert round(s_row[2], 6) == 20.0 and s_row[-1] is None
    text, folder = write_report(g)
    assert (folder / "table2_glue_mean.csv").read_text().splitlines()[0] == "Lang,Vocab,CoLA,RTE,SST-2,AVG"
    assert "| S→en | en (random-map) | – | – | – | – |" in text


def _demo_graph(tmp_path):
    return build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml", [f"output_dir={tmp_path}"], base_dir=tmp_path))


def test_table3_takes_the_layer_chosen_on_dev_and_reports_its_test_score(tmp_path):
    from orchestrator.report import probing_tables

    g = _demo_graph(tmp_path)
    # layer 1 is best on dev UUAS, layer 2 best on test UUAS: the table must report layer 1's test value
    probes = {0: (0.40, 0.50, 0.41, 0.52), 1: (0.60, 0.70, 0.58, 0.69), 2: (0.55, 0.75, 0.65, 0.74)}
    for layer, (dev_u, dev_d, u, d) in probes.items():
        _done(g, f"probe/S-to-en-frequency/layer{layer}", {"dev_uuas": dev_u, "dev_dspr": dev_d, "uuas": u, "dspr": d})
    for seed, acc in ((1, 0.55), (2, 0.61)):
        _done(g, f"wic/S-to-en-frequency/seed{seed}", {"accuracy": acc})
    # DSpr without punctuation lives in the probe's result (the runner copies only uuas / dspr into metrics):
    # layer 0 is best on its dev score, unlike H&M's DSpr, so a mixed-up column would show another number.
    nopunct = {0: (0.90, 0.88), 1: (0.80, 0.79), 2: (0.85, 0.86)}   # (dev, test)
    for layer, (dev, test) in nopunct.items():
        d = g.node_dir(f"probe/S-to-en-frequency/layer{layer}") / "DONE"
        done = json.loads(d.read_text())
        done["result"] = {"dev_dspr_nopunct": dev, "test_dspr_nopunct": test}
        d.write_text(json.dumps(done))
    t3, t11, per_layer = probing_tables(g)
    # Two columns more than the paper's Table 3 (issue 13): DSpr without punctuation, under its own label.
    assert t3[0] == ["Lang", "Vocab", "UUAS", "DSpr", "UUAS layer", "DSpr layer", "WiC (acc)",
                     "DSpr (no punct)", "DSpr (no punct) layer"]
    row = next(r for r in t3 if r[:2] == ["S→en", "en"])
    assert row[2] == pytest.approx(58.0) and row[4] == 1      # UUAS from dev-best layer 1, not test-best 2
    assert row[3] == pytest.approx(74.0) and row[5] == 2      # DSpr: layer 2 is best on dev
    assert row[6] == pytest.approx(statistics.mean([55, 61]))
    assert row[7] == pytest.approx(88.0) and row[8] == 0      # DSpr (no punct): its own dev-best layer, 0
    srow = next(r for r in t11 if r[:2] == ["S→en", "en"])
    assert srow[2] == pytest.approx(statistics.stdev([55, 61])) and srow[3] == 2
    assert per_layer[0][2:] == ["L0 UUAS", "L1 UUAS", "L2 UUAS", "L0 DSpr", "L1 DSpr", "L2 DSpr",
                                "L0 DSpr (no punct)", "L1 DSpr (no punct)", "L2 DSpr (no punct)"]
    lrow = next(r for r in per_layer if r[:2] == ["S→en", "en"])
    assert lrow[2:] == pytest.approx([41.0, 58.0, 65.0, 52.0, 69.0, 74.0, 88.0, 79.0, 86.0])
    assert next(r for r in t3 if r[:2] == ["en", "en"])[2:] == [None] * 7


def test_forgetting_tables_and_figure3_differences(tmp_path):
    from orchestrator.report import figure3_data, forgetting_tables

    g = _demo_graph(tmp_path)
    acc = {"S": (0.90, 0.70), "S-to-en-keep": (0.80, 0.75), "S-to-en-frequency": (0.70, 0.85),
           "S-to-en-random-map": (0.60, 0.80)}  # (scandisent-S, scandisent-en), same on both seeds
    for model, (src, en) in acc.items():
        for seed in (1, 2):
            _done(g, f"forget/{model}/scandisent-S/seed{seed}", {"accuracy": src})
            _done(g, f"forget/{model}/scandisent-en/seed{seed}", {"accuracy": en})
    _done(g, "forget/S/stsb-S/seed1", {"pearson": 0.8, "spearman": 0.7})
    _done(g, "forget/S/stsb-S/seed2", {"pearson": 0.6, "spearman": 0.5})
    t = forgetting_tables(g)["S"]
    assert t["table8"][0] == ["Lang", "Vocab", "en", "S"]          # English first, as the paper's Table 8
    assert next(r for r in t["table8"] if r[:2] == ["S", "S"])[2:] == pytest.approx([70.0, 90.0])
    assert next(r for r in t["table9"] if r[:2] == ["S", "S"])[2:] == pytest.approx([70.0, 60.0])
    f3 = figure3_data(g)
    mean_s = statistics.mean(100 * v[0] for v in acc.values())
    row = next(r for r in f3 if r[1] == "S" and r[2:4] == ["S→en", "en"])
    assert row[4] == pytest.approx(100 * 0.70 - mean_s)
    assert sum(r[4] for r in f3[1:] if r[1] == "en") == pytest.approx(0.0)
    text, folder = write_report(g)
    assert (folder / "figure3_scandisent.png").stat().st_size > 1000
    assert "Table 8 shape" in text and (folder / "table9_stsb_S.csv").exists()


def test_winogender_table_and_figure2_max_gain(tmp_path):
    from orchestrator.report import figure2_data, winogender_table

    g = _demo_graph(tmp_path)
    for seed, (gps, acc) in ((1, (1.0, 0.5)), (2, (0.9, 0.52))):
        _done(g, f"winogender/S-to-en-keep/seed{seed}", {"gender_parity": gps, "accuracy": acc})
    row = next(r for r in winogender_table(g) if r[:2] == ["S→en", "S"])
    assert row[2:] == pytest.approx([95.0, 51.0, 2])
    glue = {"en-scratch": {"cola": 0.10, "rte": 0.50, "sst2": 0.70},
            "S-to-en-frequency": {"cola": 0.30, "rte": 0.52, "sst2": 0.69},
            "S-to-en-keep": {"cola": 0.20, "rte": 0.58, "sst2": 0.68}}
    keys = {"cola": "mcc", "rte": "accuracy", "sst2": "accuracy"}
    for model, scores in glue.items():
        for task, v in scores.items():
            for seed in (1, 2):
                _done(g, f"finetune/{model}/{task}/seed{seed}", {keys[task]: v})
    f2 = {r[1]: r[2] for r in figure2_data(g)[1:]}
    assert f2 == pytest.approx({"CoLA": 20.0, "RTE": 8.0, "SST-2": -1.0})  # the better of frequency and keep
    _, folder = write_report(g)
    assert (folder / "figure2_max_gain.png").stat().st_size > 1000


def test_figure2_mnli_gain_is_the_mean_of_matched_and_mismatched_per_model_then_the_best_model(tmp_path):
    """MNLI's finetune result holds two numbers (stages/glue.py: dev splits "m" and "mm", so the keys are
    m_accuracy and mm_accuracy); Figure 2 shows one MNLI bar: per [lang->en] model the mean of its m and mm
    gains over [en][en], then the larger of the two models. The values are chosen so that every plausible
    mistake gives another number: m only 4.0, mm only 8.0, max per column then mean 6.0, random-map 25.0."""
    from orchestrator.report import figure2_data

    g = build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml",
                               [f"output_dir={tmp_path}", "finetune.tasks=[mnli, rte]", "learning_curve=null"],
                               base_dir=tmp_path))
    # (m_accuracy, mm_accuracy, rte accuracy) per seed
    runs = {"en-scratch": [(0.69, 0.73, 0.50), (0.71, 0.71, 0.54)],          # means 70, 72, 52
            "S-to-en-frequency": [(0.74, 0.70, 0.55), (0.74, 0.72, 0.55)],   # means 74, 71, 55
            "S-to-en-keep": [(0.68, 0.80, 0.49), (0.70, 0.80, 0.51)],        # means 69, 80, 50
            "S-to-en-random-map": [(0.95, 0.97, 0.90), (0.95, 0.97, 0.90)]}  # a control: never in Figure 2
    for model, seeds in runs.items():
        for seed, (m, mm, rte) in zip((1, 2), seeds):
            _done(g, f"finetune/{model}/mnli/seed{seed}", {"m_accuracy": m, "mm_accuracy": mm})
            _done(g, f"finetune/{model}/rte/seed{seed}", {"accuracy": rte})
    mean_rows, _ = tables(g)
    assert mean_rows[0] == ["Lang", "Vocab", "MNLI-m", "MNLI-mm", "RTE", "AVG"]
    f2 = figure2_data(g)
    assert f2[0] == ["source", "task", "max gain", "lo", "hi", "model"]
    assert [r[:2] for r in f2[1:]] == [["S", "MNLI"], ["S", "RTE"]]   # one MNLI bar, not an m and an mm bar
    got = {r[1]: r[2] for r in f2[1:]}
    frequency_mnli = ((74 - 70) + (71 - 72)) / 2   # 1.5
    keep_mnli = ((69 - 70) + (80 - 72)) / 2        # 3.5
    assert got["MNLI"] == pytest.approx(max(frequency_mnli, keep_mnli))   # 3.5: keep's
    assert got["RTE"] == pytest.approx(max(55 - 52, 50 - 52))              # 3.0: frequency's
    # Its error bar: frequency's RTE gain per seed is 55 - 50 = 5 and 55 - 54 = 1; resampling two seeds, a
    # quarter of the resamples are (1, 1) and a quarter (5, 5), so the 95% percentile interval is [1, 5].
    rte = next(r for r in f2[1:] if r[1] == "RTE")
    assert rte[3:] == [pytest.approx(1.0), pytest.approx(5.0), "[S→en] [en]"]
    # Without [lang->en][lang]'s mm result, MNLI's gain is the frequency model's alone (not keep's m alone: 29).
    for seed in (1, 2):
        shutil.rmtree(g.node_dir(f"finetune/S-to-en-keep/mnli/seed{seed}"))
        _done(g, f"finetune/S-to-en-keep/mnli/seed{seed}", {"m_accuracy": 0.99})
    got = {r[1]: r[2] for r in figure2_data(g)[1:]}
    assert got["MNLI"] == pytest.approx(frequency_mnli)


# --- undefined metrics (NaN: e.g. the correlation of constant predictions) --------------------------------
NAN = float("nan")


def _nan_in_tables(text: str) -> bool:
    """Whether a markdown table row of the report shows a raw nan (the legend may name it; a cell must not)."""
    return any("nan" in line.lower() for line in text.splitlines() if line.startswith("|"))


def test_undefined_metrics_show_nd_partial_means_are_marked_and_degenerate_runs_are_listed(tmp_path):
    """A degenerate run's undefined metric is neither 0 nor silently dropped: a mean over the seeds whose
    metric is defined carries the count (k/n), a cell with no defined seed shows n/d, and report.md lists
    the runs. Expected numbers are worked out here with `statistics` over the defined seeds only."""
    g = build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml",
                               [f"output_dir={tmp_path}", "finetune.tasks=[rte, stsb]", "finetune.seeds=[1, 2, 3]",
                                "learning_curve=null"],
                               base_dir=tmp_path))
    rte = {"en-scratch": [0.50, 0.52, 0.54], "S-to-en-frequency": [0.50, 0.60, 0.70], "S-to-en-keep": [0.6] * 3}
    stsb = {"en-scratch": [NAN, NAN, NAN],              # every seed constant: undefined
            "S-to-en-frequency": [0.80, NAN, 0.60],     # one degenerate seed of three
            "S-to-en-keep": [0.70, 0.70, 0.70]}
    for model in rte:
        for seed in (1, 2, 3):
            _done(g, f"finetune/{model}/rte/seed{seed}", {"accuracy": rte[model][seed - 1]})
            rho = stsb[model][seed - 1]
            node = f"finetune/{model}/stsb/seed{seed}"
            _done(g, node, {"pearson": rho, "spearman": rho})
            if math.isnan(rho):  # what stages/glue.py writes for a constant prediction vector
                write_json(g.node_dir(node) / "eval_results.json", {"degenerate": ["pearson", "spearman"]})
    # JSON null is undefined too (not 0), and a flag without a NaN value is listed as well.
    for seed, rho in ((1, None), (2, 0.4), (3, 0.5)):
        _done(g, f"finetune/S/stsb/seed{seed}", {"pearson": rho, "spearman": rho})
    # The fine-tune stage's own flag: FinetuneResult.degenerate, which DONE's "result" holds.
    write_json(g.node_dir("finetune/S/rte/seed1") / "settings.json", {"hash": g.nodes["finetune/S/rte/seed1"].hash})
    write_json(g.node_dir("finetune/S/rte/seed1") / "DONE",
               {"metrics": {"accuracy": 0.5}, "result": {"degenerate": ["accuracy"]}})

    mean_rows, std_rows = tables(g)
    assert mean_rows[0] == ["Lang", "Vocab", "RTE", "STS-B", "AVG"]
    freq = next(r for r in mean_rows if r[:2] == ["S→en", "en"])
    assert freq[2] == pytest.approx(60.0)
    assert freq[3] == pytest.approx(statistics.mean([80, 60])) and (freq[3].defined, freq[3].runs) == (2, 3)
    assert freq[4] == pytest.approx(statistics.mean([60, 70])) and (freq[4].defined, freq[4].runs) == (5, 6)
    scratch = next(r for r in mean_rows if r[:2] == ["en", "en"])
    assert scratch[2] == pytest.approx(52.0) and math.isnan(scratch[3]) and math.isnan(scratch[4])
    s_row = next(r for r in mean_rows if r[:2] == ["S", "S"])
    assert s_row[3] == pytest.approx(45.0) and (s_row[3].defined, s_row[3].runs) == (2, 3)
    fstd = next(r for r in std_rows if r[:2] == ["S→en", "en"])
    assert fstd[3] == pytest.approx(statistics.stdev([80, 60])) and fstd[3].defined == 2
    assert math.isnan(next(r for r in std_rows if r[:2] == ["en", "en"])[3])

    from orchestrator.report import degenerate_runs, figure2_data
    f2 = {r[1]: r[2] for r in figure2_data(g)[1:]}
    assert f2 == pytest.approx({"RTE": 60.0 - 52.0})  # [en][en]'s STS-B is undefined: no STS-B gain to draw
    runs = dict(degenerate_runs(g))
    assert runs == {"finetune/en-scratch/stsb/seed1": ["pearson", "spearman"],
                    "finetune/en-scratch/stsb/seed2": ["pearson", "spearman"],
                    "finetune/en-scratch/stsb/seed3": ["pearson", "spearman"],
                    "finetune/S-to-en-frequency/stsb/seed2": ["pearson", "spearman"],
                    "finetune/S/stsb/seed1": ["pearson", "spearman"],
                    "finetune/S/rte/seed1": ["accuracy"]}

    text, folder = write_report(g)
    assert "| S→en | en | 60.00 | 70.00† (2/3) | 65.00† (5/6) |" in text
    assert "| en | en | 52.00 | n/d | n/d |" in text
    assert not _nan_in_tables(text)
    assert "Degenerate runs: 6 run(s) degenerate" in text
    assert "- finetune/S-to-en-frequency/stsb/seed2: pearson, spearman" in text
    assert "n/d undefined" in text and "† (k/n)" in text   # the legend explains the markers
    csv_rows = (folder / "table2_glue_mean.csv").read_text().splitlines()
    assert "en,en,52.0,nan,nan" in csv_rows  # CSV: plain numbers, nan = undefined (empty = not finished)


def test_undefined_probe_wic_forgetting_and_winogender_scores(tmp_path):
    from orchestrator.report import figure3_data, forgetting_tables, probing_tables, winogender_table

    g = _demo_graph(tmp_path)
    # Probe: layer 2's dev UUAS is undefined, so the best defined layer (1) is chosen, never the NaN one;
    # a model whose every layer is undefined shows n/d, not 0 and not "not finished".
    for layer, dev_u in ((0, 0.4), (1, 0.6), (2, NAN)):
        _done(g, f"probe/S-to-en-frequency/layer{layer}",
              {"dev_uuas": dev_u, "uuas": dev_u - 0.01, "dev_dspr": 0.5, "dspr": 0.5})
        _done(g, f"probe/S/layer{layer}", {"dev_uuas": NAN, "uuas": NAN, "dev_dspr": NAN, "dspr": NAN})
    for seed, acc in ((1, 0.55), (2, NAN)):
        _done(g, f"wic/S-to-en-frequency/seed{seed}", {"accuracy": acc})
    t3, t11, per_layer = probing_tables(g)
    row = next(r for r in t3 if r[:2] == ["S→en", "en"])
    assert row[2] == pytest.approx(59.0) and row[4] == 1
    assert row[6] == pytest.approx(55.0) and (row[6].defined, row[6].runs) == (1, 2)
    s = next(r for r in t3 if r[:2] == ["S", "S"])
    assert math.isnan(s[2]) and s[4] is None and math.isnan(s[3])
    assert math.isnan(next(r for r in t11 if r[:2] == ["S→en", "en"])[2])   # std of one defined seed: n/d
    lrow = next(r for r in per_layer if r[:2] == ["S→en", "en"])
    assert lrow[2:4] == pytest.approx([39.0, 59.0]) and math.isnan(lrow[4])

    # Forgetting: Table 9 means over the defined seed; Figure 3 leaves an undefined accuracy out of its mean.
    _done(g, "forget/S/stsb-S/seed1", {"pearson": NAN, "spearman": NAN})
    _done(g, "forget/S/stsb-S/seed2", {"pearson": 0.6, "spearman": 0.5})
    acc = {"S": 0.9, "S-to-en-keep": 0.8, "S-to-en-frequency": 0.7, "S-to-en-random-map": NAN}
    for model, a in acc.items():
        for seed in (1, 2):
            _done(g, f"forget/{model}/scandisent-S/seed{seed}", {"accuracy": a})
    t9 = forgetting_tables(g)["S"]["table9"]
    cells = next(r for r in t9 if r[:2] == ["S", "S"])[2:]
    assert cells == pytest.approx([60.0, 50.0]) and [(c.defined, c.runs) for c in cells] == [(1, 2), (1, 2)]
    f3 = [r for r in figure3_data(g)[1:] if r[1] == "S"]
    assert len(f3) == 3 and sum(r[4] for r in f3) == pytest.approx(0.0)
    assert next(r for r in f3 if r[2:4] == ["S", "S"])[4] == pytest.approx(90 - statistics.mean([90, 80, 70]))

    # Winogender: an undefined parity score is n/d; accuracy is still shown.
    for seed in (1, 2):
        _done(g, f"winogender/S-to-en-keep/seed{seed}", {"gender_parity": NAN, "accuracy": 0.5})
    w = next(r for r in winogender_table(g) if r[:2] == ["S→en", "S"])
    assert math.isnan(w[2]) and w[3:] == pytest.approx([50.0, 2])

    text, _ = write_report(g)
    assert not _nan_in_tables(text) and "n/d" in text
    assert "probe/S/layer0: dev_dspr, dev_uuas, dspr, uuas" in text
    assert "DSpr is theirs, over every word" in text


def test_reattached_models_split_the_drop_into_the_bodys_and_the_embeddings(tmp_path):
    from scipy.stats import ttest_rel

    from orchestrator.report import comparisons, figure3_data, forgetting_tables, reattach_table

    g = build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml",
                               [f"output_dir={tmp_path}", "forgetting.reattach=true"], base_dir=tmp_path))
    # scandisent-S accuracy per seed 1-3: [S] 90 on average, transferred 70, re-attached 85
    acc = {"S": (0.91, 0.89, 0.90), "S-to-en-frequency": (0.72, 0.69, 0.69),
           "S-to-en-frequency-reattached": (0.86, 0.85, 0.84), "S-to-en-keep": (0.80, 0.81, 0.79),
           "S-to-en-random-map": (0.60, 0.62, 0.61)}
    for model, vals in acc.items():
        for seed, v in zip((1, 2, 3), vals):
            _done(g, f"forget/{model}/scandisent-S/seed{seed}", {"accuracy": v})
    t = forgetting_tables(g)["S"]
    assert t["reattached"] == {f"S-to-en-{m}-reattached": f"S-to-en-{m}" for m in ("frequency", "random-map", "keep")}
    assert next(r for r in t["table8"] if r[:2] == ["S→en", "S re-attached (frequency)"])[3] == pytest.approx(85.0)
    from orchestrator.report import _forget_metric, _seed_values
    ra = reattach_table(g, "S", t, _seed_values(g, "forget", _forget_metric))
    row = next(r for r in ra[1:] if r[2] == "scandisent-S" and r[:2] == ["S→en", "en"])
    assert row[3:] == pytest.approx([90.0, 70.0, 85.0, 5.0, 15.0])   # body forgot 5, the embeddings took 15
    comps = {(c["a"], c["b"], c["column"]): c for c in comparisons(g) if c["family"] == "forgetting: re-attached"}
    body = comps[("S-to-en-frequency-reattached", "S", "scandisent-S")]["result"]
    back = comps[("S-to-en-frequency-reattached", "S-to-en-frequency", "scandisent-S")]["result"]
    a, s, f = ([100 * v for v in acc[k]] for k in ("S-to-en-frequency-reattached", "S", "S-to-en-frequency"))
    assert body.mean_diff == pytest.approx(-5.0) and body.t_p == pytest.approx(ttest_rel(a, s).pvalue)
    assert back.mean_diff == pytest.approx(15.0) and back.t_p == pytest.approx(ttest_rel(a, f).pvalue)
    # The plain forgetting family is the paper's question only: no re-attached model in it.
    assert not any("reattached" in c["a"] for c in comparisons(g) if c["family"] == "forgetting")
    # Figure 3: the group mean is over the paper's four models; the re-attached bar is drawn against it.
    f3 = [r for r in figure3_data(g)[1:] if r[1] == "S"]
    mean4 = statistics.mean([90.0, 70.0, 80.0, 61.0])
    got = {r[3]: r[4] for r in f3}
    assert got["S re-attached (frequency)"] == pytest.approx(85.0 - mean4)
    assert got["en"] == pytest.approx(70.0 - mean4)
    text, folder = write_report(g)
    assert "Forgetting split in two" in text and (folder / "forgetting_reattached_S.csv").exists()


def test_cost_table_sums_each_models_pretraining_and_evaluations(tmp_path):
    from orchestrator.report import cost_table

    g = _demo_graph(tmp_path)

    def done(node_id, compute, **extra):
        write_json(g.node_dir(node_id) / "settings.json", {"hash": g.nodes[node_id].hash})
        write_json(g.node_dir(node_id) / "DONE", {"metrics": {"accuracy": 0.5}, "compute": compute, **extra})

    done("pretrain/S-to-en-frequency", {"wall_s": 3600.0, "gpu_seconds": 3600.0, "cpu_seconds": 4 * 3600.0,
                                        "tokens_seen": 1_000_000, "mfu": 0.4})
    done("finetune/S-to-en-frequency/sst2/seed1", {"wall_s": 1800.0, "gpu_seconds": 450.0, "cpu_seconds": 3600.0,
                                                   "examples_seen": 300})
    done("finetune/S-to-en-frequency/rte/seed1", {"wall_s": 1800.0, "gpu_seconds": 450.0, "cpu_seconds": 3600.0,
                                                  "examples_seen": 200})
    tok = next(n for n in g.nodes if n.startswith("tokenizer/"))
    done(tok, {"wall_s": 360.0, "gpu_seconds": 0.0, "cpu_seconds": 360.0})
    write_json(g.node_dir("finetune/S/cola/seed1") / "settings.json", {"hash": g.nodes["finetune/S/cola/seed1"].hash})
    write_json(g.node_dir("finetune/S/cola/seed1") / "DONE", {"metrics": {"mcc": 0.1}, "seconds": 7200.0})  # old DONE
    table = cost_table(g)
    assert table[0][:3] == ["Lang", "Vocab", "pretrain tokens"]
    planned = sum(1 for n in g.nodes.values() if n.model == "S-to-en-frequency" and n.kind != "pretrain")
    freq = next(r for r in table if r[:2] == ["S→en", "en"])
    assert freq[2:] == [1_000_000, 1.0, 0.4, f"2/{planned}", 500, 1.25, 6.0]   # (3600 + 450 + 450) / 3600
    s = next(r for r in table if r[:2] == ["S", "S"])
    cpus = g.nodes["finetune/S/cola/seed1"].resources["cpu"]
    assert s[2] is None and s[6] == 0 and s[7] is None and s[8] == pytest.approx(2 * cpus)   # GPU share unknown
    shared = next(r for r in table if r[0] == "shared")
    assert shared[7] == 0.0 and shared[8] == 0.1 and table[-1][0] == "all"
    assert table[-1][7] is None and table[-1][8] == pytest.approx(6.0 + 2 * cpus + 0.1)
    text, folder = write_report(g)
    assert (folder / "cost.csv").read_text().splitlines()[0].startswith("Lang,Vocab,pretrain tokens")
    assert f"| S→en | en | 1,000,000 | 1 | 40.0% | 2/{planned} | 500 | 1.25 | 6 |" in (folder / "cost.md").read_text()
    assert "Cost per model: cost.md" in text and "1,000,000" not in text   # report.md: reproducible results only


def test_learning_curves_and_tokens_to_match_scratch(tmp_path):
    """The demo's curve ([S->en][en] cut at 25% and 50%) on hand-made DONE files: means by hand, and [en][en]'s
    final SST-2 of 58, 63, 68 (mean 63; its bootstrap interval is [58, 68]: each end value has probability 1/27
    > 2.5% among the resampled means) reached at the cuts by hand."""
    g = _demo_graph(tmp_path)

    def done(node_id, **record):
        write_json(g.node_dir(node_id) / "settings.json", {"hash": g.nodes[node_id].hash})
        write_json(g.node_dir(node_id) / "DONE", record)

    for suffix, tokens in (("@25pct", 100), ("@50pct", 200), ("", 400)):
        done(f"pretrain/S-to-en-frequency{suffix}", result={"tokens_seen": tokens})
    for seed, (a, b, c, en) in enumerate([(0.50, 0.60, 0.70, 0.58), (0.52, 0.62, 0.72, 0.63),
                                          (0.54, 0.64, 0.74, 0.68)], start=1):
        done(f"curve/S-to-en-frequency@25pct/sst2/seed{seed}", metrics={"accuracy": a})
        done(f"curve/S-to-en-frequency@50pct/sst2/seed{seed}", metrics={"accuracy": b})
        done(f"finetune/S-to-en-frequency/sst2/seed{seed}", metrics={"accuracy": c})
        done(f"finetune/en-scratch/sst2/seed{seed}", metrics={"accuracy": en})
    text, folder = write_report(g)
    rows = list(csv.reader(open(folder / "learning_curves.csv")))
    assert rows[0] == ["Lang", "Vocab", "task", "budget", "tokens", "mean", "lo", "hi", "seeds"]
    freq = [r for r in rows[1:] if r[:2] == ["S→en", "en"]]
    assert [(float(r[3]), r[4], round(float(r[5]), 6), r[8]) for r in freq] == \
        [(0.25, "100", 52.0, "3/3"), (0.5, "200", 62.0, "3/3"), (1.0, "400", 72.0, "3/3")]
    match = list(csv.reader(open(folder / "tokens_to_match.csv")))
    assert [m[:2] for m in match[1:]] == [["en", "en"], ["S→en", "en"]]
    assert match[1][6:] == ["", "", ""]      # [en][en]'s own cuts have no tokens yet (its segments not done)
    r = match[2]
    assert r[:3] == ["S→en", "en", "sst2"] and [round(float(v), 6) for v in r[3:6]] == [63.0, 58.0, 68.0]
    assert r[6:] == ["200", "400", "400"]    # 62 >= 58 at 50%; 63 and 68 only at the end (72)
    assert (folder / "learning_curves.png").stat().st_size > 0
    assert "| S→en | en | sst2 | 63.00 | 58.00 | 68.00 | 200 | 400 | 400 |" in text
    no_scratch = [r for r in rows[1:] if r[:2] == ["en", "en"]]
    assert [r[4] for r in no_scratch] == ["", "", ""]   # en-scratch's segments not finished: no tokens
