"""GLUE fine-tuning end to end on a tiny random BERT: it learns a word-decided SST-2, is reproducible per seed,
and handles regression (STS-B) and MNLI's two dev sets."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from stages.common import StageError
from stages.finetune import FinetuneConfig, finetune

MNLI_LABELS = ("entailment", "neutral", "contradiction")  # GLUE's order: the classifier's ids

FILLER = "the a one big small red old new dog cat bird house tree car runs sees likes eats finds".split()


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r) for r in [header] + rows) + "\n")


def sentence(rng: random.Random, cue: str | None = None) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(4, 12))]
    if cue:
        words.insert(rng.randrange(len(words) + 1), cue)
    return " ".join(words)


def sst2_rows(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        rows.append([sentence(rng, "good" if label else "bad"), str(label)])
    return rows


@pytest.fixture(scope="module")
def glue_root(tmp_path_factory) -> Path:
    """A tiny GLUE root in the official layout: SST-2 (label decided by 'good'/'bad'), STS-B, MNLI.

    300 SST-2 examples at lr 2e-3, batch 8: every seed tried (0-5) leaves the constant-prediction plateau
    within 2 epochs; 200 examples at lr 1e-3 stay on it for some seeds.
    """
    root = tmp_path_factory.mktemp("glue")
    write_tsv(root / "SST-2" / "train.tsv", ["sentence", "label"], sst2_rows(300, seed=1))
    write_tsv(root / "SST-2" / "dev.tsv", ["sentence", "label"], sst2_rows(80, seed=2))

    rng = random.Random(3)
    head = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"]

    def sts(n):
        rows = []
        for i in range(n):
            s1, s2 = sentence(rng), sentence(rng)
            score = 5.0 * len(set(s1.split()) & set(s2.split())) / len(set(s1.split()) | set(s2.split()))
            rows.append([str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", s1, s2,
                         f"{score:.3f}"])
        return rows
    write_tsv(root / "STS-B" / "train.tsv", head, sts(48))
    write_tsv(root / "STS-B" / "dev.tsv", head, sts(24))

    labels = ["entailment", "neutral", "contradiction"]
    head = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
            "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]

    def nli(n, votes, label_of=lambda i: i % 3):
        rows = []
        for i in range(n):
            gold = labels[label_of(i)]
            s1, s2 = sentence(rng), sentence(rng)
            rows.append([str(i), str(i), f"{i}{gold[0]}", "fiction", f"( {s1} )", f"( {s2} )", f"(ROOT {s1})",
                         f"(ROOT {s2})", s1, s2] + [gold] * votes + [gold])
        return rows
    write_tsv(root / "MNLI" / "train.tsv", head + ["label1", "gold_label"], nli(48, 1))
    votes = ["label1", "label2", "label3", "label4", "label5", "gold_label"]
    write_tsv(root / "MNLI" / "dev_matched.tsv", head + votes, nli(21, 5))
    # Other label shares than matched (in its first 12 rows 3 / 3 / 6, not 4 / 4 / 4): even a model that predicts
    # one class everywhere scores m and mm differently, so a swap of the two dev sets shows.
    write_tsv(root / "MNLI" / "dev_mismatched.tsv", head + votes, nli(15, 5, label_of=lambda i: min(i % 4, 2)))
    return root


def read_tsv(path: Path, *columns: int, first: int | None = None) -> list[tuple[str, ...]]:
    """Chosen columns of a TSV's rows after the header, read here independently of stages/glue.py."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]][:first]
    return [tuple(r[c] for c in columns) for r in rows]


