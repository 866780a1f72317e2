"""What a fine-tuning task is: its spec, its examples, and the TSV reading GLUE and the source-language
tasks share (`stages.glue` and `stages.source_tasks` both build on this module, neither on the other)."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from stages.common import StageError


@dataclass(frozen=True)
class DevSplit:
    key: str        # "" for tasks with one dev set; "m" / "mm" for MNLI matched / mismatched
    tsv_file: str   # file name inside the task folder of a GLUE root
    hub_split: str  # split name in the hub dataset


@dataclass(frozen=True)
class TaskSpec:
    name: str                               # hub config name and our key: "mnli"
    folder: str                             # folder inside a GLUE root: "MNLI"
    label_names: tuple[str, ...] | None     # TSV label strings in hub ClassLabel id order; None = regression
    dev_splits: tuple[DevSplit, ...]
    hub_columns: tuple[str, str | None]     # (text_a, text_b) columns of the hub dataset; its label column is "label"
    tsv_columns: tuple[str | int, str | int | None, str | int]  # (text_a, text_b, label): header names, or indices
    tsv_header: bool                        # False only for CoLA, whose train/dev files have no header row
    tsv_width: int | None                   # column count of a headerless file (with a header, the header's width)
    metrics: tuple[str, ...]                # the first one is the task's primary metric

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: int | float


ONE_DEV = (DevSplit("", "dev.tsv", "validation"),)   # tasks with one dev set

def layout_hint(spec: TaskSpec) -> str:
    files = ", ".join(["train.tsv"] + [d.tsv_file for d in spec.dev_splits])
    return (f"data_dir must be a GLUE root as the official download script (download_glue_data.py) writes it, "
            f"with {spec.folder}/ holding {files}; or set data_dir to None to load {spec.name} from the hub")


def parse_label(spec: TaskSpec, raw: str, where: str) -> int | float:
    if spec.label_names is None:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise StageError(f"{where}: the similarity score {raw!r} is not a number; expected a float from 0 to 5")
        return value
    try:
        return spec.label_names.index(raw.strip())
    except ValueError:
        raise StageError(f"{where}: unknown label {raw!r}; expected one of {', '.join(spec.label_names)}") from None


def read_tsv(spec: TaskSpec, path: Path, max_examples: int | None) -> list[Example]:
    # GLUE's convention is QUOTE_NONE: a quote character is part of the text (e.g. SST-2 and MNLI start
    # sentences with `"`); the default dialect would swallow whole lines up to the next quote.
    out: list[Example] = []
    a_col, b_col, y_col = spec.tsv_columns
    # utf-8-sig: MRPC's source files begin with a byte-order mark, which would corrupt the first header name.
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        width = spec.tsv_width
        if spec.tsv_header:
            header = next(reader, None)
            if header is None:
                raise StageError(f"{path} is empty; expected a header line and examples ({layout_hint(spec)})")
            header = [h.strip() for h in header]
            wanted = [c for c in (a_col, b_col, y_col) if c is not None]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise StageError(f"{path}: header line lacks column(s) {', '.join(map(repr, missing))}; found "
                                 f"{header}. Is this the {spec.folder} file of the official GLUE download?")
            a_col, b_col, y_col = (header.index(c) if c is not None else None for c in (a_col, b_col, y_col))
            width = len(header)
        for row in reader:
            if not row:  # a blank line (e.g. a trailing newline too many) holds no example
                continue
            where = f"{path.name} line {reader.line_num} ({path})"
            if len(row) != width:
                raise StageError(f"{where}: expected {width} tab-separated columns, found {len(row)}. The file is "
                                 f"malformed (a known defect of some QQP copies); re-download {spec.folder} or fix "
                                 "that line")
            out.append(Example(row[a_col], row[b_col] if b_col is not None else None,
                               parse_label(spec, row[y_col], where)))
            if max_examples is not None and len(out) >= max_examples:
                break
    return out
