"""GLUE loading and metrics: every task read from its real TSV layout, hub/TSV label agreement, metric values
checked against formulas written out here (not against the library calls the code itself makes)."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from stages.common import StageError
from stages.glue import GLUE_TASKS, Example, compute_metrics, get_task, load_split, primary_metric

MNLI_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
             "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
STSB_HEAD = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
             "score"]


def mnli_row(i, s1, s2, gold, n_votes):
    parse1, parse2 = "( ( " + s1.split()[0] + " ) . )", "( ( " + s2.split()[0] + " ) . )"
    return [str(i), "31193", f"31193{gold[0]}", "government", parse1, parse2, f"(ROOT (S {parse1}))",
            f"(ROOT (S {parse2}))", s1, s2] + [gold] * n_votes + [gold]


# task -> file -> (header or None, rows, expected examples). Rows follow the official GLUE files column by column.
MRPC_HEAD = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
QQP_HEAD = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]
MNLI_DEV_HEAD = MNLI_HEAD + ["label1", "label2", "label3", "label4", "label5", "gold_label"]
WITNESS = ('Amrozi accused his brother , whom he called " the witness " .',
           'Referring to him as only " the witness " , Amrozi accused his brother .')
CREAM = ("Conceptually cream skimming has two basic dimensions.", "Product and geography make cream skimming work.")
ORDERS = ("One of our number will carry out your instructions.", "A member of my team will execute your orders.")
LAYOUTS = {
    "cola": {
        "train.tsv": (None, [["gj04", "1", "", "Our friends won't buy this analysis, let alone the next one."],
                             ["gj04", "0", "*", "They drank the pub."]],
                      [Example("Our friends won't buy this analysis, let alone the next one.", None, 1),
                       Example("They drank the pub.", None, 0)]),
        "dev.tsv": (None, [["clc95", "0", "*", 'The more we study verbs, the crazier they get ".']],
                    [Example('The more we study verbs, the crazier they get ".', None, 0)]),
    },
    "sst2": {
        "train.tsv": (["sentence", "label"],
                      [["hide new secretions from the parental units ", "0"],
                       ['" extremely well-made " and a lone " quote', "1"]],
                      [Example("hide new secretions from the parental units ", None, 0),
                       Example('" extremely well-made " and a lone " quote', None, 1)]),
        "dev.tsv": (["sentence", "label"], [["it 's a charming and often affecting journey . ", "1"]],
                    [Example("it 's a charming and often affecting journey . ", None, 1)]),
    },
    "mrpc": {
        "train.tsv": (MRPC_HEAD, [["1", "702876", "702977", *WITNESS],
                                  ["0", "2108705", "2108831", "Yucaipa owned Dominick 's .", "Yucaipa bought it ."]],
                      [Example(*WITNESS, 1), Example("Yucaipa owned Dominick 's .", "Yucaipa bought it .", 0)]),
        "dev.tsv": (MRPC_HEAD, [["1", "1355540", "1355592", "The pie business doesn 't fit .", "It does not fit ."]],
                    [Example("The pie business doesn 't fit .", "It does not fit .", 1)]),
    },
    "stsb": {
        "train.tsv": (STSB_HEAD,
                      [["0", "main-captions", "MSRvid", "2012test", "0001", "none", "none", "A plane is taking off.",
                        "An air plane is taking off.", "5.000"],
                       ["1", "main-captions", "MSRvid", "2012test", "0004", "none", "none",
                        "A man is playing a large flute.", "A man is playing a flute.", "3.800"]],
                      [Example("A plane is taking off.", "An air plane is taking off.", 5.0),
                       Example("A man is playing a large flute.", "A man is playing a flute.", 3.8)]),
        "dev.tsv": (STSB_HEAD,
                    [["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none", "A man with a hat dances.",
                      "A man wearing a hat is dancing.", "5.000"],
                     ["1", "main-news", "headlines", "2013", "0007", "none", "none", "Bombs kill 12.", "Rain falls.",
                      "0.250"]],
                    [Example("A man with a hat dances.", "A man wearing a hat is dancing.", 5.0),
                     Example("Bombs kill 12.", "Rain falls.", 0.25)]),
    },
    "qqp": {
        "train.tsv": (QQP_HEAD, [["133273", "213221", "213222", "How is life as a math student?", "Which level?", "0"],
                                 ["402555", "536040", "536041", "How do I stay calm?", "How do you stay calm?", "1"]],
                      [Example("How is life as a math student?", "Which level?", 0),
                       Example("How do I stay calm?", "How do you stay calm?", 1)]),
        "dev.tsv": (QQP_HEAD, [["201359", "303345", "303346", 'Why are "cats" so cute?', "Why are dogs cute?", "0"]],
                    [Example('Why are "cats" so cute?', "Why are dogs cute?", 0)]),
    },
    "mnli": {
        "train.tsv": (MNLI_HEAD + ["label1", "gold_label"],
                      [mnli_row(0, *CREAM, "neutral", 1),
                       mnli_row(1, "you know during the season i guess", "You lose the things.", "entailment", 1),
                       mnli_row(2, *ORDERS, "contradiction", 1)],
                      [Example(*CREAM, 1), Example("you know during the season i guess", "You lose the things.", 0),
                       Example(*ORDERS, 2)]),
        "dev_matched.tsv": (MNLI_DEV_HEAD, [mnli_row(0, "The new rights are nice", "Everyone likes them", "neutral",
                                                     5)],
                            [Example("The new rights are nice", "Everyone likes them", 1)]),
        "dev_mismatched.tsv": (MNLI_DEV_HEAD, [mnli_row(0, "You helped.", "You were of no help.", "contradiction", 5)],
                               [Example("You helped.", "You were of no help.", 2)]),
    },
    "qnli": {
        "train.tsv": (["index", "question", "sentence", "label"],
                      [["0", "When did the third Digimon series begin?", "Unlike the two before it, ...",
                        "not_entailment"],
                       ["1", "Which missiles have launchers?", "When MANPADS is operated ...", "entailment"]],
                      [Example("When did the third Digimon series begin?", "Unlike the two before it, ...", 1),
                       Example("Which missiles have launchers?", "When MANPADS is operated ...", 0)]),
        "dev.tsv": (["index", "question", "sentence", "label"],
                    [["0", "What came into force?", "As of that day, the new constitution ...", "entailment"]],
                    [Example("What came into force?", "As of that day, the new constitution ...", 0)]),
    },
    "rte": {
        "train.tsv": (["index", "sentence1", "sentence2", "label"],
                      [["0", "No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons Found in Iraq.",
                        "not_entailment"],
                       ["1", "A place of sorrow, after Pope John Paul II died.", "Benedict XVI leads.", "entailment"]],
                      [Example("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons Found in Iraq.", 1),
                       Example("A place of sorrow, after Pope John Paul II died.", "Benedict XVI leads.", 0)]),
        "dev.tsv": (["index", "sentence1", "sentence2", "label"],
                    [["0", "Dana Reeve, the widow of the actor, died.", "Reeve had an accident.", "not_entailment"]],
                    [Example("Dana Reeve, the widow of the actor, died.", "Reeve had an accident.", 1)]),
    },
}

DEV_FILE = {"": "dev.tsv", "m": "dev_matched.tsv", "mm": "dev_mismatched.tsv"}


def write_tsv(path: Path, header, rows, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([("\ufeff" if bom else "") + "\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_task(root: Path, task: str) -> Path:
    folder = root / GLUE_TASKS[task].folder
    for name, (header, rows, _) in LAYOUTS[task].items():
        write_tsv(folder / name, header, rows, bom=(task == "mrpc" and name == "train.tsv"))
    return folder


@pytest.mark.parametrize("task", list(LAYOUTS))
def test_each_task_reads_its_real_tsv_layout(tmp_path, task):
    write_task(tmp_path, task)
    spec = get_task(task)
    assert load_split(task, "train", str(tmp_path)) == LAYOUTS[task]["train.tsv"][2]
    for dev in spec.dev_splits:
        assert load_split(task, dev.key, str(tmp_path)) == LAYOUTS[task][DEV_FILE[dev.key]][2]


def test_registry_matches_the_paper_and_hub_label_order():
    assert list(GLUE_TASKS) == ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"]
    assert GLUE_TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert GLUE_TASKS["qnli"].label_names == GLUE_TASKS["rte"].label_names == ("entailment", "not_entailment")
    assert GLUE_TASKS["stsb"].label_names is None and GLUE_TASKS["stsb"].num_labels == 1
    assert [(d.key, d.tsv_file, d.hub_split) for d in GLUE_TASKS["mnli"].dev_splits] == [
        ("m", "dev_matched.tsv", "validation_matched"), ("mm", "dev_mismatched.tsv", "validation_mismatched")]
    assert {t: primary_metric(t) for t in GLUE_TASKS} == {
        "cola": "mcc", "sst2": "accuracy", "mrpc": "f1", "stsb": "spearman", "qqp": "f1", "mnli": "accuracy",
        "qnli": "accuracy", "rte": "accuracy"}


def test_hub_rows_map_to_the_same_examples_as_the_tsv(tmp_path, monkeypatch):
    """The hub stores ClassLabel ids; a TSV label string must land on the same id."""
    import datasets

    write_task(tmp_path, "mnli")
    hub_rows = {"premise": [e.text_a for e in LAYOUTS["mnli"]["train.tsv"][2]],
                "hypothesis": [e.text_b for e in LAYOUTS["mnli"]["train.tsv"][2]],
                "label": [1, 0, 2], "idx": [0, 1, 2]}
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
                                  "idx": datasets.Value("int32")})
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict(hub_rows, features=features)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert load_split("mnli", "train", None) == load_split("mnli", "train", str(tmp_path))
    assert load_split("mnli", "mm", None, hub_dataset="my/glue", max_examples=2) == LAYOUTS["mnli"]["train.tsv"][2][:2]
    assert calls == [("nyu-mll/glue", "mnli", "train"), ("my/glue", "mnli", "validation_mismatched")]


def test_hub_failure_suggests_data_dir(monkeypatch):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(StageError, match="data_dir") as e:
        load_split("sst2", "train", None)
    assert "no internet" in str(e.value)


def test_max_examples_keeps_the_first_rows(tmp_path):
    write_task(tmp_path, "qqp")
    assert load_split("qqp", "train", str(tmp_path), max_examples=1) == LAYOUTS["qqp"]["train.tsv"][2][:1]


@pytest.mark.parametrize("task,row,expect", [
    ("qqp", ["363362", "493340", "493341", "a question without a partner\t"],
     "expected 6 tab-separated columns, found 5. This QQP file is malformed"),
    ("rte", ["2", "a", "b", "maybe", "extra"], "expected 4 tab-separated columns, found 5. This RTE file"),
    ("cola", ["gj04", "1", "only three columns"], "expected 4 tab-separated columns, found 3. This CoLA file"),
])
def test_strict_refuses_a_malformed_row_naming_task_file_and_line(tmp_path, task, row, expect):
    folder = write_task(tmp_path, task)
    header, rows, _ = LAYOUTS[task]["train.tsv"]
    write_tsv(folder / "train.tsv", header, rows + [row])
    line = len(rows) + (2 if header else 1)
    with pytest.raises(StageError) as e:
        load_split(task, "train", str(tmp_path), strict=True)
    msg = str(e.value)
    assert "train.tsv" in msg and f"line {line}" in msg and expect in msg


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("task,row,expect", [
    ("rte", ["2", "a", "b", "maybe"], "unknown label 'maybe'"),
    ("stsb", ["2", "g", "f", "2012", "0002", "none", "none", "a", "b", "n/a"], "'n/a' is not a number"),
    ("mnli", mnli_row(3, "A premise here", "A hypothesis", "entailment", 1)[:-1] + ["-"], "unknown label '-'"),
])
def test_a_label_that_is_not_a_label_fails_in_both_modes(tmp_path, task, row, expect, strict):
    """Like the reference readers (the datasets builder's int(label) raises): a wrong label scheme is an error."""
    folder = write_task(tmp_path, task)
    header, rows, _ = LAYOUTS[task]["train.tsv"]
    write_tsv(folder / "train.tsv", header, rows + [row])
    with pytest.raises(StageError, match=rf"train.tsv line {len(rows) + 2} .*{expect}"):
        load_split(task, "train", str(tmp_path), strict=strict)


def reference_kept(task: str, path: Path) -> list[Example]:
    """The examples the `datasets` GLUE builder keeps, by its own rule, written out here: csv.DictReader (a
    short row leaves the missing columns None, extra fields go to the key None), then a row is kept only
    when every text column it reads and its label are present and the label is not empty."""
    import csv

    spec = get_task(task)
    a, b, y = spec.tsv_columns
    with open(path, encoding="utf-8-sig", newline="") as f:
        out = []
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            values = [row.get(a), row.get(b) if b else "", row.get(y)]
            if any(v is None for v in values) or not values[2]:
                continue
            label = float(values[2]) if spec.is_regression else spec.label_names.index(values[2])
            out.append(Example(values[0], row[b] if b else None, label))
    return out


# Malformed rows appended to each task's train file: (row, dropped?). QQP's real defect is the first kind.
MALFORMED = {
    "qqp": [(["363362", "493340", "493341", "a question without a partner"], True),    # too few fields
            (["1", "2", "3", "Is it?", "Is it so?", ""], True),                          # empty label
            (["4", "5", "6", "Why?", "Why not?", "1", "trailing junk"], False)],          # extra field: read
    "mnli": [(mnli_row(3, "Cats sleep.", "Cats nap.", "entailment", 1)[:-1], True),     # no gold_label field
             (mnli_row(4, "Dogs bark.", "Dogs are loud.", "neutral", 1)[:-1] + [""], True),
             (mnli_row(5, "It rains.", "It is dry.", "contradiction", 1) + ["x", "y"], False)],
    "stsb": [(["2", "main-news", "headlines", "2013", "0009", "none", "none", "A cat.", "A dog."], True),
             (["3", "main-news", "headlines", "2013", "0010", "none", "none", "A cat.", "A cat.", ""], True),
             (["4", "main-news", "headlines", "2013", "0011", "none", "none", "Rain.", "Snow.", "1.5", "x"], False)],
    "rte": [(["2", "Only a premise"], True), (["3", "A premise.", "A hypothesis.", "entailment", "extra"], False)],
}


@pytest.mark.parametrize("task", list(MALFORMED))
def test_lenient_reading_keeps_what_the_reference_reader_keeps(tmp_path, task):
    from stages.task_spec import DroppedRows

    folder = write_task(tmp_path, task)
    header, rows, good = LAYOUTS[task]["train.tsv"]
    bad = MALFORMED[task]
    write_tsv(folder / "train.tsv", header, rows + [r for r, _ in bad])
    dropped = DroppedRows()
    got = load_split(task, "train", str(tmp_path), dropped=dropped)
    assert got == reference_kept(task, folder / "train.tsv")
    assert len(got) == len(good) + sum(not d for _, d in bad) and got[:len(good)] == good
    first_bad = len(rows) + 2   # header line, then the good rows
    assert dropped.as_dict() == {"count": sum(d for _, d in bad),
                                 "first": [f"train.tsv line {first_bad + i}" for i, (_, d) in enumerate(bad) if d]}


def test_dropped_rows_name_only_the_first_five_and_max_examples_counts_kept_rows(tmp_path):
    from stages.task_spec import DroppedRows

    folder = write_task(tmp_path, "cola")
    rows = []
    for i in range(7):   # rows 1, 3, 5, ... of the file: a short row, then a good one
        rows += [["gj04", "1", "short"], ["gj04", str(i % 2), "", f"Sentence {i}."]]
    write_tsv(folder / "train.tsv", None, rows)
    dropped = DroppedRows()
    got = load_split("cola", "train", str(tmp_path), max_examples=6, dropped=dropped)
    assert got == [Example(f"Sentence {i}.", None, i % 2) for i in range(6)]
    # the 6th example is on line 12; the short rows before it are on lines 1, 3, ..., 11
    assert dropped.count == 6 and dropped.first == [f"train.tsv line {n}" for n in (1, 3, 5, 7, 9)]


def test_an_unreadable_file_names_its_task(tmp_path):
    folder = write_task(tmp_path, "rte")
    (folder / "dev.tsv").write_bytes(b"index\tsentence1\tsentence2\tlabel\n0\t\xff\xfe bad\tb\tentailment\n")
    with pytest.raises(StageError, match=r"cannot be read as a RTE TSV file \(UnicodeDecodeError") as e:
        load_split("rte", "", str(tmp_path))
    assert "QQP" not in str(e.value)


def test_missing_folder_file_and_empty_split(tmp_path):
    with pytest.raises(StageError, match="CoLA") as e:
        load_split("cola", "train", str(tmp_path))
    assert str(tmp_path / "CoLA") in str(e.value) and "download_glue_data" in str(e.value)
    folder = write_task(tmp_path, "rte")
    (folder / "dev.tsv").unlink()
    with pytest.raises(StageError) as e:
        load_split("rte", "", str(tmp_path))
    assert str(folder / "dev.tsv") in str(e.value)
    write_tsv(folder / "dev.tsv", ["index", "sentence1", "sentence2", "label"], [])
    with pytest.raises(StageError, match="no examples"):
        load_split("rte", "", str(tmp_path))
    write_tsv(folder / "dev.tsv", ["idx", "premise", "hypothesis", "label"], [["0", "a", "b", "entailment"]])
    with pytest.raises(StageError, match="lacks column"):
        load_split("rte", "", str(tmp_path))


def test_task_and_split_errors(tmp_path):
    with pytest.raises(StageError, match="GLUE FAQ 12"):
        get_task("wnli")
    with pytest.raises(StageError, match="WNLI"):
        load_split("WNLI", "train", str(tmp_path))
    with pytest.raises(StageError) as e:
        get_task("squad")
    assert all(t in str(e.value) for t in GLUE_TASKS)
    with pytest.raises(StageError, match="'m', 'mm'"):
        load_split("mnli", "", str(tmp_path))
    with pytest.raises(StageError, match="no split 'm'"):
        load_split("sst2", "m", str(tmp_path))


# Test files as download_glue_data.py writes them: task -> (path in the root, header, rows, expected
# (index, text_a, text_b) per row). CoLA's test file has a header, unlike its train/dev; QQP's index is `id`.
TEST_LAYOUTS = {
    ("cola", ""): ("CoLA/test.tsv", ["index", "sentence"], [["0", "Bill whistled past the house."]],
                   [("0", "Bill whistled past the house.", None)]),
    ("sst2", ""): ("SST-2/test.tsv", ["index", "sentence"], [["0", "uneasy mishmash of styles and genres ."],
                                                            ["1", '" this film \'s relationship to actual tension "']],
                   [("0", "uneasy mishmash of styles and genres .", None),
                    ("1", '" this film \'s relationship to actual tension "', None)]),
    ("mrpc", ""): ("MRPC/test.tsv", ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                   [["0", "1089874", "1089925", "PCCW 's chief ...", "Current Chief ..."]],
                   [("0", "PCCW 's chief ...", "Current Chief ...")]),
    ("stsb", ""): ("STS-B/test.tsv", STSB_HEAD[:-1],
                   [["0", "main-captions", "MSRvid", "2012test", "0024", "none", "none", "A girl is styling her hair.",
                     "A girl is brushing her hair."]],
                   [("0", "A girl is styling her hair.", "A girl is brushing her hair.")]),
    ("qqp", ""): ("QQP/test.tsv", ["id", "question1", "question2"],
                  [["0", "Why do rockets look white?", "Why are rockets white?"]],
                  [("0", "Why do rockets look white?", "Why are rockets white?")]),
    ("mnli", "m"): ("MNLI/test_matched.tsv", MNLI_HEAD,
                    [mnli_row(0, "Hierbas is a drink.", "It is sweet.", "x", 0)[:-1]],
                    [("0", "Hierbas is a drink.", "It is sweet.")]),
    ("mnli", "mm"): ("MNLI/test_mismatched.tsv", MNLI_HEAD, [mnli_row(7, "What a day.", "It was long.", "x", 0)[:-1]],
                     [("7", "What a day.", "It was long.")]),
    ("mnli", "ax"): ("diagnostic/diagnostic.tsv", ["index", "sentence1", "sentence2"],
                     [["0", "The cat sat on the mat.", "The cat did not sit on the mat."]],
                     [("0", "The cat sat on the mat.", "The cat did not sit on the mat.")]),
    ("qnli", ""): ("QNLI/test.tsv", ["index", "question", "sentence"], [["0", "What is it?", "It is a test."]],
                   [("0", "What is it?", "It is a test.")]),
    ("rte", ""): ("RTE/test.tsv", ["index", "sentence1", "sentence2"], [["0", "Mangla was built.", "Mangla is a dam."]],
                  [("0", "Mangla was built.", "Mangla is a dam.")]),
}


def test_every_test_split_reads_its_real_layout(tmp_path):
    from stages.glue import load_test_split

    for (task, key), (path, header, rows, expect) in TEST_LAYOUTS.items():
        write_tsv(tmp_path / path, header, rows)
    assert {(t, s.key) for t, spec in GLUE_TASKS.items() for s in spec.test_splits} == set(TEST_LAYOUTS)
    for (task, key), (_, _, _, expect) in TEST_LAYOUTS.items():
        indices, examples = load_test_split(task, key, str(tmp_path))
        assert list(zip(indices, [e.text_a for e in examples], [e.text_b for e in examples])) == expect, task
        assert all(e.label is None for e in examples)
    # the leaderboard's file names
    assert [s.submission_file for spec in GLUE_TASKS.values() for s in spec.test_splits] == [
        "CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv", "QNLI.tsv",
        "RTE.tsv"]


def test_missing_test_file_is_none_and_ax_is_found_under_its_other_name(tmp_path):
    from stages.glue import load_test_split

    assert load_test_split("rte", "", str(tmp_path)) is None
    write_tsv(tmp_path / "AX.tsv", ["index", "sentence1", "sentence2"], [["0", "a", "b"], ["1", "c", "d"]])
    indices, examples = load_test_split("mnli", "ax", str(tmp_path))
    assert indices == ["0", "1"] and [(e.text_a, e.text_b) for e in examples] == [("a", "b"), ("c", "d")]
    with pytest.raises(StageError, match="test split keys: 'm', 'mm', 'ax'"):
        load_test_split("mnli", "", str(tmp_path))
    write_tsv(tmp_path / "RTE" / "test.tsv", ["idx", "premise", "hypothesis"], [["0", "a", "b"]])
    with pytest.raises(StageError, match="lacks column.*RTE file"):
        load_test_split("rte", "", str(tmp_path))


def test_hub_test_split_keeps_the_hub_index(monkeypatch):
    import datasets

    from stages.glue import load_test_split

    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict({"premise": ["p0", "p1"], "hypothesis": ["h0", "h1"], "label": [-1, -1],
                                           "idx": [5, 9]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    indices, examples = load_test_split("mnli", "ax", None)
    assert indices == ["5", "9"] and examples == [Example("p0", "h0", None), Example("p1", "h1", None)]
    load_test_split("mnli", "mm", None)
    assert calls == [("nyu-mll/glue", "ax", "test"), ("nyu-mll/glue", "mnli", "test_mismatched")]


# ------------------------------------------------------------------------------------------------------ metrics

def no_warnings(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)


def confusion(pred, gold):
    tp = sum(p == 1 and g == 1 for p, g in zip(pred, gold))
    tn = sum(p == 0 and g == 0 for p, g in zip(pred, gold))
    fp = sum(p == 1 and g == 0 for p, g in zip(pred, gold))
    fn = sum(p == 0 and g == 1 for p, g in zip(pred, gold))
    return tp, tn, fp, fn


def test_mcc_matches_the_confusion_matrix_formula():
    gold = [1, 1, 1, 0, 0, 1, 0, 1, 1, 0]
    pred = [1, 0, 1, 0, 1, 1, 0, 1, 0, 0]
    tp, tn, fp, fn = confusion(pred, gold)
    assert (tp, tn, fp, fn) == (4, 3, 1, 2)
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))  # 10/sqrt(600)
    assert compute_metrics("cola", pred, gold) == pytest.approx({"mcc": expected, "accuracy": 0.7})
    assert compute_metrics("cola", [1 - p for p in gold], gold)["mcc"] == pytest.approx(-1.0)


@pytest.mark.parametrize("pred", [[1] * 6, [0] * 6])
def test_constant_predictions_give_zero_mcc_without_warnings(pred):
    assert no_warnings(compute_metrics, "cola", pred, [1, 0, 1, 1, 0, 1])["mcc"] == 0.0
    assert no_warnings(compute_metrics, "cola", pred, pred) == {"mcc": 0.0, "accuracy": 1.0}


def test_f1_and_accuracy_by_hand():
    gold = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    pred = np.array([1, 1, 0, 1, 0, 0, 1, 1])
    tp, tn, fp, fn = confusion(pred, gold)
    precision, recall = tp / (tp + fp), tp / (tp + fn)  # 3/5, 3/4
    f1 = 2 * precision * recall / (precision + recall)
    for task in ("mrpc", "qqp"):
        assert compute_metrics(task, pred, gold) == pytest.approx({"f1": f1, "accuracy": 5 / 8})
    # Never predicting the positive class: F1 of class 1 is 0, not undefined, and nothing warns.
    assert no_warnings(compute_metrics, "qqp", [0, 0, 0, 0], [0, 1, 0, 1]) == {"f1": 0.0, "accuracy": 0.5}
    assert no_warnings(compute_metrics, "mrpc", [0, 0], [0, 0]) == {"f1": 0.0, "accuracy": 1.0}


def test_accuracy_tasks_and_three_classes():
    for task in ("sst2", "qnli", "rte"):
        assert compute_metrics(task, [1, 0, 1, 1], [1, 1, 1, 0]) == {"accuracy": 0.5}
    assert compute_metrics("mnli", [0, 1, 2, 2, 1], [0, 1, 2, 1, 0]) == {"accuracy": 3 / 5}


def pearson_by_hand(x, y):
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / math.sqrt((dx * dx).sum() * (dy * dy).sum()))