def saved_model_logits(model_dir: str | Path, texts: list[tuple[str, ...]], batch_size: int = 128,
                       autocast: bool = False) -> np.ndarray:
    """Logits of a saved classifier over (sentence,) or (sentence1, sentence2) examples, in eval mode, in
    right-padded batches of the stage's eval_batch_size: the same arithmetic, so that even a barely trained
    model's near-tied predictions come out in the same order (STS-B's ranks)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    out = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for i in range(0, len(texts), batch_size):
            enc = tok(*map(list, zip(*texts[i:i + batch_size])), padding=True, return_tensors="pt")
            out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out)


@pytest.fixture(scope="module")
def sst2_runs(tmp_path_factory, tiny_bert, glue_root):
    """Three SST-2 runs shared by the tests below: seed 0 twice, seed 1 once."""
    out = tmp_path_factory.mktemp("ft")
    base = FinetuneConfig(model=tiny_bert, task="sst2", output_dir=str(out / "a"), data_dir=str(glue_root), seed=0,
                          learning_rate=2e-3, batch_size=8, epochs=3, log_every=10, num_threads=1)
    runs = {}
    for name, cfg in (("a", base), ("b", base.replace(output_dir=str(out / "b"), save_model=True)),
                      ("c", base.replace(output_dir=str(out / "c"), seed=1))):
        logs = []
        res = finetune(cfg, on_log=lambda s, m, logs=logs: logs.append((s, m)), log=lambda *_: None)
        runs[name] = (res, logs)
    return runs


def test_sst2_learns_the_cue_word_and_writes_results(sst2_runs, glue_root):
    res, logs = sst2_runs["a"]
    assert res.metrics["accuracy"] > 0.8, res.metrics
    # The reported accuracy is the final model's on all 80 dev sentences: run b (same seed, bit-identical,
    # see below) kept its model; its predictions are recomputed here.
    dev = read_tsv(glue_root / "SST-2" / "dev.tsv", 0, 1)
    pred = saved_model_logits(Path(sst2_runs["b"][0].output_dir) / "model", [(t,) for t, _ in dev]).argmax(-1)
    assert len(dev) == 80 and res.metrics["accuracy"] == pytest.approx(np.mean(pred == [int(y) for _, y in dev]))
    assert set(res.metrics) == {"accuracy"}
    steps_per_epoch = math.ceil(300 / 8)  # 38: the last batch of an epoch is a short one, not dropped
    assert res.steps == 3 * steps_per_epoch and res.train_examples == 300
    assert res.train_tokens_per_s > 0 and res.seconds > 0

    saved = json.loads((Path(res.output_dir) / "eval_results.json").read_text())
    assert saved["task"] == "sst2" and saved["metrics"] == res.metrics
    assert saved["config"]["learning_rate"] == 2e-3 and saved["seconds"] == pytest.approx(res.seconds)
    assert not (Path(res.output_dir) / "model").exists()  # save_model defaults to False
    # clean files, defined metrics, predict_test off by default
    assert res.dropped_rows == saved["dropped_rows"] == {} and res.degenerate == saved["degenerate"] == []
    assert res.test_predictions == [] and not (Path(res.output_dir) / "glue_test").exists()

    train = [(s, m) for s, m in logs if "train/loss" in m]
    evals = [(s, m) for s, m in logs if any(k.startswith("eval/") for k in m)]
    assert [s for s, _ in train] == list(range(10, 114, 10)) + [114]
    assert all(set(m) == {"train/loss", "train/lr", "train/padding_fraction"} for _, m in train)
    assert train[-1][1]["train/lr"] == pytest.approx(0.0)  # linear decay to zero, no warmup
    assert [s for s, _ in evals] == [steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch]  # once per epoch
    assert evals[-1][1] == {"eval/accuracy": res.metrics["accuracy"]}  # final metrics = last epoch, no selection


def test_same_seed_reproduces_and_another_seed_differs(sst2_runs):
    (ra, la), (rb, lb), (_, lc) = sst2_runs["a"], sst2_runs["b"], sst2_runs["c"]
    assert ra.metrics == rb.metrics
    assert la == lb  # every logged loss and eval value is bit-identical
    losses = lambda logs: [m["train/loss"] for _, m in logs if "train/loss" in m]  # noqa: E731
    assert losses(la) != losses(lc)


def test_stsb_regression_fractional_epochs_and_saved_model(tmp_path, tiny_bert, glue_root):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    logs = []
    cfg = FinetuneConfig(model=tiny_bert, task="stsb", output_dir=str(tmp_path / "stsb"), data_dir=str(glue_root),
                         learning_rate=1e-3, batch_size=8, epochs=1.5, warmup_ratio=0.5, log_every=2, num_threads=1,
                         save_model=True)
    res = finetune(cfg, on_log=lambda s, m: logs.append((s, m)), log=lambda *_: None)
    assert set(res.metrics) == {"spearman", "pearson"}
    # Recomputed with scipy from the saved model's predictions on the 24 dev pairs.
    dev = read_tsv(glue_root / "STS-B" / "dev.tsv", 7, 8, 9)
    pred = saved_model_logits(tmp_path / "stsb" / "model", [(a, b) for a, b, _ in dev])[:, 0]
    gold = [float(y) for *_, y in dev]
    assert len(dev) == 24
    assert res.metrics["spearman"] == pytest.approx(spearmanr(pred, gold).statistic)
    assert res.metrics["pearson"] == pytest.approx(pearsonr(pred, gold).statistic)
    assert res.steps == math.ceil(1.5 * 48 / 8)  # 9: one full epoch and half of the next
    assert [s for s, m in logs if "eval/spearman" in m] == [6, 9]
    # warmup int(0.5 * 9) = 4 steps up to the peak, then linear decay to 0 at step 9.
    assert [s for s, m in logs if "train/lr" in m] == [2, 4, 6, 8, 9]
    assert [m["train/lr"] for _, m in logs if "train/lr" in m] == pytest.approx([5e-4, 1e-3, 6e-4, 2e-4, 0.0])

    model = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "stsb" / "model"))
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    assert len(AutoTokenizer.from_pretrained(str(tmp_path / "stsb" / "model"))) > 100


def test_mnli_scores_both_dev_sets(tmp_path, tiny_bert, glue_root):
    logs = []
    cfg = FinetuneConfig(model=tiny_bert, task="mnli", output_dir=str(tmp_path / "mnli"), data_dir=str(glue_root),
                         learning_rate=1e-3, batch_size=16, epochs=1, num_threads=1, max_eval_examples=12,
                         eval_batch_size=5, save_model=True)
    res = finetune(cfg, on_log=lambda s, m: logs.append((s, m)), log=lambda *_: None)
    assert set(res.metrics) == {"m_accuracy", "mm_accuracy"}
    # 12 examples per dev set: any accuracy is a multiple of 1/12 (shows max_eval_examples and batching of 5).
    assert all(abs(v * 12 - round(v * 12)) < 1e-9 for v in res.metrics.values())
    # m is dev_matched, mm dev_mismatched: each recomputed from the saved model on that file's first 12 rows.
    for key, file in (("m", "dev_matched.tsv"), ("mm", "dev_mismatched.tsv")):
        dev = read_tsv(glue_root / "MNLI" / file, 8, 9, -1, first=12)
        pred = saved_model_logits(tmp_path / "mnli" / "model", [(a, b) for a, b, _ in dev], batch_size=5).argmax(-1)
        gold = [MNLI_LABELS.index(y) for *_, y in dev]
        assert res.metrics[f"{key}_accuracy"] == pytest.approx(np.mean(pred == gold)), key
    assert [m for _, m in logs if "eval/m_accuracy" in m] == [
        {"eval/m_accuracy": res.metrics["m_accuracy"], "eval/mm_accuracy": res.metrics["mm_accuracy"]}]


def test_bad_config_is_refused_with_the_fix(tmp_path, tiny_bert, glue_root):
    base = FinetuneConfig(model=tiny_bert, task="sst2", output_dir=str(tmp_path), data_dir=str(glue_root),
                          num_threads=1, max_train_examples=8, max_eval_examples=8)
    with pytest.raises(ValueError, match="mixed_precision\n  Input should be 'auto', 'no', 'bf16' or 'fp16'"):
        finetune(base.replace(mixed_precision="fp32"), log=lambda *_: None)
    with pytest.raises(StageError, match="position embeddings; lower max_length to at most 160"):
        finetune(base.replace(max_length=512), log=lambda *_: None)
    with pytest.raises(StageError, match="GLUE FAQ 12"):
        finetune(base.replace(task="wnli"), log=lambda *_: None)
    with pytest.raises(StageError, match="model folder .*nope' does not exist"):
        finetune(base.replace(model=str(tmp_path / "nope")), log=lambda *_: None)


@pytest.fixture()
def restore_accelerator_state():
    """Tests later in the session (pretrain) build their own fp32 Accelerator: leave no bf16 state behind."""
    yield
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state()


def test_precision_can_change_between_runs_in_one_process(tmp_path, tiny_bert, glue_root, monkeypatch,
                                                         restore_accelerator_state):
    """A Ray worker may run an fp32 trial and then a bf16 one; accelerate's process-wide state refuses that
    unless reset. On CPU, "bf16" is forced through resolve_mixed_precision to exercise the autocast path."""
    import stages.finetune as ft

    base = FinetuneConfig(model=tiny_bert, task="sst2", output_dir=str(tmp_path / "fp32"), data_dir=str(glue_root),
                          num_threads=1, max_train_examples=32, max_eval_examples=16, batch_size=8, epochs=1,
                          mixed_precision="no")
    finetune(base, log=lambda *_: None)
    monkeypatch.setattr(ft, "resolve_mixed_precision", lambda requested: "bf16")
    lines = []
    res = finetune(base.replace(output_dir=str(tmp_path / "bf16"), mixed_precision="bf16", save_model=True),
                   log=lines.append)
    assert "precision bf16" in lines[0] and res.steps == 4
    # The bf16 run's accuracy, recomputed from its saved model under bf16 autocast on the same padded batch.
    dev = read_tsv(glue_root / "SST-2" / "dev.tsv", 0, 1, first=16)
    pred = saved_model_logits(tmp_path / "bf16" / "model", [(t,) for t, _ in dev], autocast=True).argmax(-1)
    assert res.metrics["accuracy"] == pytest.approx(np.mean(pred == [int(y) for _, y in dev]))


def test_train_tokens_per_s_counts_real_tokens_not_padding(tmp_path, tiny_bert, glue_root, monkeypatch):
    """A fake clock makes each epoch's training take 2.5 s, so tokens/s x 5 s is the count of tokens trained
    on: every [CLS] sentence [SEP] token of the 32 examples, twice, and none of the padding their batches of 8
    carry (sentences are 4-13 words long)."""
    import time as real_time
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    import stages.finetune as ft

    ticks = iter(range(10**6))
    monkeypatch.setattr(ft, "time", SimpleNamespace(time=real_time.time, perf_counter=lambda: 2.5 * next(ticks)))
    res = finetune(FinetuneConfig(model=tiny_bert, task="sst2", output_dir=str(tmp_path / "o"), data_dir=str(glue_root),
                                  num_threads=1, max_train_examples=32, max_eval_examples=8, batch_size=8, epochs=2),
                   log=lambda *_: None)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    lengths = [len(tok(t)["input_ids"]) for t, in read_tsv(glue_root / "SST-2" / "train.tsv", 0, first=32)]
    assert len(set(lengths)) > 1  # batches hold padding, so counting it would give another number
    assert res.train_tokens_per_s * 2 * 2.5 == pytest.approx(2 * sum(lengths))


def test_pad_batch_right_pads_to_the_longest_of_the_batch():
    import numpy as np
    import torch

    from stages.common import pad_batch

    out = pad_batch([np.array([5, 6, 7], dtype=np.int32), [8]], [np.array([0, 1, 1], dtype=np.int8), [0]], pad_id=3)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 3, 3]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["token_type_ids"].tolist() == [[0, 1, 1], [0, 0, 0]]
    assert all(v.dtype == torch.long for v in out.values())
    assert set(pad_batch([[1, 2]], None, pad_id=0)) == {"input_ids", "attention_mask"}   # no types: no key


# ------------------------------------------------------------------------------- test predictions, drops, NaN

def test_new_data_settings_are_sweep_keys_and_only_predict_test_is_hashed(tmp_path):
    from orchestrator.config import DEFAULT_CONFIG, FinetuneSection, load_sweep
    from orchestrator.graph import build_graph
    from stages.common import is_hashed

    for name in ("strict", "predict_test"):
        assert name in FinetuneSection.model_fields and name in FinetuneConfig.model_fields
    strict, predict_test = FinetuneConfig.model_fields["strict"], FinetuneConfig.model_fields["predict_test"]
    assert strict.default is False and predict_test.default is False
    assert not is_hashed(strict) and is_hashed(predict_test)
    # in the sweep: finetune.strict reaches the node's config without changing its hash; predict_test re-runs it
    graphs = {o: build_graph(load_sweep(DEFAULT_CONFIG, [o] if o else [], base_dir=tmp_path))
              for o in ("", "finetune.strict=true", "finetune.predict_test=true")}
    node = "finetune/S/rte/seed1"
    assert graphs["finetune.strict=true"].nodes[node].params["config"]["strict"] is True
    assert graphs["finetune.strict=true"].nodes[node].hash == graphs[""].nodes[node].hash
    assert graphs["finetune.predict_test=true"].nodes[node].hash != graphs[""].nodes[node].hash


def read_prediction_file(path: Path) -> tuple[list[str], list[str]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "index\tprediction"
    rows = [line.split("\t") for line in lines[1:]]
    return [r[0] for r in rows], [r[1] for r in rows]


@pytest.fixture(scope="module")
def glue_with_tests(tmp_path_factory) -> Path:
    """A GLUE root with test files in the official layout, and a few malformed rows in SST-2's train file."""
    root = tmp_path_factory.mktemp("glue_tests")
    rng = random.Random(7)
    train = sst2_rows(60, seed=4)
    # line 1 is the header: the short row lands on line 12, the empty label on line 32
    train.insert(10, ["a review whose label column is lost"])
    train.insert(30, [sentence(rng, "good"), ""])
    write_tsv(root / "SST-2" / "train.tsv", ["sentence", "label"], train)
    write_tsv(root / "SST-2" / "dev.tsv", ["sentence", "label"], sst2_rows(16, seed=5))
    write_tsv(root / "SST-2" / "test.tsv", ["index", "sentence"],
              [[str(100 + i), text] for i, (text, _) in enumerate(sst2_rows(12, seed=6))])

    head = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]

    def sts(n, score=None):
        rows = []
        for i in range(n):
            s1, s2 = sentence(rng), sentence(rng)
            y = score if score is not None else 5.0 * len(set(s1.split()) & set(s2.split())) / len(set(s1.split()))
            rows.append([str(i), "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none", s1, s2, f"{y:.3f}"])
        return rows
    write_tsv(root / "STS-B" / "train.tsv", head + ["score"], sts(32))
    write_tsv(root / "STS-B" / "dev.tsv", head + ["score"], sts(8, score=2.0))   # constant gold: no correlation
    write_tsv(root / "STS-B" / "test.tsv", head, [r[:-1] for r in sts(10)])

    labels = ["entailment", "neutral", "contradiction"]
    mnli_head = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                 "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]

    def nli(n, gold: bool):
        rows = []
        for i in range(n):
            s1, s2 = sentence(rng), sentence(rng)
            rows.append([str(i), str(i), f"{i}n", "fiction", f"( {s1} )", f"( {s2} )", f"(ROOT {s1})", f"(ROOT {s2})",
                         s1, s2] + ([labels[i % 3], labels[i % 3]] if gold else []))
        return rows
    write_tsv(root / "MNLI" / "train.tsv", mnli_head + ["label1", "gold_label"], nli(24, True))
    for name in ("dev_matched.tsv", "dev_mismatched.tsv"):
        write_tsv(root / "MNLI" / name, mnli_head + ["label1", "gold_label"], nli(6, True))
    write_tsv(root / "MNLI" / "test_matched.tsv", mnli_head, nli(7, False))
    write_tsv(root / "MNLI" / "test_mismatched.tsv", mnli_head, nli(5, False))
    write_tsv(root / "diagnostic" / "diagnostic.tsv", ["index", "sentence1", "sentence2"],
              [[str(i), sentence(rng), sentence(rng)] for i in range(9)])
    return root


