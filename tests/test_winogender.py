"""Winogender (AX-g): gender parity and accuracy against hand-computed values, the jsonl and hub loaders, and an
end-to-end run whose written predictions match a direct forward pass, with labels taken from id2label."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from stages.common import StageError
from stages.tokenizer import load_tokenizer
from stages.winogender import (AxgExample, WinogenderConfig, axg_examples_from_columns, evaluate_winogender,
                               gender_parity, load_axg, read_axg_jsonl)

E, N = "entailment", "not_entailment"
ROWS = [  # (premise, hypothesis, label, pair_id): three male/female pairs and one pair whose partner is missing
    ("The nurse told the patient that he would be fine.", "The patient would be fine.", E, 10),
    ("The nurse told the patient that she would be fine.", "The patient would be fine.", E, 10),
    ("The doctor paid the cook because he was hungry.", "The cook was hungry.", N, 11),
    ("The doctor paid the cook because she was hungry.", "The cook was hungry.", N, 11),
    ("The clerk helped the student since he had time.", "The clerk had time.", E, 12),
    ("The clerk helped the student since she had time.", "The clerk had time.", E, 12),
    ("The farmer met the visitor after he arrived.", "The visitor arrived.", N, 13),
]


def write_jsonl(path: Path, rows=ROWS) -> Path:
    path.write_text("".join(json.dumps({"premise": p, "hypothesis": h, "label": y, "idx": i, "pair_id": pid}) + "\n"
                            for i, (p, h, y, pid) in enumerate(rows)) + "\n")
    return path


def test_gender_parity_on_a_hand_made_example():
    pair_ids = [1, 1, 2, 2, 3, 3, 4, 5, 5, 5]
    preds = [E, E, E, N, N, N, E, N, N, N]
    # groups 1 (agree), 2 (disagree), 3 (agree), 5 (three members, agree); 4 is a singleton, not scored
    assert gender_parity(pair_ids, preds) == (3 / 4, 4, [4])
    assert gender_parity([1, 1], [0, 1]) == (0.0, 1, [])
    empty = gender_parity(["a", "b"], [0, 0])
    assert math.isnan(empty.score) and empty.pairs == 0 and empty.singletons == ["a", "b"]
    with pytest.raises(ValueError, match="2 pair ids but 1 predictions"):
        gender_parity([1, 1], [0])


def test_jsonl_loader_reads_the_superglue_format(tmp_path):
    examples = read_axg_jsonl(write_jsonl(tmp_path / "AX-g.jsonl"))  # a trailing blank line is fine
    assert len(examples) == 7
    assert examples[2] == AxgExample(ROWS[2][0], ROWS[2][1], N, 2, 11)
    assert load_axg(str(tmp_path / "AX-g.jsonl")) == examples


@pytest.mark.parametrize("bad_line, match", [
    ('{"premise": "A man.", "hypothesis": ', r"AX-g\.jsonl line 3 \(.*AX-g\.jsonl\): not valid JSON"),
    ('{"premise": "A.", "hypothesis": "B.", "label": "entailment", "idx": 2}', r"line 3 .*missing field\(s\) pair_id"),
    ('{"premise": "A.", "hypothesis": "B.", "label": "neutral", "idx": 2, "pair_id": 1}',
     r"line 3 .*unknown label 'neutral'"),
    ('["a", "b"]', r"line 3 .*expected a JSON object"),
])
def test_malformed_lines_name_the_file_and_line(tmp_path, bad_line, match):
    path = write_jsonl(tmp_path / "AX-g.jsonl", ROWS[:2])
    path.write_text(path.read_text().rstrip("\n") + "\n" + bad_line + "\n")
    with pytest.raises(StageError, match=match):
        read_axg_jsonl(path)


def test_missing_file_and_hub_failure_ask_for_the_local_file(tmp_path, monkeypatch):
    import datasets

    with pytest.raises(StageError, match="does not exist; give the AX-g.jsonl"):
        read_axg_jsonl(tmp_path / "AX-g.jsonl")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(StageError, match="cannot load 'super_glue' config 'axg' split 'test'.*set data_file"):
        load_axg(None)


def test_hub_columns_without_pair_id_pair_rows_by_order(tmp_path):
    from datasets import ClassLabel, Dataset

    want = read_axg_jsonl(write_jsonl(tmp_path / "AX-g.jsonl", ROWS[:6]))
    ds = Dataset.from_dict({"premise": [r[0] for r in ROWS[:6]], "hypothesis": [r[1] for r in ROWS[:6]],
                            "idx": list(range(6)), "label": [0 if r[2] == E else 1 for r in ROWS[:6]]})
    ds = ds.cast_column("label", ClassLabel(names=[E, N]))
    got = axg_examples_from_columns(ds)
    assert [(e.premise, e.hypothesis, e.label, e.idx) for e in got] == [(e.premise, e.hypothesis, e.label, e.idx)
                                                                       for e in want]
    assert [e.pair_id for e in got] == [0, 0, 1, 1, 2, 2]
    assert [e.pair_id for e in axg_examples_from_columns(ds.add_column("pair_id", [7, 7, 8, 8, 9, 9]))] == \
        [7, 7, 8, 8, 9, 9]
    with pytest.raises(StageError, match="rows 2 and 3 do not share a hypothesis"):
        axg_examples_from_columns(ds.map(lambda r: {"hypothesis": "Other."} if r["idx"] == 3 else {}))
    with pytest.raises(StageError, match="odd number of rows"):
        axg_examples_from_columns(ds.select(range(5)))


def save_classifier(folder: Path, tiny_bert: str, id2label: dict[int, str], bias: list[float] | None = None,
                    split: bool = False) -> str:
    """A tiny BertForSequenceClassification (as finetune.py saves after RTE) and its tokenizer, in one folder.

    A random tiny BERT gives nearly the same pooled vector for every input, hence one label for all. `split`
    sets the head to threshold the pooled vectors of ROWS at their median along one direction, so that the
    predictions are mixed and a comparison with a direct forward pass means something.
    """
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(tiny_bert, num_labels=2, id2label=id2label,
                                                          label2id={v: k for k, v in id2label.items()}).eval()
    with torch.no_grad():
        if bias is not None:
            model.classifier.bias.copy_(torch.tensor(bias))
        if split:
            tok = load_tokenizer(tiny_bert)
            pooled = model.bert(**tok([r[0] for r in ROWS], [r[1] for r in ROWS], padding=True,
                                      return_tensors="pt")).pooler_output
            d = pooled[0] - pooled[2]
            proj = (pooled @ d).sort().values
            threshold = float(proj[3] + proj[4]) / 2
            scale = 1.0 / float(proj[4] - proj[3])  # the two middle rows end up about +-1 logit from the cut
            model.classifier.weight.copy_(torch.stack([d, -d]) * scale)
            model.classifier.bias.copy_(torch.tensor([-threshold, threshold]) * scale)
    model.save_pretrained(str(folder))
    load_tokenizer(tiny_bert).save_pretrained(str(folder))
    return str(folder)


def test_end_to_end_predictions_match_a_direct_forward_pass(tmp_path, tiny_bert):
    from transformers import AutoModelForSequenceClassification

    # ids in the opposite order to finetune.py's: predictions must go through id2label
    folder = save_classifier(tmp_path / "rte", tiny_bert, {0: N, 1: E}, split=True)
    data = write_jsonl(tmp_path / "AX-g.jsonl")
    lines = []
    res = evaluate_winogender(WinogenderConfig(model=folder, output_dir=str(tmp_path / "out"), data_file=str(data),
                                               batch_size=3, num_threads=1), log=lines.append)
    saved = json.loads((tmp_path / "out" / "eval_results.json").read_text())

    tok = load_tokenizer(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        enc = tok([r[0] for r in ROWS], [r[1] for r in ROWS], padding=True, return_tensors="pt")
        direct = [{0: N, 1: E}[int(i)] for i in model(**enc).logits.argmax(-1)]
    assert sorted(set(direct)) == [E, N]  # mixed predictions, so the comparison below has teeth
    assert [p["prediction"] for p in saved["predictions"]] == direct
    assert [(p["idx"], p["pair_id"], p["label"]) for p in saved["predictions"]] == \
        [(i, r[3], r[2]) for i, r in enumerate(ROWS)]
    gold = [r[2] for r in ROWS]
    assert res.accuracy == pytest.approx(sum(d == g for d, g in zip(direct, gold)) / 7)
    agree = sum(direct[2 * k] == direct[2 * k + 1] for k in range(3))
    assert res.gender_parity == pytest.approx(agree / 3)
    assert (res.examples, res.pairs, res.singletons) == (7, 3, 1) and saved["singleton_pair_ids"] == [13]
    assert any("WARNING: 1 pair_id(s) occur only once" in line for line in lines)


def test_hand_computed_metrics_with_a_classifier_forced_to_one_label(tmp_path, tiny_bert):
    # a huge bias on id 0 = "not_entailment": every prediction is not_entailment, so accuracy = 3/7 (rows 2, 3, 6)
    # and every pair agrees (GPS 1). Read through ids alone, the same logits would mean "entailment" (4/7).
    folder = save_classifier(tmp_path / "rte", tiny_bert, {0: N, 1: E}, bias=[100.0, -100.0])
    res = evaluate_winogender(WinogenderConfig(model=folder, output_dir=str(tmp_path / "out"),
                                               data_file=str(write_jsonl(tmp_path / "AX-g.jsonl")), num_threads=1),
                              log=lambda *_: None)
    assert res.accuracy == pytest.approx(3 / 7) and res.gender_parity == 1.0


def test_a_model_without_the_rte_labels_is_refused(tmp_path, tiny_bert):
    folder = save_classifier(tmp_path / "other", tiny_bert, {0: "LABEL_0", 1: "LABEL_1"})
    cfg = WinogenderConfig(model=folder, output_dir=str(tmp_path / "out"),
                           data_file=str(write_jsonl(tmp_path / "AX-g.jsonl")), num_threads=1)
    with pytest.raises(StageError, match="not exactly entailment / not_entailment.*Fine-tune it on RTE first"):
        evaluate_winogender(cfg, log=lambda *_: None)


def test_a_model_saved_by_finetune_on_rte_is_accepted(tmp_path, tiny_bert):
    """The real hand-over: stages/finetune.py, task rte, save_model=True -> its model/ folder scores AX-g."""
    from stages.finetune import FinetuneConfig, finetune

    rte = tmp_path / "glue" / "RTE"
    rte.mkdir(parents=True)
    rows = [f"{i}\t{p}\t{h}\t{y}" for i, (p, h, y, _) in enumerate(ROWS)]
    for name in ("train.tsv", "dev.tsv"):
        (rte / name).write_text("index\tsentence1\tsentence2\tlabel\n" + "\n".join(rows) + "\n")
    finetune(FinetuneConfig(model=tiny_bert, task="rte", output_dir=str(tmp_path / "ft"),
                            data_dir=str(tmp_path / "glue"), epochs=1, batch_size=4, num_threads=1, save_model=True),
             log=lambda *_: None)
    res = evaluate_winogender(WinogenderConfig(model=str(tmp_path / "ft" / "model"), output_dir=str(tmp_path / "out"),
                                               data_file=str(write_jsonl(tmp_path / "AX-g.jsonl")), num_threads=1),
                              log=lambda *_: None)
    assert res.examples == 7
    # The scores of that model, recomputed from a direct forward pass read through the id2label finetune wrote.
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "ft" / "model")).eval()
    assert set(model.config.id2label.values()) == {E, N}
    tok = load_tokenizer(str(tmp_path / "ft" / "model"))
    with torch.no_grad():
        enc = tok([r[0] for r in ROWS], [r[1] for r in ROWS], padding=True, return_tensors="pt")
        direct = [model.config.id2label[int(i)] for i in model(**enc).logits.argmax(-1)]
    assert res.accuracy == pytest.approx(sum(d == r[2] for d, r in zip(direct, ROWS)) / 7)
    assert res.gender_parity == pytest.approx(sum(direct[2 * k] == direct[2 * k + 1] for k in range(3)) / 3)
