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
A fine-tune flagged degenerate by its stage (one class predicted on dev, a diverged loss) counts as undefined
in every column.

Seed statistics (orchestrator/stats.py): every GLUE cell's 95% seed-bootstrap interval, the study's paired
comparisons by fine-tuning seed (`study_pairs`, Holm within each question's family) and a findings section
that restates the paper's four findings for this sweep; a seed-spread figure with its numbers as CSV.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from orchestrator import stats
from orchestrator.graph import Graph, curve_point, moved_key, scratch_key
from orchestrator.runner import read_done
from stages.common import read_json
from stages.glue import primary_metric

TASK_ORDER = ["cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"]
TASK_NAMES = {"cola": "CoLA", "mnli": "MNLI", "mrpc": "MRPC", "qnli": "QNLI", "qqp": "QQP", "rte": "RTE",
              "sst2": "SST-2", "stsb": "STS-B"}


LEGEND = ("Cells: – not finished; n/d undefined (the metric of every finished seed is undefined, e.g. a "
          "correlation of constant predictions, or the run is degenerate); x† (k/n) mean (or std) over the k of n "
          "finished seeds whose metric is defined, the others left out: undefined metrics and degenerate runs (a "
          "fine-tune that predicts one class on dev, or whose training loss diverged), listed under 'Degenerate "
          "runs'. CSV files hold the plain numbers: empty = not finished, nan = undefined.")


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


def run_flags(done: dict) -> list[str]:
    """A finished fine-tune's degenerate-run flags (stages.finetune.run_flags: one_class, diverged)."""
    result = done.get("result") if isinstance(done.get("result"), dict) else {}
    return list(result.get("flags") or [])


def _score(done: dict, key: str) -> float:
    """A run's metric x100 for the tables: NaN (left out of means, counted) when undefined or the run is flagged."""
    return math.nan if run_flags(done) else _x100(done["metrics"][key])


def model_rank(graph: Graph, key: str | None) -> tuple:
    """Where a model's row goes in every table: [en][en] (and its equal-compute variants) first, then per source
    in config order its [lang] model and its [lang->en] models in vocab_modes order (each re-attached one after
    its model), the way the paper's tables read. Plan order cannot give this: a learning curve's segments make
    a model's nodes deeper in the graph, which would move its rows."""
    s = graph.sweep
    sources, modes = list(s.sources), list(s.experiments.vocab_modes)
    scratch, matched = scratch_key(s), scratch_key(s, "")
    if key is None:
        return (len(sources) + 2, 0, 0)
    if key == scratch or key.startswith(matched):
        return (0, 0 if key == scratch else 1 + sources.index(key[len(matched):]), 0)
    if key in s.sources:
        return (1 + sources.index(key), 0, 0)
    for name in sorted(sources, key=len, reverse=True):   # the longest name first: "ar10" before "ar1"
        if key.startswith(moved_key(s, name, "")):
            mode, back = key[len(moved_key(s, name, "")):], 0
            if mode.endswith("-reattached"):
                mode, back = mode[:-len("-reattached")], 1
            return (1 + sources.index(name), 1 + (modes.index(mode) if mode in modes else len(modes)), back)
    return (len(sources) + 1, 0, 0)


def _by_rank(graph: Graph, d: dict) -> dict:
    return dict(sorted(d.items(), key=lambda kv: model_rank(graph, kv[0])))


def collect(graph: Graph) -> dict:
    """{model: {"row": (lang, vocab), "scores": {column: [x100 per seed]}, "by_seed": {column: {seed: x100}}}}
    and the columns. A flagged run (one class, diverged) counts as undefined in every column."""
    tasks = graph.sweep.finetune.tasks
    cols = _columns(tasks)
    models: dict[str, dict] = {}
    for node in graph.nodes.values():
        if node.kind != "finetune":
            continue
        entry = models.setdefault(node.model, {"row": node.row, "scores": {c[0]: [] for c in cols},
                                               "by_seed": {c[0]: {} for c in cols}})
        done = read_done(graph, node.id)
        if not done:
            continue
        for name, task, key in cols:
            if task == node.params["config"]["task"] and key in done["metrics"]:
                entry["scores"][name].append(_score(done, key))
                entry["by_seed"][name][node.params["config"]["seed"]] = entry["scores"][name][-1]
    return {"columns": [c[0] for c in cols], "models": _by_rank(graph, models)}


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
    return _by_rank(graph, out)


def _results(graph: Graph, kind: str) -> list[tuple]:
    """(node, metrics) of every finished node of `kind`; a degenerate run's metrics are all undefined (NaN)."""
    out = []
    for n in graph.nodes.values():
        if n.kind == kind:
            done = read_done(graph, n.id)
            if done and done.get("metrics"):
                flagged = bool(run_flags(done))
                out.append((n, {k: math.nan if flagged else v for k, v in done["metrics"].items()}))
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
            g = groups.setdefault(n.params["group"], {"models": {}, "tasks": [], "reattached": {}})
            g["models"].setdefault(n.model, n.row)
            if n.params.get("reattached"):   # forgetting.reattach: this model is that one with the source's embeddings
                g["reattached"][n.model] = n.params["reattached"]
            if n.params["config"]["task"] not in g["tasks"]:
                g["tasks"].append(n.params["config"]["task"])
    for n, m in _results(graph, "forget"):
        for k, v in m.items():
            scores.setdefault((n.model, n.params["config"]["task"], k), []).append(_x100(v))
    out = {}
    for name, g in groups.items():
        g["models"] = _by_rank(graph, g["models"])
        # English first, as in the paper's Table 8 (en, then the source language)
        senti = sorted((t for t in g["tasks"] if t.startswith("scandisent-")), key=lambda t: t != "scandisent-en")
        sts = [t for t in g["tasks"] if t.startswith("stsb-")]
        t8 = [["Lang", "Vocab", *[t.split("-", 1)[1] for t in senti]]]
        t9 = [["Lang", "Vocab", *[f"{t} ({m})" for t in sts for m in ("Pearson", "Spearman")]]]
        for key, row in g["models"].items():
            t8.append([*row, *[_mean(scores.get((key, t, "accuracy"), [])) for t in senti]])
            t9.append([*row, *[_mean(scores.get((key, t, m), [])) for t in sts for m in ("pearson", "spearman")]])
        out[name] = {"table8": t8, "table9": t9 if sts else None, "sentiment_tasks": senti,
                     "reattached": g["reattached"], "keys": list(g["models"]), "rows": g["models"]}
    return out


def reattach_table(graph: Graph, name: str, g: dict, forget: dict[str, dict]) -> list[list]:
    """Per [lang->en] model with a re-attached twin and per source task: the source model's score, the
    transferred model's, the re-attached one's, and the two parts of the drop: what the body forgot ([lang] -
    re-attached) and what left with the embeddings (re-attached - transferred). Means over seeds, x100."""
    label = graph.sweep.sources[name].label or name
    own = [t for t in graph.sweep.sources[name].source_tasks]
    table = [["Lang", "Vocab", "task", f"[{label}]", "transferred", "re-attached", "body forgot",
              "lost with the embeddings"]]

    def mean(key, task):
        vals = [v for v in forget.get(key, {}).get("cols", {}).get(task, {}).values() if _defined(v)]
        return float(np.mean(vals)) if vals else None

    for back, moved in g["reattached"].items():
        for task in own:
            src, m, r = mean(name, task), mean(moved, task), mean(back, task)
            table.append([*g["rows"][moved], task, src, m, r, None if src is None or r is None else src - r,
                          None if r is None or m is None else r - m])
    return table


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
        if node.kind != "pretrain" or node.params["config"].get("stop_at_fraction"):   # one row per model
            continue
        d = graph.node_dir(node.id)
        report = Path(node.params["transfer"]["output_dir"]) / "mapping_report.json"   # a curve's first segment
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
        table.append([model_rank(graph, node.model), *(node.row or ("?", "?")), node.params["transfer"]["mode"],
                      *(rows.get(k) for k in ("copied", "composed", "random", "special")),
                      None if rate is None else 100 * rate, pooled("nearest_cosine"), pooled("top10_cosine"),
                      mv.get("embeddings"), mv.get("body")])
    return [table[0], *(r[1:] for r in sorted(table[1:], key=lambda r: r[0]))]   # the tables' model order


def figure2_data(graph: Graph, glue: tuple[list[str], dict] | None = None) -> list[list]:
    """Rows (source, task, max gain over [en][en]): the larger gain of [lang->en][en] and [lang->en][lang].
    `glue`: glue_by_seed(graph), when the caller has read it already."""
    mean_rows, _ = tables(graph)
    cols = mean_rows[0][2:-1]
    by_model = {}
    for node in graph.nodes.values():
        if node.kind == "finetune" and node.model not in by_model:
            by_model[node.model] = node
    row_of = {tuple(r[:2]): r[2:-1] for r in mean_rows[1:]}
    lang = graph.sweep.target.language
    base = row_of.get((lang, lang))
    out = [["source", "task", "max gain", "lo", "hi", "model"]]
    if base is None:
        return out
    _, by_seed = glue or glue_by_seed(graph)
    for src in graph.sweep.experiments.transfer_from:
        variants = []
        for mode in ("frequency", "keep"):   # the paper's two [lang->en] models; random-map is our control
            n = graph.nodes.get(f"pretrain/{moved_key(graph.sweep, src, mode)}")
            if n is not None and tuple(n.row) in row_of:
                variants.append((n.model, row_of[tuple(n.row)]))
        if not variants:
            continue
        for task in dict.fromkeys(c.replace("MNLI-mm", "MNLI").replace("MNLI-m", "MNLI") for c in cols):
            idx = [i for i, c in enumerate(cols) if c.startswith(task)] if task == "MNLI" else [cols.index(task)]
            gains = []
            for key, v in variants:
                if all(_defined(v[i]) and _defined(base[i]) for i in idx):  # an undefined mean makes no bar
                    gains.append((float(np.mean([v[i] - base[i] for i in idx])), key))
            if not gains:
                continue
            gain, key = max(gains)
            # The bar's interval: the bootstrap interval of the chosen model's seed-paired gain over [en][en].
            per_seed = [_task_by_seed(by_seed.get(k, {}), [cols[i] for i in idx])
                        for k in (key, scratch_key(graph.sweep))]
            r = stats.paired(*per_seed, graph.sweep.seed, f"figure2|{key}|{task}")
            lo, hi = r.interval if r and r.interval else (None, None)
            out.append([graph.sweep.sources[src].label or src, task, gain, lo, hi, _label(by_model[key].row)])
    return out


def _task_by_seed(entry: dict, cols: list[str]) -> dict[int, float]:
    """{seed: score} of a task; MNLI's m and mm averaged per seed."""
    by = [entry.get("cols", {}).get(c, {}) for c in cols]
    seeds = set.intersection(*(set(b) for b in by)) if by else set()
    return {sd: float(np.mean([b[sd] for b in by])) for sd in sorted(seeds) if all(_defined(b[sd]) for b in by)}


def figure3_data(graph: Graph, groups: dict[str, dict] | None = None, forget: dict[str, dict] | None = None
                 ) -> list[list]:
    """Rows (group, task, Lang, Vocab, accuracy - group mean) for every ScandiSent task of every group.
    `groups` (forgetting_tables) and `forget` (the forget runs by seed): when the caller has read them already."""
    out = [["group", "task", "Lang", "Vocab", "difference from group mean", "lo", "hi"]]
    forget = _seed_values(graph, "forget", _forget_metric) if forget is None else forget
    for name, g in (forgetting_tables(graph) if groups is None else groups).items():
        t8 = g["table8"]
        # The group mean is the paper's: over its own models. Re-attached models are drawn against the same mean,
        # so adding them moves no other bar.
        own = [i for i, k in enumerate(g["keys"], start=1) if k not in g["reattached"]]
        for j, task in enumerate(t8[0][2:], start=2):
            vals = [t8[i][j] for i in own if _defined(t8[i][j])]   # an undefined accuracy neither counts nor shows
            if not vals:
                continue
            mean = float(np.mean(vals))
            for key, r in zip(g["keys"], t8[1:]):
                if not _defined(r[j]):
                    continue
                col = g["sentiment_tasks"][j - 2]
                seeds = [v for v in forget.get(key, {}).get("cols", {}).get(col, {}).values() if _defined(v)]
                ci = stats.mean_interval(seeds, graph.sweep.seed, f"{key}/{col}")
                out.append([name, task, r[0], r[1], r[j] - mean,
                            *((ci[0] - mean, ci[1] - mean) if ci else (None, None))])
    return out


def _bar_figure(path: Path, data: list[list], group_col: int, bar_col: int, label_cols: tuple, value_col: int,
                title: str, ylabel: str, err_cols: tuple[int, int] | None = None) -> bool:
    """Grouped bars: one panel per value of `group_col`; `err_cols`: the (lo, hi) columns drawn as error bars.
    False (no file) when there is nothing to draw."""
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
            found = [next((r for r in sub if r[bar_col] == c and tuple(r[k] for k in label_cols) == ser), None)
                     for c in cats]
            ys = [r[value_col] if r else 0.0 for r in found]
            yerr = None
            if err_cols:   # a bar without an interval (one seed) gets none
                # clamped at 0: a bar's mean over all its seeds can sit a float's width (or, with unpaired seeds,
                # more) outside the interval of the paired ones; the CSV keeps both as they are
                yerr = [[max(0.0, y - r[err_cols[0]]) if r and r[err_cols[0]] is not None else 0.0
                         for y, r in zip(ys, found)],
                        [max(0.0, r[err_cols[1]] - y) if r and r[err_cols[1]] is not None else 0.0
                         for y, r in zip(ys, found)]]
            ax.bar([x + i * width for x in range(len(cats))], ys, width, yerr=yerr, capsize=2,
                   error_kw={"linewidth": 0.8}, label=" ".join(f"[{v}]" for v in ser) or None)
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
        names += [f"run: {f}" for f in run_flags(done)]
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


# --- seed statistics (orchestrator/stats.py) -----------------------------------------------------------

def glue_by_seed(graph: Graph) -> tuple[list[str], dict[str, dict]]:
    """GLUE columns + AVG, and {model: {"row", "cols": {column: {seed: x100}}}}; a seed's AVG is the mean of
    its columns, defined only when every column of that seed is (so AVG pairs like the task columns)."""
    data = collect(graph)
    cols = data["columns"]
    out = {}
    for key, entry in data["models"].items():
        by = {c: dict(entry["by_seed"][c]) for c in cols}
        seeds = set.intersection(*(set(by[c]) for c in cols)) if cols else set()
        by["AVG"] = {sd: float(np.mean([by[c][sd] for c in cols])) for sd in sorted(seeds)
                     if all(_defined(by[c][sd]) for c in cols)}
        out[key] = {"row": entry["row"], "cols": by}
    return [*cols, "AVG"], out


def _seed_values(graph: Graph, kind: str, metric_of) -> dict[str, dict]:
    """{model: {"row", "cols": {column: {seed: x100}}}} for the finished nodes of `kind`; `metric_of(node)`
    gives (column, metric key) or None."""
    out: dict[str, dict] = {}
    for n, m in _results(graph, kind):
        which = metric_of(n)
        if which is None or which[1] not in m:
            continue
        entry = out.setdefault(n.model, {"row": n.row, "cols": {}})
        entry["cols"].setdefault(which[0], {})[n.params["config"]["seed"]] = _x100(m[which[1]])
    return out


def _forget_metric(n) -> tuple[str, str]:
    task = n.params["config"]["task"]
    return (task, "pearson") if task.startswith("stsb-") else (task, "accuracy")


def interval_table(graph: Graph, cols: list[str], models: dict[str, dict]) -> list[list]:
    """Every cell's mean and 95% seed-bootstrap interval, and its seed count (defined seeds / finished)."""
    seed = graph.sweep.seed
    table = [["Lang", "Vocab", *[f"{c} {part}" for c in cols for part in ("mean", "lo", "hi", "n")]]]
    for key, entry in models.items():
        cells = []
        for c in cols:
            vals = [v for v in entry["cols"].get(c, {}).values() if _defined(v)]
            ci = stats.mean_interval(vals, seed, f"{key}/{c}")
            cells += [float(np.mean(vals)) if vals else None, *(ci or (None, None)),
                      f"{len(vals)}/{len(entry['cols'].get(c, {}))}"]
        table.append([*entry["row"], *cells])
    return table


def _interval_markdown(table: list[list], cols: list[str]) -> str:
    rows = [["Lang", "Vocab", *cols]]
    for r in table[1:]:
        cells = []
        for i in range(len(cols)):
            mean, lo, hi, n = r[2 + 4 * i: 6 + 4 * i]
            cells.append("–" if mean is None else
                         f"{mean:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{mean:.2f} (n {n})")
        rows.append([*r[:2], *cells])
    return markdown(rows)


# The questions the study asks of each source language, fixed before any result is read, as (a, b, question,
# family). A family is one research question; Holm's correction runs within it, over every source: whether
# transfer helps (the paper's finding 1, against [en][en] and against the source model itself), how the
# vocabulary is moved (the paper's new vocabulary against keeping the source's, frequency rank against our
# random-map control), and every other init against frequency rank (issue 10's question). Correcting the
# paper's claim together with seven exploratory init comparisons would only hide it.
def study_pairs(graph: Graph) -> list[tuple[str, str, str, str]]:
    """(a, b, question, family) model-key pairs of the study that this sweep has both models of."""
    exp, exp_sweep = graph.sweep.experiments, graph.sweep
    keys = {n.model for n in graph.nodes.values() if n.model}
    pairs = []
    for src in exp.transfer_from:
        freq, keep, rmap = (moved_key(exp_sweep, src, m) for m in ("frequency", "keep", "random-map"))
        scratch = scratch_key(exp_sweep)
        pairs += [(freq, scratch_key(exp_sweep, src), "transfer beats scratch at equal compute", "equal compute"),
                  (freq, scratch, "transfer beats scratch", "transfer"),
                  (keep, scratch, "transfer beats scratch", "transfer"),
                  (freq, src, "transfer beats the source model", "transfer"),
                  (freq, keep, "a new vocabulary beats keeping the source's", "vocabulary"),
                  (freq, rmap, "frequency rank beats a random map", "vocabulary")]
        for mode in exp.vocab_modes:
            if mode not in ("frequency", "keep", "random-map"):
                pairs.append((moved_key(exp_sweep, src, mode), freq, f"{mode} vs frequency rank", "inits"))
    return [p for p in pairs if p[0] in keys and p[1] in keys]


def _label(row) -> str:
    return " ".join(f"[{x}]" for x in row)


def _wic_by_seed(graph: Graph) -> dict[str, dict]:
    return _seed_values(graph, "wic", lambda n: ("WiC", "accuracy"))


def comparisons(graph: Graph, glue: tuple[list[str], dict] | None = None,
                wic: dict[str, dict] | None = None) -> list[dict]:
    """Every paired comparison of the report, Holm-corrected within its family. `glue` (glue_by_seed's result)
    and `wic` (_wic_by_seed's) when the caller has read them already."""
    seed = graph.sweep.seed
    cols, glue = glue or glue_by_seed(graph)
    wic = _wic_by_seed(graph) if wic is None else wic
    forget = _seed_values(graph, "forget", _forget_metric)
    reattached = {name: g["reattached"] for name, g in forgetting_tables(graph).items()} if forget else {}
    label = {k: _label(v["row"]) for d in (glue, wic, forget) for k, v in d.items()}
    out = []
    for a, b, question, family in study_pairs(graph):
        for c in cols:
            if a in glue and b in glue:
                out.append({"family": f"GLUE AVG: {family}" if c == "AVG" else "GLUE per task", "question": question,
                            "a": a, "b": b, "column": c,
                            "result": stats.paired(glue[a]["cols"][c], glue[b]["cols"][c], seed, f"{a}|{b}|{c}")})
    for src in graph.sweep.experiments.transfer_from:
        for mode in ("frequency", "keep"):
            moved = moved_key(graph.sweep, src, mode)
            if moved in wic and src in wic:
                out.append({"family": "WiC", "question": "semantics is retained", "a": moved, "b": src,
                            "column": "WiC", "result": stats.paired(wic[moved]["cols"]["WiC"], wic[src]["cols"]["WiC"],
                                                                    seed, f"{moved}|{src}|WiC")})
        back_of = {moved: back for back, moved in reattached.get(src, {}).items()}
        for moved in [k for k in forget if k.startswith(moved_key(graph.sweep, src, ""))
                      and k not in reattached.get(src, {})]:
            if src not in forget:
                continue
            pairs = [(moved, src, "forgetting", "the source language is forgotten")]
            if back_of.get(moved) in forget:   # forgetting.reattach: split the drop into the body's and the embeddings'
                pairs += [(back_of[moved], src, "forgetting: re-attached", "the body forgot the source"),
                          (back_of[moved], moved, "forgetting: re-attached", "the source's embeddings bring it back")]
            for a, b, family, question in pairs:
                for c in forget[a]["cols"]:
                    if c in forget[b]["cols"]:
                        out.append({"family": family, "question": question, "a": a, "b": b, "column": c,
                                    "result": stats.paired(forget[a]["cols"][c], forget[b]["cols"][c], seed,
                                                           f"{a}|{b}|{c}")})
    for family in dict.fromkeys(c["family"] for c in out):
        # pairs too few for a verdict stay out of the family: they would only raise the others' bar
        members = [c for c in out if c["family"] == family and c["result"] is not None
                   and c["result"].n >= stats.MIN_PAIRS]
        for c, adj in zip(members, stats.holm([c["result"].t_p for c in members])):
            c["result"].holm_p = adj
    for c in out:
        c["label_a"], c["label_b"] = label.get(c["a"], c["a"]), label.get(c["b"], c["b"])
        c["verdict"] = stats.verdict(c["result"])
    return out


def comparison_table(comps: list[dict]) -> list[list]:
    table = [["family", "a", "b", "column", "n", "a - b", "lo", "hi", "t-test p", "Holm p", "Wilcoxon p", "verdict"]]
    for c in comps:
        r = c["result"]
        table.append([c["family"], c["label_a"], c["label_b"], c["column"],
                      *((r.n, r.mean_diff, *(r.interval or (None, None)), r.t_p, r.holm_p, r.wilcoxon_p)
                        if r else (0, None, None, None, None, None, None)), c["verdict"]])
    return table


def _p(v) -> str:
    return "–" if v is None else ("n/d" if not _defined(v) else f"{v:.3f}")


def _comparison_markdown(table: list[list]) -> str:
    rows = [["a", "b", "column", "n", "a − b [95% CI]", "t-test p", "Holm p", "Wilcoxon p", "verdict"]]
    for fam, a, b, col, n, diff, lo, hi, tp, hp, wp, verdict in table[1:]:
        ci = "–" if diff is None else (f"{diff:+.2f} [{lo:+.2f}, {hi:+.2f}]" if lo is not None else f"{diff:+.2f}")
        rows.append([a, b, col, str(n), ci, _p(tp), _p(hp), _p(wp), verdict])
    return markdown(rows)


def syntax_intervals(graph: Graph, a: tuple[str, list], b: tuple[str, list]) -> dict | None:
    """The structural-probe comparison of two models at their Table 3 layers (UUAS and DSpr each at the layer
    chosen on dev), bootstrapped over the test sentences (stats.sentence_paired), x100; None when either
    probe saved no per-sentence scores (a probe run before they were kept)."""
    from stages.probe import SENTENCES_FILE

    def scores(key: str, layer) -> dict | None:
        f = graph.node_dir(f"probe/{key}/layer{layer}") / SENTENCES_FILE
        if layer is None or not f.is_file():
            return None
        with np.load(f) as z:
            return {k: z[k] for k in z.files}

    p = graph.sweep.probe
    out = {}
    for metric, col in (("uuas", 4), ("dspr", 5)):
        sa, sb = scores(a[0], a[1][col]), scores(b[0], b[1][col])
        if sa is None or sb is None:
            return None
        r = stats.sentence_paired(sa, sb, graph.sweep.seed, f"syntax|{a[0]}|{b[0]}|{metric}", p.min_words,
                                  p.max_words)
        if r is None:
            return None
        point, (lo, hi) = r[metric]
        out[metric] = (100 * point, (100 * lo, 100 * hi))
        out["sentences"] = len(sa["length"])
    return out


def findings(graph: Graph, comps: list[dict], wic: dict[str, dict] | None = None) -> str:
    """The paper's four findings, and for each source of this sweep whether they hold, fail or cannot be told
    apart at its number of seeds. `wic`: _wic_by_seed's result, when the caller has it."""
    by = {(c["a"], c["b"], c["column"]): c for c in comps}
    t3 = {tuple(r[:2]): r for r in probing_tables(graph)[0][1:]} if any(
        n.kind == "probe" for n in graph.nodes.values()) else {}
    rows_of = {n.model: n.row for n in graph.nodes.values() if n.model}
    wic = _wic_by_seed(graph) if wic is None else wic
    lines = []

    def said(c, holds: str, fails: str) -> str:
        r = c["result"]
        if r is None:
            return "cannot be told: fewer than 2 seeds with both models"
        ci = f" [{r.interval[0]:+.2f}, {r.interval[1]:+.2f}]" if r.interval else ""
        what = f"{r.mean_diff:+.2f}{ci} over {r.n} seeds, Holm p {_p(r.holm_p)}"
        if c["verdict"] == "higher":
            return f"{holds} ({what})"
        if c["verdict"] == "lower":
            return f"{fails} ({what})"
        if r.n < stats.MIN_PAIRS:
            return f"cannot be told: {r.n} seeds, a test needs {stats.MIN_PAIRS} ({r.mean_diff:+.2f}{ci})"
        return f"cannot be told apart at {r.n} seeds ({what})"

    L = graph.sweep.target.language
    target = "English" if L == "en" else f"[{L}]"
    for src in graph.sweep.experiments.transfer_from:
        freq = moved_key(graph.sweep, src, "frequency")
        name = graph.sweep.sources[src].label or src
        lines.append(f"\n[{name}]\n")
        c = by.get((freq, scratch_key(graph.sweep), "AVG"))
        lines.append(f"1. Transferred models beat the {target} model from scratch on GLUE (AVG, "
                     f"[{name}→{L}][{L}] − [{L}][{L}]): "
                     + (said(c, "holds", "does not hold: lower") if c else "not in this sweep") + "\n")
        c = by.get((freq, scratch_key(graph.sweep, src), "AVG"))
        if c:   # experiments.scratch_budget: match
            lines.append(f"   At equal compute ([{L}][{L}] trained on [{name}→{L}][{L}]'s {target} tokens plus "
                         f"[{name}]'s own pretraining): " + said(c, "holds", "does not hold: lower") + "\n")
        moved_row, src_row = rows_of.get(freq), rows_of.get(src)
        pm, ps = (t3.get(tuple(r)) if r else None for r in (moved_row, src_row))
        if pm and ps and all(_defined(pm[i]) and _defined(ps[i]) for i in (2, 3)):
            du, dd = pm[2] - ps[2], pm[3] - ps[3]
            boot = syntax_intervals(graph, (freq, pm), (src, ps))
            if boot:
                (_, (ul, uh)), (_, (dl, dh)) = boot["uuas"], boot["dspr"]
                verdict = ("holds" if ul > 0 and dl > 0 else "does not hold: lower" if uh < 0 or dh < 0 else
                           "cannot be told apart")
                lines.append(f"2. Syntax is learned during transfer (structural probe, [{name}→{L}][{L}] − "
                             f"[{name}]): {verdict}: UUAS {du:+.2f} [{ul:+.2f}, {uh:+.2f}], DSpr {dd:+.2f} "
                             f"[{dl:+.2f}, {dh:+.2f}] (95% paired bootstrap over the {boot['sentences']:,} test "
                             "sentences; one probe per model and layer, so no seed interval)\n")
            else:
                verdict = "holds in direction" if du > 0 and dd > 0 else "does not hold"
                lines.append(f"2. Syntax is learned during transfer (structural probe, [{name}→{L}][{L}] − "
                             f"[{name}]): {verdict}: UUAS {du:+.2f}, DSpr {dd:+.2f} (one probe per model and layer: "
                             "no seed interval; no per-sentence scores for a sentence interval)\n")
        else:
            lines.append("2. Syntax is learned during transfer: no probe results for both models\n")
        c = by.get((freq, src, "WiC"))
        if c and c["result"]:
            r = c["result"]
            means = [np.mean([v for v in wic[k]["cols"]["WiC"].values() if _defined(v)]) for k in (freq, src)]
            chance = "; both models near chance (50), so there is little to retain" if all(
                abs(m - 50) < 5 for m in means) else ""
            state = {"higher": "holds (higher after transfer)", "lower": "does not hold: lower after transfer",
                     "not told apart": "consistent: no difference told apart",
                     "too few seeds": f"cannot be told: {r.n} seeds, a test needs {stats.MIN_PAIRS}"}[c["verdict"]]
            lines.append(f"3. Semantics is retained from the source (WiC, [{name}→{L}][{L}] − [{name}]): {state} "
                         f"({r.mean_diff:+.2f} over {r.n} seeds, Holm p {_p(r.holm_p)}){chance}\n")
        else:
            lines.append("3. Semantics is retained from the source (WiC): no WiC results for both models\n")
        own = set(graph.sweep.sources[src].source_tasks)
        forgot = [c for c in comps if c["family"] == "forgetting" and c["a"] == freq and c["column"] in own]
        if forgot:
            parts = [f"{c['column']} " + said(c, "higher after transfer", "lower: forgotten") for c in forgot]
            lines.append(f"4. The source language is forgotten ([{name}→{L}][{L}] − [{name}] on source tasks): "
                         + "; ".join(parts) + "\n")
            body = [c for c in comps if c["family"] == "forgetting: re-attached" and c["b"] == src
                    and c["a"] == f"{freq}-reattached" and c["column"] in own]
            if body:
                parts = [f"{c['column']} " + said(c, "higher with the source's embeddings back",
                                                  "lower: the body forgot") for c in body]
                lines.append(f"   With [{name}]'s embeddings re-attached (re-attached − [{name}]): "
                             + "; ".join(parts) + "\n")
        else:
            lines.append("4. The source language is forgotten: no source-language results for both models\n")
    return "".join(lines)


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
        # every forget run read once, for the tables, the re-attach split and Figure 3
        groups, forget = forgetting_tables(graph), _seed_values(graph, "forget", _forget_metric)
        for name, g in groups.items():
            _write_csv(folder / f"table8_scandisent_{name}.csv", g["table8"])
            text += (f"\nSentiment accuracy x100, [{name}] models (Table 8 shape; columns: ScandiSent language)\n\n"
                     + markdown(g["table8"]))
            if g["table9"]:
                _write_csv(folder / f"table9_stsb_{name}.csv", g["table9"])
                text += f"\nTranslated STS-B x100, [{name}] models (Table 9 shape)\n\n" + markdown(g["table9"])
            if g["reattached"]:
                ra = reattach_table(graph, name, g, forget)
                _write_csv(folder / f"forgetting_reattached_{name}.csv", ra)
                text += (f"\nForgetting split in two, [{name}] source tasks x100 (STS-B: Pearson): each [{name}→en] "
                         f"model fine-tuned again with [{name}]'s own vocabulary and word embeddings re-attached to "
                         f"its trained body. body forgot = [{name}] − re-attached; lost with the embeddings = "
                         "re-attached − transferred (paired tests: family \"forgetting: re-attached\" below)\n\n"
                         + markdown(ra))
        f3 = figure3_data(graph, groups, forget)
        _write_csv(folder / "figure3_scandisent.csv", f3)
        if _bar_figure(folder / "figure3_scandisent.png", f3, 1, 1, (2, 3), 4,
                       "ScandiSent", "accuracy - group mean (x100)", err_cols=(5, 6)):
            text += ("\nFigure 3: figure3_scandisent.png (numbers: figure3_scandisent.csv; error bars: 95% seed-"
                     "bootstrap interval of each mean; the group mean is over the group's models without the "
                     "re-attached ones)\n")
    if "winogender" in kinds:
        t10 = winogender_table(graph)
        _write_csv(folder / "table10_winogender.csv", t10)
        text += "\nWinogender x100 (Table 10 shape): gender parity score and accuracy\n\n" + markdown(t10)
    glue = glue_by_seed(graph)   # every finished fine-tune read once: Figure 2 and the statistics below
    f2 = figure2_data(graph, glue)
    if len(f2) > 1:
        _write_csv(folder / "figure2_max_gain.csv", f2)
        if _bar_figure(folder / "figure2_max_gain.png", f2, 0, 1, (), 2, "max gain over [en][en]", "points (x100)",
                       err_cols=(3, 4)):
            text += ("\nFigure 2: figure2_max_gain.png (numbers: figure2_max_gain.csv; error bars: 95% bootstrap "
                     "interval of the larger model's gain, paired by fine-tuning seed)\n")
    inits = init_table(graph)
    if len(inits) > 1:
        _write_csv(folder / "inits.csv", inits)
        text += ("\nInitialisations: rows of the embedding matrix copied from one source row, composed from several, "
                 "random or special (by role); identity % = ordinary tokens whose row is the source row of the same "
                 "string; cosine of the rows not copied to their nearest source row and mean to the 10 nearest; "
                 "moved = ||W - W_init|| / ||W_init|| after continued pretraining (embeddings; the whole body)\n\n"
                 + markdown(inits))
    text += _statistics_section(graph, folder, glue)
    text += _curve_section(graph, folder)
    # Apart from report.md: wall times differ from run to run, and report.md is what a rerun reproduces byte for byte.
    cost = cost_table(graph)
    _write_csv(folder / "cost.csv", cost)
    (folder / "cost.md").write_text(
        "Cost per model (each node's DONE `compute`): its own pretraining (tokens seen, wall hours, MFU on a GPU) and "
        "every evaluation node of it (finished / planned, training examples seen); GPU-h = wall x the trial's GPU "
        "share, CPU-h = wall x its CPUs, pretraining and evaluations together. A transferred model's row leaves out "
        "its source's own pretraining (the source's row); \"shared\" holds the tokenizers, token caches and vectors "
        "every model reads\n\n" + _cost_markdown(cost))
    text += ("\nCost per model: cost.md (numbers: cost.csv). Wall times vary from run to run; everything in this "
             "file is reproducible from the config's seeds\n")
    text += _degenerate_section(degenerate_runs(graph))
    (folder / "report.md").write_text(text)
    return text, folder


# --- learning curves (the sweep's learning_curve section) -------------------------------------------------

CURVE_HEADER = ["Lang", "Vocab", "task", "budget", "tokens", "mean", "lo", "hi", "seeds"]
MATCH_HEADER = ["Lang", "Vocab", "task", "[en][en] final", "lo", "hi", "tokens to reach lo", "tokens to match",
                "tokens to pass hi"]


def _task_score(done: dict, task: str) -> float:
    """A fine-tune's score on `task` x100 (MNLI: the mean of m and mm); NaN when undefined or flagged."""
    keys = [key for _, _, key in _columns([task])]
    vals = [_score(done, k) if k in (done.get("metrics") or {}) else math.nan for k in keys]
    return float(np.mean(vals)) if all(_defined(v) for v in vals) else math.nan


def curve_points(graph: Graph) -> dict[str, dict]:
    """{model: {"row", "points": {fraction: {"tokens", "scores": {task: {seed: x100}}}}}} for every model with
    learning-curve nodes. Fraction 1.0 is the end of the budget: the model's own GLUE fine-tunes of the curve's
    tasks and seeds. Tokens are what the segment (or the whole pretraining) had trained on when it ended."""
    lc = graph.sweep.learning_curve
    if lc is None:
        return {}
    seeds = set(lc.seeds or graph.sweep.finetune.seeds)
    keys = sorted(dict.fromkeys(n.model for n in graph.nodes.values() if n.kind == "curve"),
                  key=lambda k: model_rank(graph, k))
    out: dict[str, dict] = {}
    for key in keys:
        out[key] = {"row": None, "points": {}}
        for f in [*lc.fractions, 1.0]:
            pre = read_done(graph, f"pretrain/{key}" if f == 1.0 else curve_point(key, f))
            out[key]["points"][f] = {"tokens": (pre or {}).get("result", {}).get("tokens_seen"),
                                     "scores": {t: {} for t in lc.tasks}}
    for n in graph.nodes.values():
        cfg = n.params["config"] if n.kind in ("curve", "finetune") else None
        if cfg is None or n.model not in out or cfg["task"] not in lc.tasks or cfg["seed"] not in seeds:
            continue
        f = n.params["fraction"] if n.kind == "curve" else 1.0
        out[n.model]["row"] = n.row
        done = read_done(graph, n.id)
        if done and done.get("metrics"):
            out[n.model]["points"][f]["scores"][cfg["task"]][cfg["seed"]] = _task_score(done, cfg["task"])
    return out


def curve_table(graph: Graph, points: dict[str, dict]) -> list[list]:
    """One row per model, task and budget point: tokens, the mean over seeds with its 95% seed-bootstrap
    interval, and the seed count."""
    rows = [CURVE_HEADER]
    for key, m in points.items():
        for task in graph.sweep.learning_curve.tasks:
            for f, p in m["points"].items():
                vals = list(p["scores"][task].values())
                ok = [v for v in vals if _defined(v)]
                ci = stats.mean_interval(ok, graph.sweep.seed, f"curve|{key}|{task}|{f}")
                rows.append([*(m["row"] or (key, "")), task, f, p["tokens"], _mean(vals) if vals else None,
                             *(ci or (None, None)), f"{len(ok)}/{len(vals)}"])
    return rows


def match_table(graph: Graph, table: list[list]) -> list[list]:
    """Per model with a curve and task: [en][en]'s final score with its interval, and the pretraining tokens at
    which the model's mean first reaches the interval's low end, the mean itself and the high end. A point is
    a cut of the budget, so "first" is the first cut at or above the line: the true crossing lies between it and
    the cut before. None: not reached within the budget (or [en][en] has no final score yet). [en][en]'s own
    row says when it reached its final score: at 100% unless its curve is not monotone."""
    out = [MATCH_HEADER]
    ref = {}
    by_model: dict[tuple, list[list]] = {}
    for r in table[1:]:
        by_model.setdefault((r[0], r[1], r[2]), []).append(r)
    scratch = [n for n in graph.nodes.values() if n.model == scratch_key(graph.sweep) and n.kind == "finetune"]
    if not scratch:
        return out
    seeds = set(graph.sweep.learning_curve.seeds or graph.sweep.finetune.seeds)
    for task in graph.sweep.learning_curve.tasks:
        vals = [_task_score(d, task) for n in scratch if n.params["config"]["task"] == task
                and n.params["config"]["seed"] in seeds and (d := read_done(graph, n.id)) and d.get("metrics")]
        ok = [v for v in vals if _defined(v)]
        if ok:
            ci = stats.mean_interval(ok, graph.sweep.seed, f"curve|{scratch_key(graph.sweep)}|{task}|1.0") \
                or (None, None)
            ref[task] = (float(np.mean(ok)), *ci)
    for (lang, vocab, task), rows in by_model.items():
        if task not in ref:
            continue
        mean, lo, hi = ref[task]
        rows = sorted((r for r in rows if _defined(r[5]) and r[4] is not None), key=lambda r: r[3])

        def first(line):
            return next((r[4] for r in rows if line is not None and r[5] >= line), None)
        out.append([lang, vocab, task, mean, lo, hi, first(lo), first(mean), first(hi)])
    return out


def _curve_markdown(table: list[list]) -> str:
    def cell(i, v):
        if i == 3:
            return f"{v:.0%}"
        if i == 4:
            return "–" if v is None else f"{v:,}"
        return v
    return markdown([table[0], *[[cell(i, v) for i, v in enumerate(r)] for r in table[1:]]])


def _match_markdown(table: list[list]) -> str:
    def cell(i, v):
        if i >= 6:
            return "not within the budget" if v is None else f"{v:,}"
        return v
    return markdown([table[0], *[[cell(i, v) for i, v in enumerate(r)] for r in table[1:]]])


def _curve_figure(path: Path, table: list[list], match: list[list]) -> bool:
    """One panel per task: each model's mean against pretraining tokens with its 95% band, and [en][en]'s final
    score with its interval as a dashed line and band."""
    rows = [r for r in table[1:] if _defined(r[5]) and r[4] is not None]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r[2] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for label in dict.fromkeys((r[0], r[1]) for r in rows if r[2] == task):
            pts = sorted((r for r in rows if r[2] == task and (r[0], r[1]) == label), key=lambda r: r[4])
            x = [r[4] for r in pts]
            line, = ax.plot(x, [r[5] for r in pts], "o-", markersize=3, label=_label(label))
            banded = [r for r in pts if r[6] is not None]
            if banded:
                ax.fill_between([r[4] for r in banded], [r[6] for r in banded], [r[7] for r in banded],
                                color=line.get_color(), alpha=0.15)
        ref = next((r for r in match[1:] if r[2] == task), None)
        if ref:
            ax.axhline(ref[3], color="black", linestyle="--", linewidth=0.8, label="[en][en] final")
            if ref[4] is not None:
                ax.axhspan(ref[4], ref[5], color="black", alpha=0.08)
        ax.set_title(f"{TASK_NAMES.get(task, task)} against pretraining tokens")
        ax.set_xlabel("tokens of continued pretraining")
        ax.set_ylabel("score x100")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _curve_section(graph: Graph, folder: Path) -> str:
    points = curve_points(graph)
    if not points:
        return ""
    table = curve_table(graph, points)
    match = match_table(graph, table)
    _write_csv(folder / "learning_curves.csv", table)
    _write_csv(folder / "tokens_to_match.csv", match)
    text = ("\nLearning curves x100 (learning_curve): GLUE fine-tuned from cuts of each model's continued "
            "pretraining; budget 100% is the model's Table 2 fine-tunes of the same tasks and seeds; interval: 95% "
            "seed bootstrap\n\n" + _curve_markdown(table))
    if len(match) > 1:
        text += ("\nPretraining tokens at which each model's mean first reaches [en][en]'s final score (its "
                 "interval's low end, its mean, its high end), read at the cuts: the crossing lies between the "
                 "cut named and the one before\n\n" + _match_markdown(match))
    if _curve_figure(folder / "learning_curves.png", table, match):
        text += "\nLearning curves: learning_curves.png (numbers: learning_curves.csv, tokens_to_match.csv)\n"
    return text


# --- what each model cost (the DONE files' `compute`, orchestrator/compute.py) -------------------------

COST_HEADER = ["Lang", "Vocab", "pretrain tokens", "pretrain wall h", "pretrain MFU", "evaluation nodes",
               "examples seen", "GPU-h", "CPU-h"]


def _node_cost(graph: Graph, node, done: dict) -> dict:
    """A finished node's compute record; for a DONE written before nodes recorded one, the wall time and the
    node's CPUs only (its GPU share is not known: None)."""
    if done.get("compute"):
        return done["compute"]
    cpus = float(node.resources.get("cpu") or 1)
    return {"wall_s": done.get("seconds", 0.0), "cpus": cpus, "cpu_seconds": done.get("seconds", 0.0) * cpus,
            "gpu_seconds": None}


def cost_table(graph: Graph) -> list[list]:
    """One row per model: its own pretraining (tokens seen, wall hours, MFU on a GPU) and all its evaluation
    nodes (fine-tunes, probes, WiC, forgetting, Winogender; finished / planned, examples seen), with GPU-hours
    (wall x GPU share) and CPU-hours (wall x CPUs) of both together. Nodes no model owns (tokenizers, token
    caches, fastText vectors) form the row "shared"; the last row sums everything. A model's row does not
    include the source model it was moved from: that is the source's own row. GPU-h is None when a counted
    node predates the compute record."""
    rows: dict[str | None, dict] = {}
    for node in graph.nodes.values():
        r = rows.setdefault(node.model, {"row": node.row, "tokens": 0, "wall": 0.0, "mfu": [], "planned": 0,
                                         "done": 0, "examples": 0, "gpu": 0.0, "cpu": 0.0, "pre": False})
        if node.kind == "pretrain" and node.row:
            r["row"] = node.row
        if node.kind != "pretrain":
            r["planned"] += 1
        done = read_done(graph, node.id)
        if not done:
            continue
        c = _node_cost(graph, node, done)
        r["gpu"] = None if r["gpu"] is None or c.get("gpu_seconds") is None else r["gpu"] + c["gpu_seconds"]
        r["cpu"] += c.get("cpu_seconds") or 0.0
        if node.kind == "pretrain":
            r["pre"] = True
            r["tokens"] += c.get("tokens_seen") or (done.get("result") or {}).get("tokens_seen") or 0
            r["wall"] += c.get("wall_s") or 0.0
            if c.get("mfu") is not None:
                r["mfu"].append(c["mfu"])
        else:
            r["done"] += 1
            r["examples"] += c.get("examples_seen") or 0
    out, total = [COST_HEADER], {"tokens": 0, "wall": 0.0, "done": 0, "planned": 0, "examples": 0, "gpu": 0.0,
                                 "cpu": 0.0}
    for key, r in sorted(rows.items(), key=lambda kv: model_rank(graph, kv[0])):   # "shared" last
        label = tuple(r["row"]) if key is not None and r["row"] else (key or "shared", "")
        out.append([*label, r["tokens"] if r["pre"] else None, r["wall"] / 3600 if r["pre"] else None,
                    _mean(r["mfu"]) if r["mfu"] else None, f"{r['done']}/{r['planned']}", r["examples"],
                    None if r["gpu"] is None else r["gpu"] / 3600, r["cpu"] / 3600])
        for k in ("tokens", "wall", "done", "planned", "examples", "cpu"):
            total[k] += r[k]
        total["gpu"] = None if total["gpu"] is None or r["gpu"] is None else total["gpu"] + r["gpu"]
    out.append(["all", "", total["tokens"], total["wall"] / 3600, None, f"{total['done']}/{total['planned']}",
                total["examples"], None if total["gpu"] is None else total["gpu"] / 3600, total["cpu"] / 3600])
    return out


def _cost_markdown(table: list[list]) -> str:
    """Hours to 3 significant digits (a demo model costs a few CPU-minutes), MFU as %, counts with commas."""
    def cell(i: int, v) -> str:
        if v is None:
            return "–"
        if i == 4:
            return f"{v:.1%}"
        if i in (3, 7, 8):
            return f"{v:.3g}"
        return f"{v:,}" if isinstance(v, int) else str(v)
    return markdown([table[0], *[[cell(i, v) for i, v in enumerate(r)] for r in table[1:]]])


def seed_rows(cols: list[str], models: dict[str, dict]) -> list[list]:
    """One row per (model, column, seed): the numbers behind the seed-spread figure."""
    rows = [["Lang", "Vocab", "column", "seed", "score"]]
    for entry in models.values():
        for c in cols:
            rows += [[*entry["row"], c, seed, v] for seed, v in sorted(entry["cols"].get(c, {}).items())]
    return rows


def _seed_spread_figure(path: Path, cols: list[str], models: dict[str, dict], ci: list[list]) -> bool:
    """Per column, every model's seed scores as dots, and its mean with the 95% interval as a bar."""
    if not any(v for e in models.values() for v in e["cols"].values()):
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [_label(e["row"]) for e in models.values()]
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 0.35 * len(labels) + 1.6), squeeze=False,
                             sharey=True)
    for j, (ax, c) in enumerate(zip(axes[0], cols)):
        for i, (entry, r) in enumerate(zip(models.values(), ci[1:])):
            vals = [v for v in entry["cols"].get(c, {}).values() if _defined(v)]
            ax.plot(vals, [i] * len(vals), "o", color="tab:blue", alpha=0.6, markersize=4)
            mean, lo, hi = r[2 + 4 * j: 5 + 4 * j]
            if mean is not None:
                ax.plot([mean], [i], "|", color="black", markersize=12)
                if lo is not None:
                    ax.hlines(i, lo, hi, color="black", linewidth=1)
        ax.set_title(c)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=7)
    axes[0][0].invert_yaxis()
    fig.suptitle("GLUE x100 per fine-tuning seed (dots), mean and 95% seed-bootstrap interval (bar)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _statistics_section(graph: Graph, folder: Path, glue: tuple[list[str], dict] | None = None) -> str:
    cols, glue = glue or glue_by_seed(graph)   # every finished fine-tune read once, for all the tables below
    wic = _wic_by_seed(graph)
    ci = interval_table(graph, cols, glue)
    _write_csv(folder / "table2_glue_intervals.csv", ci)
    _write_csv(folder / "glue_seeds.csv", seed_rows(cols, glue))
    comps = comparisons(graph, (cols, glue), wic)
    table = comparison_table(comps)
    _write_csv(folder / "comparisons.csv", table)
    text = ("\nGLUE x100 with 95% intervals (bootstrap of the mean over fine-tuning seeds, "
            f"{stats.BOOTSTRAP_SAMPLES:,} resamples, seeded; with n seeds an interval spans at most the n seeds' "
            "values)\n\n"
            + _interval_markdown(ci, cols))
    if _seed_spread_figure(folder / "seed_spread.png", cols, glue, ci):
        text += "\nSeed spread: seed_spread.png (numbers: glue_seeds.csv, table2_glue_intervals.csv)\n"
    if len(table) > 1:
        text += ("\nPaired comparisons by fine-tuning seed (a − b; interval: bootstrap of the mean difference). "
                 "Verdict: paired t-test (scipy ttest_rel) after Holm's correction within each family at 5%. The "
                 "GLUE AVG comparisons form three families, one per question asked before the runs (transfer: "
                 "against [en][en] and the source model; vocabulary: against keeping it and against random-map; "
                 "inits: each against frequency rank)"
                 + ("; equal compute, a fourth: against [en][en] trained on the same English tokens plus the source's "
                    "own pretraining (experiments.scratch_budget: match)" if any(r[0] == "GLUE AVG: equal compute"
                                                                              for r in table[1:]) else "")
                 + "; per-task GLUE, WiC and forgetting are families of their own. Wilcoxon "
                 "(exact signed-rank) is shown but cannot reach 5% below 6 seeds (smallest p 2/2^n). No verdict "
                 f"below {stats.MIN_PAIRS} seeds: such pairs are shown and left out of the Holm family.\n")
        for family in dict.fromkeys(r[0] for r in table[1:]):
            text += f"\n{family}\n\n" + _comparison_markdown([table[0], *[r for r in table[1:] if r[0] == family]])
        text += "\nFindings (the paper's four, for this sweep)\n" + findings(graph, comps, wic)
    return text