def test_sst2_test_predictions_and_dropped_rows(tmp_path, tiny_bert, glue_with_tests):
    lines = []
    res = finetune(FinetuneConfig(model=tiny_bert, task="sst2", output_dir=str(tmp_path / "o"),
                                  data_dir=str(glue_with_tests), learning_rate=2e-3, batch_size=8, epochs=1,
                                  num_threads=1, predict_test=True, save_model=True), log=lines.append)
    assert res.train_examples == 60   # 62 rows, 2 of them malformed
    expected_drops = {"train": {"count": 2, "first": ["train.tsv line 12", "train.tsv line 32"]}}
    assert res.dropped_rows == expected_drops
    assert any("train: skipped 2 malformed row(s)" in line and "train.tsv line 12" in line for line in lines)
    saved = json.loads((tmp_path / "o" / "eval_results.json").read_text())
    assert saved["dropped_rows"] == expected_drops and saved["test_predictions"] == ["SST-2.tsv"]
    # The file: the test file's own indices, and the saved model's predictions as the leaderboard's 0/1.
    test_rows = read_tsv(glue_with_tests / "SST-2" / "test.tsv", 0, 1)
    pred = saved_model_logits(tmp_path / "o" / "model", [(t,) for _, t in test_rows]).argmax(-1)
    indices, values = read_prediction_file(tmp_path / "o" / "glue_test" / "SST-2.tsv")
    assert indices == [str(100 + i) for i in range(12)] and values == [str(int(p)) for p in pred]
    assert sorted(p.name for p in (tmp_path / "o" / "glue_test").iterdir()) == ["SST-2.tsv"]


