"""The GLUE tasks of the paper: a task registry, split loading (GLUE TSV root or the hub) and metrics.

Two data sources must give identical examples: the TSV files of the official GLUE download script (offline
clusters) and the hub dataset `nyu-mll/glue`. So label ids follow the hub's ClassLabel order everywhere, and
the TSV readers find columns by header name in each file's real layout. WNLI is left out, as in the paper
(and BERT): its dev set is adversarial to train-set memorisation, see GLUE FAQ 12.

Each task also names its unlabelled test split(s) and the leaderboard file their predictions go to
(`TaskSpec.test_splits`, read by `load_test_split`; the files are written by `stages.glue_submit`).

Metrics are computed with scikit-learn / scipy rather than `evaluate.load`, which fetches metric scripts
from the hub and fails offline. Values are fractions / correlations (report code multiplies by 100). A
correlation with a constant vector is undefined and comes back NaN (see `_correlations`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from stages import source_tasks
from stages.common import StageError
from stages.task_spec import (ONE_DEV, DevSplit, DroppedRows, Example, TaskSpec, TestSplit, layout_hint,
                              read_test_tsv, read_tsv)

__all__ = ["GLUE_TASKS", "DevSplit", "DroppedRows", "Example", "TaskSpec", "TestSplit", "compute_metrics",
           "get_task", "load_split", "load_test_split", "primary_metric"]


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")


def _test(folder: str, submission: str, a: str, b: str | None, hub_columns: tuple[str, str | None],
          index: str = "index") -> tuple[TestSplit, ...]:
    """The one test split of a task: `<folder>/test.tsv`, whose header names the index and text columns."""
    return (TestSplit("", submission, (f"{folder}/test.tsv",), (index, a, b), "", "test", hub_columns),)


# Test files as download_glue_data.py writes them. They all have a header (CoLA's too, unlike its train and
# dev files) and an index column, which the leaderboard file repeats; QQP calls it `id`. AX, the diagnostic
# set, has no training data: the MNLI model predicts it. download_glue_data.py saves it as
# diagnostic/diagnostic.tsv; the GLUE site serves the same file as AX.tsv.
_MNLI_TESTS = (
    TestSplit("m", "MNLI-m.tsv", ("MNLI/test_matched.tsv",), ("index", "sentence1", "sentence2"), "",
              "test_matched", ("premise", "hypothesis")),
    TestSplit("mm", "MNLI-mm.tsv", ("MNLI/test_mismatched.tsv",), ("index", "sentence1", "sentence2"), "",
              "test_mismatched", ("premise", "hypothesis")),
    TestSplit("ax", "AX.tsv", ("diagnostic/diagnostic.tsv", "AX/AX.tsv", "AX.tsv"),
              ("index", "sentence1", "sentence2"), "ax", "test", ("premise", "hypothesis")),
)

GLUE_TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    # CoLA rows: source, label, original judgement ("*" or empty), sentence.
    TaskSpec("cola", "CoLA", _BINARY, ONE_DEV, ("sentence", None), (3, None, 1), False, 4, ("mcc", "accuracy"),
             _test("CoLA", "CoLA.tsv", "sentence", None, ("sentence", None))),
    TaskSpec("sst2", "SST-2", _BINARY, ONE_DEV, ("sentence", None), ("sentence", None, "label"), True, None,
             ("accuracy",), _test("SST-2", "SST-2.tsv", "sentence", None, ("sentence", None))),
    TaskSpec("mrpc", "MRPC", _BINARY, ONE_DEV, ("sentence1", "sentence2"), ("#1 String", "#2 String", "Quality"),
             True, None, ("f1", "accuracy"),
             _test("MRPC", "MRPC.tsv", "#1 String", "#2 String", ("sentence1", "sentence2"))),
    TaskSpec("stsb", "STS-B", None, ONE_DEV, ("sentence1", "sentence2"), ("sentence1", "sentence2", "score"),
             True, None, ("spearman", "pearson"),
             _test("STS-B", "STS-B.tsv", "sentence1", "sentence2", ("sentence1", "sentence2"))),
    TaskSpec("qqp", "QQP", _BINARY, ONE_DEV, ("question1", "question2"), ("question1", "question2", "is_duplicate"),
             True, None, ("f1", "accuracy"),
             _test("QQP", "QQP.tsv", "question1", "question2", ("question1", "question2"), index="id")),
    TaskSpec("mnli", "MNLI", ("entailment", "neutral", "contradiction"),
             (DevSplit("m", "dev_matched.tsv", "validation_matched"),
              DevSplit("mm", "dev_mismatched.tsv", "validation_mismatched")),
             ("premise", "hypothesis"), ("sentence1", "sentence2", "gold_label"), True, None, ("accuracy",),
             _MNLI_TESTS),
    TaskSpec("qnli", "QNLI", _NLI2, ONE_DEV, ("question", "sentence"), ("question", "sentence", "label"), True, None,
             ("accuracy",), _test("QNLI", "QNLI.tsv", "question", "sentence", ("question", "sentence"))),
    TaskSpec("rte", "RTE", _NLI2, ONE_DEV, ("sentence1", "sentence2"), ("sentence1", "sentence2", "label"), True, None,
             ("accuracy",), _test("RTE", "RTE.tsv", "sentence1", "sentence2", ("sentence1", "sentence2"))),
)}


def get_task(task: str) -> TaskSpec:
    key = task.lower()
    if key == "wnli":
        raise StageError("the paper (like BERT) excludes WNLI: its dev set punishes train-set memorisation and "
                         "models score below the majority baseline (GLUE FAQ 12); drop 'wnli' from the task list")
    if key not in GLUE_TASKS:
        if source_tasks.is_source_task(task):   # forgetting tasks share the fine-tuning machinery
            return source_tasks.source_task(task)
        raise StageError(f"unknown task {task!r}; choose a GLUE task ({', '.join(GLUE_TASKS)}) or a "
                         "source-language task (scandisent-<lang>, stsb-<lang>)")
    return GLUE_TASKS[key]


def primary_metric(task: str) -> str:
    return get_task(task).metrics[0]


def _dev_split(spec: TaskSpec, split: str) -> DevSplit:
    for d in spec.dev_splits:
        if d.key == split:
            return d
    keys = ", ".join(repr(d.key) for d in spec.dev_splits)
    raise StageError(f"{spec.name} has no split {split!r}; use 'train' or a dev split key: {keys}")


def _hub_dataset(hub_dataset: str, config: str, hub_split: str, columns: list[str]):
    try:
        from datasets import load_dataset

        ds = load_dataset(hub_dataset, config, split=hub_split)
    except Exception as e:  # offline, unknown dataset, bad cache: all end the same way for the user
        raise StageError(f"cannot load {hub_dataset!r} config {config!r} split {hub_split!r} from the hub: "
                         f"{type(e).__name__}: {e}. Offline, set data_dir to a GLUE root in the official TSV "
                         "layout (CoLA/, SST-2/, ... as download_glue_data.py writes them)") from e
    missing = [c for c in columns if c is not None and c not in ds.column_names]
    if missing:
        raise StageError(f"hub dataset {hub_dataset!r}/{config} lacks column(s) {missing}; it has "
                         f"{ds.column_names}. Use nyu-mll/glue or a copy with the same columns")
    return ds


def _load_hub(spec: TaskSpec, hub_split: str, hub_dataset: str, max_examples: int | None) -> list[Example]:
    a_col, b_col = spec.hub_columns
    ds = _hub_dataset(hub_dataset, spec.name, hub_split, [a_col, b_col, "label"])
    if max_examples is not None:
        ds = ds.select(range(min(max_examples, len(ds))))
    texts_b = ds[b_col] if b_col is not None else [None] * len(ds)
    cast = float if spec.is_regression else int
    return [Example(a, b, cast(y)) for a, b, y in zip(ds[a_col], texts_b, ds["label"])]


def load_split(task: str, split: str, data_dir: str | None, hub_dataset: str = "nyu-mll/glue",
               max_examples: int | None = None, strict: bool = False,
               dropped: DroppedRows | None = None) -> list[Example]:
    """Examples of `split` ("train" or a dev key: "" or MNLI's "m"/"mm"), in file order.

    `max_examples` keeps the first N (quick runs and tests); it does not shuffle. Local rows that hold no
    example are skipped and counted in `dropped` (see stages.task_spec); `strict` fails on them instead.
    """
    spec = get_task(task)
    if max_examples is not None and max_examples < 1:
        raise StageError(f"max_examples must be at least 1 (or None for all), got {max_examples}")
    if spec.name not in GLUE_TASKS:  # ScandiSent / translated STS-B: data_dir is the task's own file or folder
        return source_tasks.load_source_split(spec, split, data_dir, hub_dataset, max_examples, strict, dropped)
    if split == "train":
        tsv_file, hub_split = "train.tsv", "train"
    else:
        dev = _dev_split(spec, split)
        tsv_file, hub_split = dev.tsv_file, dev.hub_split
    if data_dir is None:
        examples = _load_hub(spec, hub_split, hub_dataset, max_examples)
        source = f"hub {hub_dataset}/{spec.name} {hub_split}"
    else:
        folder = Path(data_dir) / spec.folder
        if not folder.is_dir():
            raise StageError(f"GLUE task folder {folder} does not exist; {layout_hint(spec)}")
        path = folder / tsv_file
        if not path.is_file():
            raise StageError(f"GLUE file {path} does not exist; {layout_hint(spec)}")
        examples = read_tsv(spec, path, max_examples, strict, dropped)
        source = str(path)
    if not examples:
        raise StageError(f"{spec.name} split {split or 'dev'!r} from {source} holds no examples; "
                         "re-download the task or point data_dir at the full GLUE root")
    return examples


def find_test_file(test: TestSplit, data_dir: str) -> Path | None:
    """The test file of `test` in a GLUE root, or None when the root has none of its known paths."""
    for name in test.tsv_files:
        if (Path(data_dir) / name).is_file():
            return Path(data_dir) / name
    return None


def load_test_split(task: str, key: str, data_dir: str | None, hub_dataset: str = "nyu-mll/glue",
                    strict: bool = False, dropped: DroppedRows | None = None) -> tuple[list[str], list[Example]] | None:
    """(index column, unlabelled examples) of a GLUE test split, in file order; None when a local GLUE root
    lacks the file (test files are optional: only a leaderboard submission needs them)."""
    spec = get_task(task)
    test = next((t for t in spec.test_splits if t.key == key), None)
    if test is None:
        keys = ", ".join(repr(t.key) for t in spec.test_splits) or "none"
        raise StageError(f"{spec.name} has no test split {key!r}; its test split keys: {keys}")
    if data_dir is None:
        a_col, b_col = test.hub_columns
        ds = _hub_dataset(hub_dataset, test.hub_config or spec.name, test.hub_split, [a_col, b_col, "idx"])
        texts_b = ds[b_col] if b_col is not None else [None] * len(ds)
        return [str(i) for i in ds["idx"]], [Example(a, b, None) for a, b in zip(ds[a_col], texts_b)]
    path = find_test_file(test, data_dir)
    if path is None:
        return None
    indices, examples = read_test_tsv(spec, test, path, strict, dropped)
    if not examples:
        raise StageError(f"{path} holds no test examples; re-download {spec.title} or remove the empty file")
    return indices, examples


# ----------------------------------------------------------------------------------------------------- metrics

def _is_constant(x: np.ndarray) -> bool:
    return x.size == 0 or bool(np.all(x == x.flat[0]))


def _correlations(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    # A constant vector has no correlation with anything: both are undefined (0/0), and NaN says so. A 0.0
    # would pass a collapsed run off as a real, merely poor, score; the fine-tune stage lists NaN metrics in
    # its result's `degenerate`. Checked here rather than left to scipy, which warns on the way to its NaN.
    from scipy.stats import pearsonr, spearmanr

    if _is_constant(pred) or _is_constant(gold):
        return {"spearman": math.nan, "pearson": math.nan}
    return {"spearman": float(spearmanr(pred, gold).statistic), "pearson": float(pearsonr(pred, gold).statistic)}


def compute_metrics(task: str, predictions: Sequence | np.ndarray, labels: Sequence | np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics. `predictions` are class ids (classification) or scores (STS-B)."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    spec = get_task(task)
    pred, gold = np.asarray(predictions), np.asarray(labels)
    if pred.shape != gold.shape or pred.ndim != 1 or pred.size == 0:
        raise StageError(f"compute_metrics({spec.name}): predictions {pred.shape} and labels {gold.shape} must be "
                         "equal-length, non-empty 1-d arrays (class ids, or scores for stsb; not logits)")
    if spec.is_regression:
        return _correlations(pred.astype(np.float64), gold.astype(np.float64))
    pred, gold = pred.astype(np.int64), gold.astype(np.int64)
    out: dict[str, float] = {}
    for name in spec.metrics:
        if name == "mcc":
            # MCC's denominator is 0 when either side is constant. Unlike a correlation this stays 0, not NaN:
            # sklearn (and so GLUE's scoring) defines MCC as 0 there, so 0 is the number the leaderboard gives.
            # sklearn warns on the way, hence the check.
            out[name] = 0.0 if _is_constant(pred) or _is_constant(gold) else float(matthews_corrcoef(gold, pred))
        elif name == "accuracy":
            out[name] = float(accuracy_score(gold, pred))
        elif name == "f1":  # F1 of the positive class 1 (duplicate / paraphrase), GLUE's definition
            out[name] = float(f1_score(gold, pred, labels=[0, 1], pos_label=1, average="binary", zero_division=0.0))
    return out
