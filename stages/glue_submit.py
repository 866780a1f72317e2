"""GLUE leaderboard submissions (gluebenchmark.com): test-set predictions in the layout the site scores.

The leaderboard takes one zip holding one TSV per task, named as in `SUBMISSION_FILES`, each with the header
line `index<TAB>prediction` and one row per test example: the test file's own index, then the prediction as
a label string of the task's TSV files (0/1 for CoLA, SST-2, MRPC, QQP and WNLI; entailment/neutral/
contradiction for MNLI and AX; entailment/not_entailment for QNLI and RTE) or, for STS-B, a score. AX (the
diagnostic set) has no training data and is predicted by the MNLI model. The same layout is written by
jiant's GLUE submission formatter and by transformers' run_glue.py.

The fine-tune stage (with `predict_test`) writes its task's files into `<output_dir>/glue_test/`;
`collect_submission` gathers the files of one model and seed into one folder and zip ready to upload.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.common import StageError, atomic_write, write_text
from stages.task_spec import ONE_DEV, TaskSpec, TestSplit, read_test_tsv

SUBMISSION_FILES = ("CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv",
                    "QNLI.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv")
TEST_DIR = "glue_test"     # inside a fine-tune node's folder
STSB_RANGE = (0.0, 5.0)    # gold similarity scores lie in [0, 5]; a regression head may overshoot either end

# WNLI is not fine-tuned (see stages.glue.get_task), but the leaderboard wants a file for it. As BERT did, the
# submission predicts the majority class everywhere: 0 (not_entailment), 65% of the WNLI test set. This spec
# serves only to read WNLI/test.tsv (columns index, sentence1, sentence2).
WNLI_MAJORITY = "0"
_WNLI_TEST = TestSplit("", "WNLI.tsv", ("WNLI/test.tsv",), ("index", "sentence1", "sentence2"), "", "test",
                       ("sentence1", "sentence2"))
_WNLI = TaskSpec("wnli", "WNLI", ("0", "1"), ONE_DEV, ("sentence1", "sentence2"), ("sentence1", "sentence2", "label"),
                 True, None, ("accuracy",), (_WNLI_TEST,))


def prediction_strings(spec: TaskSpec, predictions: Sequence | np.ndarray) -> list[str]:
    """Leaderboard values of class ids (the task's label strings) or of STS-B scores.

    STS-B scores are clipped to [0, 5], the range of the gold scores, and written with 3 decimals, as common
    submission scripts do: a score outside the range is moved to the nearest score a pair can have.
    """
    pred = np.asarray(predictions)
    if spec.is_regression:
        return [f"{v:.3f}" for v in np.clip(pred.astype(np.float64), *STSB_RANGE)]
    return [spec.label_names[int(i)] for i in pred]


def write_predictions(path: str | Path, indices: Sequence[str], values: Sequence[str]) -> None:
    if len(indices) != len(values):
        raise StageError(f"{path}: {len(indices)} test indices but {len(values)} predictions")
    write_text(path, "index\tprediction\n" + "".join(f"{i}\t{v}\n" for i, v in zip(indices, values)))


def write_wnli_majority(glue_root: str | Path, path: str | Path) -> bool:
    """WNLI.tsv predicting the majority class for every row of `<glue_root>/WNLI/test.tsv`; False without it."""
    test = Path(glue_root) / _WNLI_TEST.tsv_files[0]
    if not test.is_file():
        return False
    indices, _ = read_test_tsv(_WNLI, _WNLI_TEST, test)
    write_predictions(path, indices, [WNLI_MAJORITY] * len(indices))
    return True


@dataclass(frozen=True)
class Submission:
    folder: str           # the leaderboard files, one per task
    zip_file: str         # the same files at the zip's top level: what gluebenchmark.com/submit takes
    files: list[str]      # leaderboard file names present, in SUBMISSION_FILES order
    missing: list[str]    # leaderboard file names absent: the site refuses a zip without all of them


def collect_submission(finetune_dirs: Iterable[str | Path], out_dir: str | Path,
                       glue_root: str | Path | None = None) -> Submission:
    """Gather the leaderboard files of one model and seed (one fine-tune folder per task) into `out_dir`
    and `<out_dir>.zip`; with `glue_root`, add WNLI.tsv (majority class) when its WNLI/test.tsv exists."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in SUBMISSION_FILES:   # a file left from an earlier collection must not pass for this one's
        (out / name).unlink(missing_ok=True)
    source: dict[str, Path] = {}
    for d in map(Path, finetune_dirs):
        for f in sorted((d / TEST_DIR).glob("*.tsv")):
            if f.name in source:
                raise StageError(f"{f.name} comes from both {source[f.name].parent.parent} and {d}; give the "
                                 "fine-tune folders of one model and one seed (one folder per task)")
            source[f.name] = f
    for name, f in source.items():
        with atomic_write(out / name, "wb") as dst:
            dst.write(f.read_bytes())
    if glue_root is not None and "WNLI.tsv" not in source:
        write_wnli_majority(glue_root, out / "WNLI.tsv")
    files = [n for n in SUBMISSION_FILES if (out / n).is_file()]
    zip_file = out.with_name(out.name + ".zip")
    with atomic_write(zip_file, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for name in files:
            z.write(out / name, arcname=name)
    return Submission(str(out), str(zip_file), files, [n for n in SUBMISSION_FILES if n not in files])
