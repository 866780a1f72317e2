"""What a fine-tuning task is: its spec, its examples, and the TSV reading GLUE and the source-language
tasks share (`stages.glue` and `stages.source_tasks` both build on this module, neither on the other).

Malformed rows are handled as the reference readers handle them (the `datasets` GLUE builder and the GLUE
baselines' processors): a row too short to hold the columns a task reads, or one with an empty label, holds
no example and is dropped (counted in a `DroppedRows`, which the fine-tune stage logs and keeps in its
result); a row with more fields than the header is read by its named columns. QQP's official files have
such rows. A label that is present but not one of the task's label strings (or, for a regression task, not a
number) is an error in both modes, as in the reference readers: it means a wrong file or label scheme, not
a torn row, and skipping it could silently remove a whole class. `strict=True` keeps the fail-fast reading:
every row must be exactly as wide as the header.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stages.common import StageError

FIRST_DROPPED = 5   # dropped rows named by file and line in the log and the result; the rest are only counted


@dataclass(frozen=True)
class DevSplit:
    key: str        # "" for tasks with one dev set; "m" / "mm" for MNLI matched / mismatched
    tsv_file: str   # file name inside the task folder of a GLUE root
    hub_split: str  # split name in the hub dataset


@dataclass(frozen=True)
class TestSplit:
    """An unlabelled test split and the leaderboard file its predictions go to."""
    __test__ = False   # not a pytest test class, despite its name
    key: str                        # "" for tasks with one test set; MNLI: "m", "mm" and "ax" (the diagnostic set)
    submission_file: str            # the leaderboard's file name: "MNLI-m.tsv"
    tsv_files: tuple[str, ...]      # paths inside a GLUE root, first existing one is read: "MNLI/test_matched.tsv"
    tsv_columns: tuple[str, str, str | None]  # (index, text_a, text_b) header names; every GLUE test file has a header
    hub_config: str                 # config of the hub dataset: the task's, or "ax"
    hub_split: str
    hub_columns: tuple[str, str | None]       # (text_a, text_b) of the hub dataset; its index column is "idx"


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
    test_splits: tuple[TestSplit, ...] = () # GLUE tasks only: what the leaderboard scores

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)

    @property
    def title(self) -> str:
        """How messages name the task: its GLUE folder ("QQP"), or its name for a source task."""
        return self.folder or self.name


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: int | float | None   # None: unlabelled (a test split)


@dataclass
class DroppedRows:
    """Rows a lenient reader skipped: how many, and where the first few are ("train.tsv line 12")."""
    count: int = 0
    first: list[str] = field(default_factory=list)

    def add(self, where: str) -> None:
        self.count += 1
        if len(self.first) < FIRST_DROPPED:
            self.first.append(where)

    def as_dict(self) -> dict:
        return {"count": self.count, "first": list(self.first)}


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


def _column_indices(spec: TaskSpec, path: Path, header: list[str] | None,
                    wanted: tuple[str | int | None, ...]) -> list[int | None]:
    """Positions of the wanted columns: header names looked up in the header, or positions as they are."""
    if header is None:
        return list(wanted)
    missing = [c for c in wanted if c is not None and c not in header]
    if missing:
        raise StageError(f"{path}: header line lacks column(s) {', '.join(map(repr, missing))}; found "
                         f"{header}. Is this the {spec.title} file of the official GLUE download?")
    return [None if c is None else header.index(c) for c in wanted]


def tsv_rows(spec: TaskSpec, path: Path, wanted: tuple[str | int | None, ...], has_header: bool,
             width: int | None, strict: bool, dropped: DroppedRows) -> Iterator[tuple[list[str | None], str]]:
    """The wanted fields of each row (None for a column the task lacks) with the row's place ("dev.tsv line 7").

    Rows too short to hold every wanted field are dropped into `dropped`; `strict` instead fails on any row
    not exactly as wide as the header (or `width` for a headerless file).
    """
    # GLUE's convention is QUOTE_NONE: a quote character is part of the text (e.g. SST-2 and MNLI start
    # sentences with `"`); the default dialect would swallow whole lines up to the next quote.
    # utf-8-sig: MRPC's source files begin with a byte-order mark, which would corrupt the first header name.
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = None
            if has_header:
                header = next(reader, None)
                if header is None:
                    raise StageError(f"{path} is empty; expected a header line and examples of {spec.title}")
                header = [h.strip() for h in header]
                width = len(header)
            indices = _column_indices(spec, path, header, wanted)
            needed = max(i for i in indices if i is not None)
            for row in reader:
                if not row:  # a blank line (e.g. a trailing newline too many) holds no example
                    continue
                where = f"{path.name} line {reader.line_num}"
                if strict and len(row) != width:
                    raise StageError(f"{where} ({path}): expected {width} tab-separated columns, found {len(row)}. "
                                     f"This {spec.title} file is malformed; re-download {spec.title}, fix that line, "
                                     "or set strict to false to skip rows that lack columns")
                if len(row) <= needed:
                    dropped.add(where)
                    continue
                yield [None if i is None else row[i] for i in indices], where
    except (UnicodeDecodeError, csv.Error) as e:
        raise StageError(f"{path} cannot be read as a {spec.title} TSV file ({type(e).__name__}: {e}); "
                         f"re-download {spec.title} (UTF-8, tab-separated)") from e


def read_tsv(spec: TaskSpec, path: Path, max_examples: int | None, strict: bool = False,
             dropped: DroppedRows | None = None) -> list[Example]:
    """Labelled examples of a train/dev file in the task's layout; skipped rows are counted in `dropped`."""
    dropped = DroppedRows() if dropped is None else dropped
    out: list[Example] = []
    rows = tsv_rows(spec, path, spec.tsv_columns, spec.tsv_header, spec.tsv_width, strict, dropped)
    for (a, b, raw), where in rows:
        if not raw.strip() and not strict:   # strict: parse_label refuses the empty label, as before
            dropped.add(where)
            continue
        out.append(Example(a, b, parse_label(spec, raw, f"{where} ({path})")))
        if max_examples is not None and len(out) >= max_examples:
            break
    return out


def read_test_tsv(spec: TaskSpec, split: TestSplit, path: Path, strict: bool = False,
                  dropped: DroppedRows | None = None) -> tuple[list[str], list[Example]]:
    """The index column and the unlabelled examples of a GLUE test file (every one has a header line)."""
    dropped = DroppedRows() if dropped is None else dropped
    indices, examples = [], []
    for (index, a, b), _ in tsv_rows(spec, path, split.tsv_columns, True, None, strict, dropped):
        indices.append(index)
        examples.append(Example(a, b, None))
    return indices, examples
