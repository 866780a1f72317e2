"""Source-language tasks of the forgetting study (paper section 4.7, Appendix D): what does a model moved to
English still know of its first language?

* `scandisent-<lang>`: ScandiSent sentiment (Isbister et al. 2021). The corpus ships one CSV per language
  (`sv.csv`, `fi.csv`, `en.csv`, ...) with the columns `text` and `label` (1 positive, 0 negative), 10,000
  rows each; the paper trains on the first 7,500 rows and evaluates on the last 2,500. That split is applied
  here as "first three quarters / last quarter" of the file, which is exactly 7,500 / 2,500 on the real
  files and also works for smaller files of the same layout (the synthetic demo writes 2,000 rows).
* `stsb-<lang>`: a (machine-translated) STS-B, e.g. Swedish STS-B (Isbister & Sahlgren 2020). Local data is
  a folder in the GLUE STS-B layout (`train.tsv`, `dev.tsv` with a header holding sentence1, sentence2 and
  score) or in the original STS benchmark layout (`sts-train.csv`, `sts-dev.csv`: tab-separated, no
  header, score in column 5 and the sentences in columns 6 and 7). On the hub, `timpal0l/stsb_mt_sv`
  (columns sentence1, sentence2, score; splits train and validation).

Both are plain fine-tuning tasks: they reuse `stages.task_spec.TaskSpec`, so the fine-tune stage, its metrics
and its dynamic padding serve them unchanged. `stages.glue.get_task` and `load_split` hand names that are
not GLUE tasks to this module.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from stages.common import StageError
from stages.task_spec import ONE_DEV, DroppedRows, Example, TaskSpec, parse_label, read_tsv

_NAME = re.compile(r"(scandisent|stsb)-([A-Za-z][A-Za-z0-9_]*)")
SCANDISENT_TRAIN_SHARE = 0.75   # 7,500 of the 10,000 rows per language in the paper
STS_ORIGINAL_FILES = {"train": "sts-train.csv", "": "sts-dev.csv"}


def is_source_task(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def source_task(name: str) -> TaskSpec:
    m = _NAME.fullmatch(name)
    if m is None:
        raise StageError(f"unknown source-language task {name!r}; use scandisent-<lang> (ScandiSent sentiment, "
                         "e.g. scandisent-sv) or stsb-<lang> (a translated STS-B, e.g. stsb-sv)")
    family, _lang = m.groups()
    if family == "scandisent":
        return TaskSpec(name, "", ("0", "1"), ONE_DEV, ("text", None), ("text", None, "label"), True, None,
                        ("accuracy",))
    return TaskSpec(name, "", None, ONE_DEV, ("sentence1", "sentence2"), ("sentence1", "sentence2", "score"),
                    True, None, ("spearman", "pearson"))


def _positional_split(rows: list, split: str) -> list:
    """The paper's ScandiSent split: the first three quarters of the rows train, the last quarter evaluates."""
    cut = round(SCANDISENT_TRAIN_SHARE * len(rows))
    return rows[:cut] if split == "train" else rows[cut:]


def _read_scandisent(spec: TaskSpec, path: Path, strict: bool, dropped: DroppedRows) -> list[Example]:
    """Rows are kept or dropped as in GLUE TSVs (stages.task_spec), with one difference: a row with more
    fields than the header is an error in both modes. In a CSV an extra field is an unquoted comma inside the
    review, so the named columns no longer hold its text and label (a TSV's extra fields trail the named ones)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise StageError(f"{path} is empty; a ScandiSent file has a header line `text,label` and one review "
                             "per row")
        header = [h.strip() for h in header]
        if "text" not in header or "label" not in header:
            raise StageError(f"{path}: header {header} lacks `text` and `label`; is this a ScandiSent CSV "
                             "(e.g. sv.csv from ScandiSent.zip)?")
        t_col, y_col = header.index("text"), header.index("label")
        out = []
        for row in reader:
            if not row:
                continue
            where = f"{path.name} line {reader.line_num}"
            if len(row) > len(header) or (strict and len(row) != len(header)):
                raise StageError(f"{where} ({path}): expected {len(header)} comma-separated columns, found "
                                 f"{len(row)}; quote texts that contain commas or line breaks")
            if len(row) <= max(t_col, y_col) or (not row[y_col].strip() and not strict):
                dropped.add(where)
                continue
            out.append(Example(row[t_col], None, parse_label(spec, row[y_col], f"{where} ({path})")))
    return out


def _read_sts_original(path: Path, strict: bool, dropped: DroppedRows) -> list[Example]:
    """The STS benchmark's own files: some rows carry extra trailing columns (sources), which are ignored."""
    out = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for n, line in enumerate(f, 1):
            cols = line.rstrip("\n").split("\t")
            if cols == [""]:
                continue
            where = f"{path.name} line {n}"
            if len(cols) < 7 and strict:
                raise StageError(f"{where} ({path}): an STS benchmark row has at least 7 tab-separated columns "
                                 f"(genre, file, year, id, score, sentence1, sentence2), found {len(cols)}")
            if len(cols) < 7 or (not cols[4].strip() and not strict):
                dropped.add(where)
                continue
            try:
                score = float(cols[4])
            except ValueError:
                raise StageError(f"{where} ({path}): the score {cols[4]!r} is not a number from 0 to 5") from None
            out.append(Example(cols[5], cols[6], score))
    return out