def test_stsb_correlations_by_hand():
    from scipy.stats import rankdata

    gold = [5.0, 3.8, 0.25, 2.0, 2.0, 4.4, 1.0]
    pred = [4.1, 4.3, 0.9, 2.5, 1.7, 3.3, 1.7]  # ties on both sides: ranks are averaged
    got = compute_metrics("stsb", pred, gold)
    assert set(got) == {"spearman", "pearson"}
    assert got["pearson"] == pytest.approx(pearson_by_hand(pred, gold))
    assert got["spearman"] == pytest.approx(pearson_by_hand(rankdata(pred), rankdata(gold)))
    # Monotone but non-linear: Spearman sees a perfect order, Pearson does not.
    x = [0.0, 1.0, 2.0, 3.0, 4.0]
    got = compute_metrics("stsb", [v ** 3 for v in x], x)
    assert got["spearman"] == pytest.approx(1.0) and got["pearson"] < 0.99
    # by hand: deviations x - 2 = -2..2, x^3 - 20 = -20 -19 -12 7 44; sum of products 154, sums of squares
    # 10 and 2890: r = 154 / sqrt(28900) = 154 / 170
    assert got["pearson"] == pytest.approx(154 / 170)


def test_constant_regression_vectors_give_nan_correlations_without_warnings():
    """A constant vector has zero variance: Pearson's and Spearman's denominators are 0, the value undefined."""
    for pred, gold in (([2.5] * 5, [0.0, 1.0, 2.0, 3.0, 4.0]), ([0.0, 1.0, 2.0], [3.0] * 3)):
        got = no_warnings(compute_metrics, "stsb", pred, gold)
        assert set(got) == {"spearman", "pearson"} and all(math.isnan(v) for v in got.values())
    # nearly constant is still defined: two distinct values correlate perfectly with a matching gold order
    assert compute_metrics("stsb", [1.0, 1.0, 2.0], [0.0, 0.0, 5.0]) == pytest.approx({"spearman": 1.0, "pearson": 1.0})


def test_metric_input_errors():
    with pytest.raises(StageError, match="equal-length"):
        compute_metrics("sst2", [1, 0], [1])
    with pytest.raises(StageError, match="not logits"):
        compute_metrics("mnli", np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(StageError, match="wnli"):
        compute_metrics("wnli", [0], [0])
