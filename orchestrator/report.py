"""Tables in the paper's shapes, read from the finished nodes' DONE files (not from MLflow: the report works
without a tracking server and cannot disagree with what is on disk).

Table 2: one row per model (Lang x Vocab), one column per GLUE task (MNLI as m and mm), the mean over seeds
x100, and AVG over all columns (the paper averages MNLI-m and -mm as two columns; that reproduces its AVG).
Table 7: the sample standard deviation over seeds (ddof=1) in the same shape.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from orchestrator.graph import Graph
from orchestrator.runner import read_done
from stages.glue import primary_metric

TASK_ORDER = ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"]
TASK_NAMES = {"cola": "CoLA", "mnli": "MNLI", "mrpc": "MRPC", "qnli": "QNLI", "qqp": "QQP", "rte": "RTE",
              "sst2": "SST-2", "stsb": "STS-B"}


def _columns(tasks: list[str]) -> list[tuple[str, str, str]]:
    """(column name, task, metric key in the finetune result)."""
    cols = []
    for t in sorted(tasks, key=TASK_ORDER.index):
        m = primary_metric(t)
        if t == "mnli":
            cols += [("MNLI-m", t, f"m_{m}"), ("MNLI-mm", t, f"mm_{m}")]
        else:
            cols.append((TASK_NAMES[t], t, m))
    return cols


def collect(graph: Graph) -> dict:
    """{model: {"row": (lang, vocab), "scores": {column: [x100 per seed]}, "seeds": n}} and the columns."""
    tasks = graph.sweep.finetune.tasks
    cols = _columns(tasks)
    models: dict[str, dict] = {}
    for node in graph.nodes.values():
        if node.kind != "finetune":
            continue
        entry = models.setdefault(node.model, {"row": node.row, "scores": {c[0]: [] for c in cols}})
        done = read_done(graph, node.id)
        if not done:
            continue
        for name, task, key in cols:
            if task == node.params["task"] and key in done["metrics"]:
                entry["scores"][name].append(100.0 * done["metrics"][key])
    return {"columns": [c[0] for c in cols], "models": models}


def tables(graph: Graph) -> tuple[list[list], list[list]]:
    data = collect(graph)
    header = ["Lang", "Vocab", *data["columns"], "AVG"]
    mean_rows, std_rows = [header], [header[:-1]]
    n_seeds = len(graph.sweep.finetune.seeds)
    for entry in data["models"].values():
        means, stds = [], []
        for c in data["columns"]:
            v = entry["scores"][c]
            means.append(float(np.mean(v)) if v else None)
            stds.append(float(np.std(v, ddof=1)) if len(v) > 1 else None)
        complete = all(len(entry["scores"][c]) == n_seeds for c in data["columns"])
        avg = float(np.mean(means)) if complete and means else None
        mean_rows.append([*entry["row"], *means, avg])
        std_rows.append([*entry["row"], *stds])
    return mean_rows, std_rows


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def markdown(rows: list[list]) -> str:
    out = io.StringIO()
    out.write("| " + " | ".join(rows[0]) + " |\n")
    out.write("|" + "|".join("---" for _ in rows[0]) + "|\n")
    for r in rows[1:]:
        out.write("| " + " | ".join(_fmt(v) for v in r) + " |\n")
    return out.getvalue()


def write_report(graph: Graph) -> tuple[str, Path]:
    mean_rows, std_rows = tables(graph)
    folder = Path(graph.sweep.output_dir) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("table2_glue_mean", mean_rows), ("table7_glue_std", std_rows)):
        with open(folder / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows([[("" if v is None else v) for v in r] for r in rows])
    n = len(graph.sweep.finetune.seeds)
    text = (f"GLUE dev scores x100, mean over {n} seed(s) (Table 2 shape; – = not finished)\n\n"
            + markdown(mean_rows)
            + "\nStandard deviation over seeds (Table 7 shape)\n\n" + markdown(std_rows))
    (folder / "report.md").write_text(text)
    return text, folder
