"""Table 2 / Table 7 shapes from DONE files, checked against the paper's own numbers and `statistics`."""
from __future__ import annotations

import statistics

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
    g = build_graph(load_sweep(REPO_ROOT / "configs" / "demo.yaml", [f"output_dir={tmp_path}"], base_dir=tmp_path))
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