def test_mnli_predicts_both_test_sets_and_ax(tmp_path, tiny_bert, glue_with_tests):
    res = finetune(FinetuneConfig(model=tiny_bert, task="mnli", output_dir=str(tmp_path / "o"),
                                  data_dir=str(glue_with_tests), learning_rate=1e-3, batch_size=8, epochs=1,
                                  num_threads=1, predict_test=True, save_model=True), log=lambda *_: None)
    assert res.test_predictions == ["MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"]
    for name, path, a, b in (("MNLI-m.tsv", "MNLI/test_matched.tsv", 8, 9),
                             ("MNLI-mm.tsv", "MNLI/test_mismatched.tsv", 8, 9),
                             ("AX.tsv", "diagnostic/diagnostic.tsv", 1, 2)):
        rows = read_tsv(glue_with_tests / path, 0, a, b)
        pred = saved_model_logits(tmp_path / "o" / "model", [(s1, s2) for _, s1, s2 in rows]).argmax(-1)
        indices, values = read_prediction_file(tmp_path / "o" / "glue_test" / name)
        assert indices == [r[0] for r in rows] and values == [MNLI_LABELS[p] for p in pred], name


def test_stsb_constant_dev_gold_is_degenerate_and_test_scores_are_clipped(tmp_path, tiny_bert, glue_with_tests):
    lines = []
    res = finetune(FinetuneConfig(model=tiny_bert, task="stsb", output_dir=str(tmp_path / "o"),
                                  data_dir=str(glue_with_tests), learning_rate=1e-3, batch_size=8, epochs=1,
                                  num_threads=1, predict_test=True, save_model=True), log=lines.append)
    assert set(res.metrics) == {"spearman", "pearson"} and all(math.isnan(v) for v in res.metrics.values())
    assert res.degenerate == ["spearman", "pearson"]
    assert any("degenerate" in line for line in lines)
    saved = json.loads((tmp_path / "o" / "eval_results.json").read_text())   # Python's json reads NaN back
    assert saved["degenerate"] == ["spearman", "pearson"] and math.isnan(saved["metrics"]["spearman"])
    rows = read_tsv(glue_with_tests / "STS-B" / "test.tsv", 0, 7, 8)
    raw = saved_model_logits(tmp_path / "o" / "model", [(a, b) for _, a, b in rows])[:, 0]
    indices, values = read_prediction_file(tmp_path / "o" / "glue_test" / "STS-B.tsv")
    assert indices == [r[0] for r in rows]
    assert [float(v) for v in values] == pytest.approx([min(5.0, max(0.0, float(x))) for x in raw], abs=5e-4)