def _load_local(spec: TaskSpec, split: str, path: Path, strict: bool, dropped: DroppedRows) -> list[Example]:
    if spec.name.startswith("scandisent-"):
        if path.is_dir():
            lang = spec.name.split("-", 1)[1]
            path = path / f"{lang}.csv"
        if not path.is_file():
            raise StageError(f"ScandiSent file {path} does not exist; give the CSV of the language (e.g. "
                             "ScandiSent/sv.csv, columns text,label) or the folder that holds <lang>.csv")
        # Each split reads the whole file (the split is positional, taken after dropping), so each split
        # reports the file's dropped rows.
        return _positional_split(_read_scandisent(spec, path, strict, dropped), split)
    if not path.is_dir():
        raise StageError(f"STS-B folder {path} does not exist; give a folder with train.tsv and dev.tsv (GLUE "
                         "STS-B layout) or sts-train.csv and sts-dev.csv (original STS benchmark layout)")
    glue_file = path / ("train.tsv" if split == "train" else "dev.tsv")
    if glue_file.is_file():
        return read_tsv(spec, glue_file, None, strict, dropped)
    original = path / STS_ORIGINAL_FILES[split]
    if original.is_file():
        return _read_sts_original(original, strict, dropped)
    raise StageError(f"{path} holds neither {glue_file.name} (GLUE STS-B layout) nor {original.name} (original "
                     "STS benchmark layout)")


def _load_hub(spec: TaskSpec, split: str, hub_dataset: str) -> list[Example]:
    try:
        from datasets import load_dataset

        if spec.name.startswith("scandisent-"):
            ds = load_dataset(hub_dataset, split="train")
        else:
            ds = load_dataset(hub_dataset, split="train" if split == "train" else "validation")
    except Exception as e:  # offline, unknown dataset: the same fix either way
        raise StageError(f"cannot load {hub_dataset!r} for {spec.name} from the hub: {type(e).__name__}: {e}. "
                         "Offline, point forgetting.data at local files (ScandiSent CSV, STS-B folder)") from e
    if spec.name.startswith("scandisent-"):
        missing = [c for c in ("text", "label") if c not in ds.column_names]
        if missing:
            raise StageError(f"hub dataset {hub_dataset!r} lacks column(s) {missing}; it has {ds.column_names}")
        rows = [Example(t, None, int(y)) for t, y in zip(ds["text"], ds["label"])]
        return _positional_split(rows, split)
    missing = [c for c in ("sentence1", "sentence2", "score") if c not in ds.column_names]
    if missing:
        raise StageError(f"hub dataset {hub_dataset!r} lacks column(s) {missing}; it has {ds.column_names}")
    return [Example(a, b, float(y)) for a, b, y in zip(ds["sentence1"], ds["sentence2"], ds["score"])]


def load_source_split(spec: TaskSpec, split: str, data_path: str | None, hub_dataset: str | None,
                      max_examples: int | None = None, strict: bool = False,
                      dropped: DroppedRows | None = None) -> list[Example]:
    """Examples of `split` ("train" or "" for the evaluation set), from a local path or the hub. Local rows
    that hold no example are skipped into `dropped`, as GLUE's are; `strict` fails on them instead."""
    if split not in ("train", ""):
        raise StageError(f"{spec.name} has the splits 'train' and '' (evaluation), not {split!r}")
    if data_path is not None:
        examples = _load_local(spec, split, Path(data_path), strict, DroppedRows() if dropped is None else dropped)
        source = data_path
    elif hub_dataset:
        examples = _load_hub(spec, split, hub_dataset)
        source = f"hub {hub_dataset}"
    else:
        raise StageError(f"{spec.name}: give a local file/folder or a hub dataset id in forgetting.data")
    if max_examples is not None:
        examples = examples[:max_examples]
    if not examples:
        raise StageError(f"{spec.name} split {split or 'eval'!r} from {source} holds no examples")
    return examples
