"""Source-language tasks (ScandiSent, translated STS-B): the paper's positional split, both STS layouts,
malformed rows skipped as GLUE's are (or, strict, refused), errors that name file and line, and a fine-tune
through the unchanged GLUE machinery."""
from __future__ import annotations

import csv
import random

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from stages.common import StageError
from stages.finetune import FinetuneConfig, finetune
from stages.glue import Example, compute_metrics, get_task, load_split


def write_scandisent(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


def test_scandisent_split_is_first_three_quarters_then_last_quarter(tmp_path):
    rows = [[f"review number {i}, with a comma", str(i % 2)] for i in range(8)]
    write_scandisent(tmp_path / "sv.csv", rows)
    train = load_split("scandisent-sv", "train", str(tmp_path / "sv.csv"))
    dev = load_split("scandisent-sv", "", str(tmp_path))  # a folder holding <lang>.csv works too
    assert [e.text_a for e in train] == [r[0] for r in rows[:6]]
    assert [e.text_a for e in dev] == [r[0] for r in rows[6:]]
    assert [e.label for e in train] == [0, 1, 0, 1, 0, 1]
    # 10,000 rows give the paper's 7,500 / 2,500
    from stages.source_tasks import _positional_split
    assert len(_positional_split(list(range(10_000)), "train")) == 7500
    assert _positional_split(list(range(10_000)), "")[0] == 7500


def test_scandisent_bad_rows_name_file_and_line(tmp_path):
    write_scandisent(tmp_path / "fi.csv", [["good", "1"], ["bad", "2"]])
    with pytest.raises(StageError, match=r"fi.csv line 3.*unknown label '2'"):
        load_split("scandisent-fi", "train", str(tmp_path / "fi.csv"))
    (tmp_path / "x.csv").write_text("review,stars\nok,5\n")
    with pytest.raises(StageError, match="lacks `text` and `label`"):
        load_split("scandisent-x", "train", str(tmp_path / "x.csv"))
    with pytest.raises(StageError, match="does not exist"):
        load_split("scandisent-da", "train", str(tmp_path))


def test_stsb_glue_and_original_layouts_give_the_same_examples(tmp_path):
    pairs = [("en katt sover", "katten sover", 4.2), ("en hund", "ett hus", 0.4), ("hej", "hej då", 2.5)]
    glue, orig = tmp_path / "glue", tmp_path / "orig"
    glue.mkdir(), orig.mkdir()
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    body = "".join(f"{i}\tmain\tf\t2012\t{i}\tnone\tnone\t{a}\t{b}\t{s}\n" for i, (a, b, s) in enumerate(pairs))
    for name in ("train.tsv", "dev.tsv"):
        (glue / name).write_text(head + body)
    for name in ("sts-train.csv", "sts-dev.csv"):
        (orig / name).write_text("".join(f"main\tf\t2012\t{i}\t{s}\t{a}\t{b}\n" for i, (a, b, s) in enumerate(pairs)))
    a = load_split("stsb-sv", "train", str(glue))
    b = load_split("stsb-sv", "train", str(orig))
    assert a == b and [(e.text_a, e.text_b, e.label) for e in a] == pairs
    (orig / "sts-dev.csv").write_text("main\tf\t2012\t0\tfive\tx\ty\n")
    with pytest.raises(StageError, match=r"sts-dev.csv line 1.*not a number"):
        load_split("stsb-sv", "", str(orig))


def test_source_task_specs_and_metrics_match_scipy():
    assert get_task("scandisent-sv").metrics == ("accuracy",)
    spec = get_task("stsb-sv")
    assert spec.is_regression and spec.metrics[0] == "spearman"
    rng = np.random.default_rng(0)
    gold, pred = rng.uniform(0, 5, 50), rng.uniform(0, 5, 50)
    m = compute_metrics("stsb-sv", pred, gold)
    assert m["spearman"] == pytest.approx(spearmanr(pred, gold).statistic)
    assert m["pearson"] == pytest.approx(pearsonr(pred, gold).statistic)
    with pytest.raises(StageError, match="scandisent-<lang>"):
        get_task("sentiment-sv")


def test_finetune_learns_a_scandisent_file(tmp_path, tiny_bert):
    rng = random.Random(0)
    filler = "the a dog cat bird house tree car runs sees".split()
    rows = []
    for i in range(400):
        y = i % 2
        words = [rng.choice(filler) for _ in range(6)] + ["good" if y else "bad"]
        rng.shuffle(words)
        rows.append([" ".join(words), str(y)])
    write_scandisent(tmp_path / "en.csv", rows)
    res = finetune(FinetuneConfig(model=tiny_bert, task="scandisent-en", output_dir=str(tmp_path / "out"),
                                  data_dir=str(tmp_path / "en.csv"), hub_dataset=None, learning_rate=2e-3,
                                  batch_size=8, epochs=3, max_length=32, num_threads=1, seed=1, save_model=True),
                   log=lambda m: None)
    assert res.train_examples == 300
    assert res.metrics["accuracy"] > 0.9
    # Scored on the last quarter of the file (rows 300-399), as recomputed from the saved model: one padded
    # batch of all 100, as the stage's eval_batch_size (128) evaluates them.
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = str(tmp_path / "out" / "model")
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        pred = model(**tok([r[0] for r in rows[300:]], padding=True, return_tensors="pt")).logits.argmax(-1)
    assert res.metrics["accuracy"] == pytest.approx(np.mean(pred.numpy() == [int(r[1]) for r in rows[300:]]))


def test_scandisent_lenient_and_strict_reading(tmp_path):
    """Same policy as GLUE TSVs: a row too short or with an empty label is skipped (strict: an error); a row
    with an extra field is an error in both modes (an unquoted comma inside the review)."""
    from stages.task_spec import DroppedRows

    rows = [["fine film", "1"], ["awful"], ["so-so", ""], ["great", "1"], ["bad", "0"], ["meh", "0"]]
    write_scandisent(tmp_path / "sv.csv", rows)
    dropped = DroppedRows()
    train = load_split("scandisent-sv", "train", str(tmp_path / "sv.csv"), dropped=dropped)
    # 4 rows kept; 3/4 of them train
    assert [(e.text_a, e.label) for e in train] == [("fine film", 1), ("great", 1), ("bad", 0)]
    assert dropped.as_dict() == {"count": 2, "first": ["sv.csv line 3", "sv.csv line 4"]}
    with pytest.raises(StageError, match=r"sv.csv line 3 .*expected 2 comma-separated columns, found 1"):
        load_split("scandisent-sv", "train", str(tmp_path / "sv.csv"), strict=True)
    (tmp_path / "fi.csv").write_text("text,label\ngood, really,1\n")
    for strict in (False, True):
        with pytest.raises(StageError, match="fi.csv line 2 .*found 3; quote texts"):
            load_split("scandisent-fi", "train", str(tmp_path / "fi.csv"), strict=strict)


def test_translated_stsb_drops_rows_in_both_layouts(tmp_path):
    from stages.task_spec import DroppedRows

    glue, orig = tmp_path / "glue", tmp_path / "orig"
    glue.mkdir(), orig.mkdir()
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    (glue / "train.tsv").write_text(head + "0\tm\tf\t2012\t0\tnone\tnone\ten katt\tkatten\t4.0\n"
                                    "1\tm\tf\t2012\t1\tnone\tnone\ten hund\n"
                                    "2\tm\tf\t2012\t2\tnone\tnone\thej\thej då\t\n")
    # the STS benchmark's own files: some rows carry extra source columns, which are ignored
    (orig / "sts-train.csv").write_text("main\tf\t2012\t0\t4.0\ten katt\tkatten\tsrc\textra\n"
                                        "main\tf\t2012\t1\t2.0\ten hund\n"
                                        "main\tf\t2012\t2\t\thej\thej då\n")
    for folder, first in ((glue, ["train.tsv line 3", "train.tsv line 4"]),
                          (orig, ["sts-train.csv line 2", "sts-train.csv line 3"])):
        dropped = DroppedRows()
        assert load_split("stsb-sv", "train", str(folder), dropped=dropped) == [Example("en katt", "katten", 4.0)]
        assert dropped.as_dict() == {"count": 2, "first": first}
        with pytest.raises(StageError, match=first[0].replace(".", r"\.")):
            load_split("stsb-sv", "train", str(folder), strict=True)
