"""Tables in the paper's shapes, read from the finished nodes' DONE files (not from MLflow: the report works
without a tracking server and cannot disagree with what is on disk).

Table 2: one row per model (Lang x Vocab), one column per GLUE task (MNLI as m and mm), the mean over seeds
x100, and AVG over all columns (the paper averages MNLI-m and -mm as two columns; that reproduces its AVG).
Table 7: the sample standard deviation over seeds (ddof=1) in the same shape.

The evaluation suite, when the sweep runs it:
- Table 3: structural probe UUAS and DSpr on the test split at the best layer, the layer chosen on the dev
  split (separately for each metric, so the test set picks nothing), and WiC accuracy (mean over seeds);
  Table 11 is WiC's standard deviation; a per-layer table shows every probed layer.
- Table 8 (ScandiSent accuracy) and Table 9 (translated STS-B, Pearson / Spearman), one group of rows per
  source language: its [lang] model and each [lang->en] model.
- Table 10: Winogender gender parity score and accuracy, mean over the RTE fine-tunes' seeds.
- Figure 2: per source language and GLUE task, max(Δ[lang->en][en], Δ[lang->en][lang]) over [en][en]
  (MNLI: the mean of m and mm); Figure 3: each model's ScandiSent accuracy minus its group's mean.
  PNG files with the numbers behind them as CSV.

Undefined metrics (a degenerate run: e.g. STS-B Pearson / Spearman of constant predictions, which
stages/glue.py reports as NaN) are never turned into 0. A cell whose finished seeds all have the metric
undefined shows "n/d"; a mean (or std) over seeds where only some are defined is taken over the defined
seeds and marked "x† (k/n)", so the reader sees both the number and how many seeds it rests on; the
degenerate runs are listed by node id at the end of report.md. A cell with no finished run shows "–".
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from orchestrator.graph import Graph
from orchestrator.runner import read_done
from stages.common import read_json
from stages.glue import primary_metric

TASK_ORDER = ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"]
TASK_NAMES = {"cola": "CoLA", "mnli": "MNLI", "mrpc": "MRPC", "qnli": "QNLI", "qqp": "QQP", "rte": "RTE",
              "sst2": "SST-2", "stsb": "STS-B"}


LEGEND = ("Cells: – not finished; n/d undefined (the metric of every finished seed is undefined, e.g. a "
          "correlation of constant predictions); x† (k/n) mean (or std) over the k of n finished seeds whose metric "
          "is defined, the others left out (listed under 'Degenerate runs'). CSV files hold the plain numbers: "
          "empty = not finished, nan = undefined.")


class Partial(float):
    """A mean or std over only the `defined` of `runs` finished seeds (the others' metric is undefined).

    A float, so tables, figures and tests compute with it as with any number; only markdown() marks it."""
    defined: int
    runs: int

    def __new__(cls, value: float, defined: int, runs: int):
        obj = super().__new__(cls, value)
        obj.defined, obj.runs = defined, runs
        return obj


def _defined(v) -> bool:
    """False for a missing or undefined number (None, NaN, inf); True for any other value."""
    return v is not None and not (isinstance(v, float) and not math.isfinite(v))


def _x100(v) -> float:
    """A metric x100; NaN when it is undefined (NaN in JSON, or null), never 0."""
    return 100.0 * v if _defined(v) else math.nan


def _over_defined(values: list, stat, min_count: int):
    """stat over the defined values: None for fewer than min_count runs, NaN for fewer than min_count defined
    ones, a Partial when some runs were left out."""
    if len(values) < min_count:
        return None
    ok = [v for v in values if _defined(v)]
    if len(ok) < min_count:
        return math.nan
    value = float(stat(ok))
    return value if len(ok) == len(values) else Partial(value, len(ok), len(values))


def _mean(v: list[float]) -> float | None:
    return _over_defined(v, np.mean, 1)


def _std(v: list[float]) -> float | None:
    return _over_defined(v, lambda ok: np.std(ok, ddof=1), 2)


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
            if task == node.params["config"]["task"] and key in done["metrics"]:
                entry["scores"][name].append(_x100(done["metrics"][key]))
    return {"columns": [c[0] for c in cols], "models": models}


def tables(graph: Graph) -> tuple[list[list], list[list]]:
    data = collect(graph)
    header = ["Lang", "Vocab", *data["columns"], "AVG"]
    mean_rows, std_rows = [header], [header[:-1]]
    n_seeds = len(graph.sweep.finetune.seeds)
    for entry in data["models"].values():
        means = [_mean(entry["scores"][c]) for c in data["columns"]]
        stds = [_std(entry["scores"][c]) for c in data["columns"]]
        complete = all(len(entry["scores"][c]) == n_seeds for c in data["columns"])
        avg = _row_average(means, [entry["scores"][c] for c in data["columns"]]) if complete and means else None
        mean_rows.append([*entry["row"], *means, avg])
        std_rows.append([*entry["row"], *stds])
    return mean_rows, std_rows


def _row_average(means: list, scores: list[list]) -> float:
    """AVG of a row's column means: n/d if a column is undefined; marked when a column left seeds out."""
    if not all(_defined(m) for m in means):
        return math.nan
    avg = float(np.mean(means))
    if not any(isinstance(m, Partial) for m in means):
        return avg
    return Partial(avg, sum(_defined(v) for col in scores for v in col), sum(len(col) for col in scores))


def _fmt(v) -> str:
    if v is None:
        return "–"
    if not _defined(v):
        return "n/d"
    if isinstance(v, Partial):
        return f"{v:.2f}† ({v.defined}/{v.runs})"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def markdown(rows: list[list]) -> str:
    out = io.StringIO()
    out.write("| " + " | ".join(rows[0]) + " |\n")
    out.write("|" + "|".join("---" for _ in rows[0]) + "|\n")
    for r in rows[1:]:
        out.write("| " + " | ".join(_fmt(v) for v in r) + " |\n")
    return out.getvalue()


def _write_csv(path: Path, rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([[("" if v is None else v) for v in r] for r in rows])


# --- the evaluation suite ---------------------------------------------------------------------------

def _model_rows(graph: Graph, kinds: tuple[str, ...]) -> dict[str, tuple]:
    """Model key -> (Lang, Vocab), in plan order, for the models that have nodes of these kinds."""
    out: dict[str, tuple] = {}
    for n in graph.nodes.values():
        if n.kind in kinds and n.model not in out:
            out[n.model] = n.row
    return out


def _results(graph: Graph, kind: str) -> list[tuple]:
    """(node, metrics) of every finished node of `kind`."""
    out = []
    for n in graph.nodes.values():
        if n.kind == kind:
            done = read_done(graph, n.id)
            if done and done.get("metrics"):
                out.append((n, done["metrics"]))
    return out


# A probe's scores by name, and where its ProbeResult keeps each: the runner copies only some into the DONE
# metrics. "dspr" is Hewitt & Manning's DSpr (every word); "dspr_nopunct" leaves punctuation out and is shown
# under its own label, never in the DSpr column (stages/probe.py).
PROBE_FIELDS = {"uuas": "test_uuas", "dspr": "test_dspr", "dspr_nopunct": "test_dspr_nopunct",
                "dev_uuas": "dev_uuas", "dev_dspr": "dev_dspr", "dev_dspr_nopunct": "dev_dspr_nopunct"}
PROBE_LABELS = {"uuas": "UUAS", "dspr": "DSpr", "dspr_nopunct": "DSpr (no punct)"}
PROBE_DEFINITIONS = ("UUAS leaves punctuation (UPOS PUNCT) out, as Hewitt & Manning do (they use PTB punctuation "
                     "tags); DSpr is theirs, over every word, punctuation included; DSpr (no punct) leaves "
                     "punctuation rows and columns out: it is not comparable with published DSpr.")


def _probe_scores(done: dict) -> dict:
    """A finished probe's scores by name (PROBE_FIELDS): its DONE metrics, else its ProbeResult; None if absent."""
    metrics, result = done.get("metrics") or {}, done.get("result") or {}
    return {name: metrics[name] if name in metrics else result.get(field) for name, field in PROBE_FIELDS.items()}


def _at_dev_best_layer(by_layer: dict[int, dict], name: str) -> tuple[float | None, int | None]:
    """(test score x100, layer) at the layer whose dev score of `name` is best, undefined dev scores left out.

    (None, None) when no finished layer has the metric at all; (NaN, None) when none has it defined."""
    layers = [k for k in by_layer if by_layer[k][f"dev_{name}"] is not None]
    if not layers:
        return None, None
    defined = [k for k in layers if _defined(by_layer[k][f"dev_{name}"])]
    if not defined:
        return math.nan, None
    best = max(defined, key=lambda k: by_layer[k][f"dev_{name}"])
    value = by_layer[best][name]
    return (_x100(value) if value is not None else None), best


def _layer_cell(by_layer: dict[int, dict], layer: int, name: str) -> float | None:
    value = by_layer.get(layer, {}).get(name)
    return None if value is None else _x100(value)


def probing_tables(graph: Graph) -> tuple[list[list], list[list], list[list]]:
    """Table 3 (UUAS, DSpr at the dev-chosen layer; WiC mean; then DSpr without punctuation), Table 11 (WiC
    std), per-layer probe table."""
    rows = _model_rows(graph, ("probe", "wic"))
    probes: dict[str, dict[int, dict]] = {}
    for n in graph.nodes.values():
        done = read_done(graph, n.id) if n.kind == "probe" else None
        if done:
            probes.setdefault(n.model, {})[n.params["config"]["layer"]] = _probe_scores(done)
    wic: dict[str, list[float]] = {}
    for n, m in _results(graph, "wic"):
        wic.setdefault(n.model, []).append(_x100(m.get("accuracy")))
    layers = sorted({n.params["config"]["layer"] for n in graph.nodes.values() if n.kind == "probe"})
    t3 = [["Lang", "Vocab", "UUAS", "DSpr", "UUAS layer", "DSpr layer", "WiC (acc)",
           "DSpr (no punct)", "DSpr (no punct) layer"]]
    t11 = [["Lang", "Vocab", "WiC (stdev)", "seeds"]]
    per_layer = [["Lang", "Vocab", *[f"L{k} {PROBE_LABELS[name]}" for name in PROBE_LABELS for k in layers]]]
    for key, row in rows.items():
        by_layer = probes.get(key, {})
        (u, u_layer), (d, d_layer), (dn, dn_layer) = (_at_dev_best_layer(by_layer, name) for name in PROBE_LABELS)
        t3.append([*row, u, d, u_layer, d_layer, _mean(wic.get(key, [])), dn, dn_layer])
        t11.append([*row, _std(wic.get(key, [])), len(wic.get(key, []))])
        per_layer.append([*row, *[_layer_cell(by_layer, k, name) for name in PROBE_LABELS for k in layers]])
    return t3, t11, per_layer


def forgetting_tables(graph: Graph) -> dict[str, dict]:
    """Per source group: Table 8 (ScandiSent accuracy) and Table 9 (STS-B Pearson / Spearman), mean over seeds."""
    groups: dict[str, dict] = {}
    scores: dict[tuple, list[float]] = {}
    for n in graph.nodes.values():
        if n.kind == "forget":
            g = groups.setdefault(n.params["group"], {"models": {}, "tasks": []})
            g["models"].setdefault(n.model, n.row)
            if n.params["config"]["task"] not in g["tasks"]:
                g["tasks"].append(n.params["config"]["task"])
    for n, m in _results(graph, "forget"):
        for k, v in m.items():
            scores.setdefault((n.model, n.params["config"]["task"], k), []).append(_x100(v))
    out = {}
    for name, g in groups.items():
        # English first, as in the paper's Table 8 (en, then the source language)
        senti = sorted((t for t in g["tasks"] if t.startswith("scandisent-")), key=lambda t: t != "scandisent-en")
        sts = [t for t in g["tasks"] if t.startswith("stsb-")]
        t8 = [["Lang", "Vocab", *[t.split("-", 1)[1] for t in senti]]]
        t9 = [["Lang", "Vocab", *[f"{t} ({m})" for t in sts for m in ("Pearson", "Spearman")]]]
        for key, row in g["models"].items():
            t8.append([*row, *[_mean(scores.get((key, t, "accuracy"), [])) for t in senti]])
            t9.append([*row, *[_mean(scores.get((key, t, m), [])) for t in sts for m in ("pearson", "spearman")]])
        out[name] = {"table8": t8, "table9": t9 if sts else None, "sentiment_tasks": senti}
    return out


def winogender_table(graph: Graph) -> list[list]:
    rows = _model_rows(graph, ("winogender",))
    vals: dict[tuple, list[float]] = {}
    for n, m in _results(graph, "winogender"):
        for k in ("gender_parity", "accuracy"):
            vals.setdefault((n.model, k), []).append(_x100(m.get(k)))
    table = [["Lang", "Vocab", "gps", "acc", "seeds"]]
    for key, row in rows.items():
        table.append([*row, _mean(vals.get((key, "gender_parity"), [])), _mean(vals.get((key, "accuracy"), [])),
                      len(vals.get((key, "accuracy"), []))])
    return table


def init_table(graph: Graph) -> list[list]:
    """Per pretrained model: what its initialisation did to the embedding rows (mapping_report.json's
    diagnostics) and how far continued pretraining moved the embeddings and the body from it (movement.json)."""
    table = [["Lang", "Vocab", "init", "copied", "composed", "random", "special", "identity %", "cos nearest",
              "cos top-10", "moved emb.", "moved body"]]
    for node in graph.nodes.values():
        if node.kind != "pretrain":
            continue
        d = graph.node_dir(node.id)
        report = d / "init" / "mapping_report.json"
        moved = d / "movement.json"
        if not report.is_file() and not moved.is_file():
            continue
        diag = (read_json(report).get("diagnostics") or {}) if report.is_file() else {}
        mv = read_json(moved) if moved.is_file() else {}
        rows = diag.get("rows", {})
        fresh = [k for k in ("composed", "random") if f"{k}_nearest_cosine" in diag]
        weight = {k: rows.get(k, 0) for k in fresh}
        total = sum(weight.values())

        def pooled(stat):   # mean over every row not copied, composed and random together
            return sum(diag[f"{k}_{stat}"] * weight[k] for k in fresh) / total if total else None

        rate = diag.get("identity_rate")
        table.append([*(node.row or ("?", "?")), node.params["transfer"]["mode"],
                      *(rows.get(k) for k in ("copied", "composed", "random", "special")),
                      None if rate is None else 100 * rate, pooled("nearest_cosine"), pooled("top10_cosine"),
                      mv.get("embeddings"), mv.get("body")])
    return table


def figure2_data(graph: Graph) -> list[list]:
    """Rows (source, task, max gain over [en][en]): the larger gain of [lang->en][en] and [lang->en][lang]."""
    mean_rows, _ = tables(graph)
    cols = mean_rows[0][2:-1]
    by_model = {}
    for node in graph.nodes.values():
        if node.kind == "finetune" and node.model not in by_model:
            by_model[node.model] = node
    row_of = {tuple(r[:2]): r[2:-1] for r in mean_rows[1:]}
    base = row_of.get(("en", "en"))
    out = [["source", "task", "max gain"]]
    if base is None:
        return out
    for src in graph.sweep.experiments.transfer_from:
        variants = []
        for mode in ("frequency", "keep"):   # the paper's two [lang->en] models; random-map is our control
            n = graph.nodes.get(f"pretrain/{src}-to-en-{mode}")
            if n is not None and tuple(n.row) in row_of:
                variants.append(row_of[tuple(n.row)])
        if not variants:
            continue
        for task in dict.fromkeys(c.replace("MNLI-mm", "MNLI").replace("MNLI-m", "MNLI") for c in cols):
            idx = [i for i, c in enumerate(cols) if c.startswith(task)] if task == "MNLI" else [cols.index(task)]
            gains = []
            for v in variants:
                if all(_defined(v[i]) and _defined(base[i]) for i in idx):  # an undefined mean makes no bar
                    gains.append(float(np.mean([v[i] - base[i] for i in idx])))
            if gains:
                out.append([graph.sweep.sources[src].label or src, task, max(gains)])
    return out


def figure3_data(graph: Graph) -> list[list]:
    """Rows (group, task, Lang, Vocab, accuracy - group mean) for every ScandiSent task of every group."""
    out = [["group", "task", "Lang", "Vocab", "difference from group mean"]]
    for name, g in forgetting_tables(graph).items():
        t8 = g["table8"]
        for j, task in enumerate(t8[0][2:], start=2):
            vals = [r[j] for r in t8[1:] if _defined(r[j])]   # an undefined accuracy neither counts nor shows
            if not vals:
                continue
            mean = float(np.mean(vals))
            out += [[name, task, r[0], r[1], r[j] - mean] for r in t8[1:] if _defined(r[j])]
    return out


def _bar_figure(path: Path, data: list[list], group_col: int, bar_col: int, label_cols: tuple, value_col: int,
                title: str, ylabel: str) -> bool:
    """Grouped bars: one panel per value of `group_col`; False (no file) when there is nothing to draw."""
    rows = data[1:]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")  # no display on workers and CI
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(r[group_col] for r in rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        sub = [r for r in rows if r[group_col] == panel]
        cats = list(dict.fromkeys(r[bar_col] for r in sub))
        series = list(dict.fromkeys(tuple(r[c] for c in label_cols) for r in sub))
        width = 0.8 / max(1, len(series))
        for i, ser in enumerate(series):
            ys = [next((r[value_col] for r in sub if r[bar_col] == c and tuple(r[k] for k in label_cols) == ser), 0.0)
                  for c in cats]
            ax.bar([x + i * width for x in range(len(cats))], ys, width, label=" ".join(f"[{v}]" for v in ser) or None)
        ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(cats))], cats, rotation=30)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_title(f"{title}: {panel}")
        ax.set_ylabel(ylabel)
        if label_cols:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _flagged(graph: Graph, node_id: str, done: dict) -> list[str]:
    """Metric names a stage flagged `degenerate` (FinetuneResult.degenerate, which DONE's result holds); for a
    stage whose DONE does not carry the key, its eval_results.json's, if it has one."""
    result = done.get("result") if isinstance(done.get("result"), dict) else {}
    for source in (done, result):
        if "degenerate" in source:
            return list(source["degenerate"] or [])
    path = graph.node_dir(node_id) / "eval_results.json"
    return list(read_json(path).get("degenerate") or []) if path.exists() else []