def test_run_flags_one_class_and_divergence():
    from stages.finetune import DIVERGED_LOSS_RATIO, run_flags

    assert run_flags(False, [0.70, 0.60, 0.40]) == []
    assert run_flags(True, [0.70, 0.69]) == ["one_class"]
    assert run_flags(False, [0.70, float("nan")]) == ["diverged"]
    assert run_flags(False, [0.70, 0.70 * DIVERGED_LOSS_RATIO + 0.01]) == ["diverged"]
    assert run_flags(False, [0.70, 0.70 * DIVERGED_LOSS_RATIO]) == []      # at the threshold: not yet
    assert run_flags(True, [float("inf")]) == ["one_class", "diverged"]
    assert run_flags(False, []) == []


def test_a_collapsed_classifier_is_flagged(tmp_path, tiny_bert, glue_root, monkeypatch, sst2_runs):
    """Wiring of the flag: the final model's dev predictions, all one class, make the run `one_class`; the
    shared SST-2 runs, which learn the cue word, carry no flag."""
    assert all(res.flags == [] for res, _ in sst2_runs.values())
    import stages.finetune as ft

    cfg = FinetuneConfig(model=tiny_bert, task="sst2", output_dir=str(tmp_path / "a"), data_dir=str(glue_root),
                         num_threads=1, max_train_examples=32, max_eval_examples=16, batch_size=8, epochs=1)
    real = ft._predict

    def constant(model, loader, accelerator, spec):
        pred, gold = real(model, loader, accelerator, spec)
        return np.zeros_like(pred), gold

    monkeypatch.setattr(ft, "_predict", constant)
    res = finetune(cfg.replace(output_dir=str(tmp_path / "b")), log=lambda *_: None)
    assert res.flags == ["one_class"]
    assert json.loads((tmp_path / "b" / "eval_results.json").read_text())["flags"] == ["one_class"]