def degenerate_runs(graph: Graph) -> list[tuple[str, list[str]]]:
    """(node id, metric names) of every finished run with an undefined metric or one its stage flagged
    degenerate (constant predictions), in plan order."""
    out = []
    for n in graph.nodes.values():
        done = read_done(graph, n.id)
        if not done:
            continue
        metrics = done.get("metrics") or {}
        names = [k for k, v in metrics.items() if not _defined(v)]
        names += [k for k in _flagged(graph, n.id, done) if k not in names]
        if names:
            out.append((n.id, names))
    return out


def _degenerate_section(runs: list[tuple[str, list[str]]]) -> str:
    if not runs:
        return ""
    lines = "".join(f"- {node_id}: {', '.join(names)}\n" for node_id, names in runs)
    return (f"\nDegenerate runs: {len(runs)} run(s) degenerate (an undefined or flagged metric, e.g. a correlation "
            "of constant predictions; an undefined metric is left out of every mean, see the legend at the top)"
            "\n\n" + lines)


def write_report(graph: Graph) -> tuple[str, Path]:
    mean_rows, std_rows = tables(graph)
    folder = Path(graph.sweep.output_dir) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(folder / "table2_glue_mean.csv", mean_rows)
    _write_csv(folder / "table7_glue_std.csv", std_rows)
    n = len(graph.sweep.finetune.seeds)
    text = (LEGEND + "\n\n"
            + f"GLUE dev scores x100, mean over {n} seed(s) (Table 2 shape)\n\n"
            + markdown(mean_rows)
            + "\nStandard deviation over seeds (Table 7 shape)\n\n" + markdown(std_rows))
    kinds = {node.kind for node in graph.nodes.values()}
    if kinds & {"probe", "wic"}:
        t3, t11, per_layer = probing_tables(graph)
        _write_csv(folder / "table3_probing.csv", t3)
        _write_csv(folder / "table11_wic_std.csv", t11)
        _write_csv(folder / "probe_layers.csv", per_layer)
        text += ("\nProbing x100 (Table 3 shape): structural probe on the test split at the layer chosen on dev; "
                 "WiC dev accuracy, mean over seeds. " + PROBE_DEFINITIONS + "\n\n" + markdown(t3)
                 + "\nStructural probe per layer (test split)\n\n" + markdown(per_layer)
                 + "\nWiC standard deviation over seeds (Table 11 shape)\n\n" + markdown(t11))
    if "forget" in kinds:
        for name, g in forgetting_tables(graph).items():
            _write_csv(folder / f"table8_scandisent_{name}.csv", g["table8"])
            text += (f"\nSentiment accuracy x100, [{name}] models (Table 8 shape; columns: ScandiSent language)\n\n"
                     + markdown(g["table8"]))
            if g["table9"]:
                _write_csv(folder / f"table9_stsb_{name}.csv", g["table9"])
                text += f"\nTranslated STS-B x100, [{name}] models (Table 9 shape)\n\n" + markdown(g["table9"])
        f3 = figure3_data(graph)
        _write_csv(folder / "figure3_scandisent.csv", f3)
        if _bar_figure(folder / "figure3_scandisent.png", f3, 1, 1, (2, 3), 4,
                       "ScandiSent", "accuracy - group mean (x100)"):
            text += "\nFigure 3: figure3_scandisent.png (numbers: figure3_scandisent.csv)\n"
    if "winogender" in kinds:
        t10 = winogender_table(graph)
        _write_csv(folder / "table10_winogender.csv", t10)
        text += "\nWinogender x100 (Table 10 shape): gender parity score and accuracy\n\n" + markdown(t10)
    f2 = figure2_data(graph)
    if len(f2) > 1:
        _write_csv(folder / "figure2_max_gain.csv", f2)
        if _bar_figure(folder / "figure2_max_gain.png", f2, 0, 1, (), 2, "max gain over [en][en]", "points (x100)"):
            text += "\nFigure 2: figure2_max_gain.png (numbers: figure2_max_gain.csv)\n"
    inits = init_table(graph)
    if len(inits) > 1:
        _write_csv(folder / "inits.csv", inits)
        text += ("\nInitialisations: rows of the embedding matrix copied from one source row, composed from several, "
                 "random or special (by role); identity % = ordinary tokens whose row is the source row of the same "
                 "string; cosine of the rows not copied to their nearest source row and mean to the 10 nearest; "
                 "moved = ||W - W_init|| / ||W_init|| after continued pretraining (embeddings; the whole body)\n\n"
                 + markdown(inits))
    text += _degenerate_section(degenerate_runs(graph))
    (folder / "report.md").write_text(text)
    return text, folder
