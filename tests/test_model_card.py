"""Model cards: what the hub parses from the front matter, what a reader finds in the body, and that the card
is deterministic. Cards are read back with huggingface_hub's own parser (offline: a local file)."""
from __future__ import annotations

import math
import os

import pytest
from huggingface_hub import ModelCard

from stages.model_card import mapping_summary, write_finetune_card, write_pretrain_card

REPORT = {  # the shape stages/transfer.py writes for a frequency-mode transfer
    "mode": "frequency", "source": "KB/bert-base-swedish-cased", "seed": 3, "mlm_head": {
        "missing_keys": ["cls.predictions.bias", "cls.predictions.transform.dense.weight"],
        "unexpected_keys": [], "initialised": "transformers' init"},
    "rank": "counts", "new_rows": 0, "source_rows": 50325, "target_vocab_size": 30000, "identity_count": 1234,
    "special_identity_count": 5, "special_tokens": {"pad": {"target_id": 0}}, "bands": [{"from": 0}],
    "same_kind": {"top100": {"pairs": 100, "same_kind": 69, "share": 0.69},
                  "top1000": {"pairs": 1000, "same_kind": 600, "share": 0.6}},
    "warning": "72% of the source's 100 top-ranked rows are single characters",
}


def pretrain(tmp_path, name="m", **kw):
    args = dict(model_key="sv-to-en-frequency", source_model="KB/bert-base-swedish-cased", language="en",
                init_method="frequency", mapping_summary=mapping_summary(REPORT),
                corpus_files=["/home/alice/secret/corpora/en-wiki.txt", "/home/alice/secret/corpora/books.txt"],
                tokens_seen=123456789, steps=20000, eval_loss=2.345678, eval_accuracy=0.51239, seed=3,
                hyperparameters={"learning_rate": 5e-05, "batch_size": 256, "note": "a|b"})
    args.update(kw)
    return write_pretrain_card(tmp_path / name, **args)


def front_matter(path) -> str:
    return path.read_text().split("---\n")[1]


def test_mapping_summary_picks_and_flattens():
    s = mapping_summary(REPORT)
    assert s == {"mode": "frequency", "rank": "counts", "vocab_size": 30000, "source_rows": 50325,
                 "identity_count": 1234, "special_identity_count": 5, "new_rows": 0,
                 "same_kind": {"top100": 0.69, "top1000": 0.6}, "mlm_head_missing": 2,
                 "warning": REPORT["warning"]}
    keep = mapping_summary({"mode": "keep", "target_vocab_size": 100, "kept": 100, "dropped": 20,
                            "mlm_head": {"missing_keys": [], "unexpected_keys": []}})
    assert keep == {"mode": "keep", "vocab_size": 100, "kept": 100, "dropped": 20, "mlm_head_missing": 0}
    assert mapping_summary({"mode": "scratch", "seed": 0}) == {"mode": "scratch"}


def test_pretrain_card_metadata_and_body(tmp_path):
    path = pretrain(tmp_path)
    assert path == tmp_path / "m" / "README.md"
    card = ModelCard.load(path)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "fill-mask"
    assert card.data.base_model == "KB/bert-base-swedish-cased"
    assert card.data.language == ["en"]
    assert {"xlt", "cross-lingual-transfer", "bert"} <= set(card.data.tags)
    text = card.text
    for expected in ("Gogoulou et al.", "KB/bert-base-swedish-cased", "`frequency`", "123,456,789", "20,000",
                     "| held-out MLM loss | 2.3457 |", "| held-out MLM accuracy | 0.5124 |", "| seed | 3 |",
                     "top100 0.69, top1000 0.60", "**vocabulary size**: 30000", "**warning**: 72%",
                     "**MLM head tensors missing from the source (seeded init)**: 2",
                     "| learning_rate | 5e-05 |", "| batch_size | 256 |", "| note | a\\|b |"):
        assert expected in text, expected


def test_corpus_by_basename_only(tmp_path):
    raw = pretrain(tmp_path).read_text()
    assert "`en-wiki.txt`, `books.txt`" in raw
    assert "/home/alice" not in raw and "secret" not in raw


@pytest.mark.parametrize("source", ["local", "./models/sv", "out/pretrain/sv/model"])
def test_local_source_is_no_base_model(tmp_path, monkeypatch, source):
    if source == "local":   # a bare name that is a folder here is a path, not a hub id
        (tmp_path / source).mkdir()
        monkeypatch.chdir(tmp_path)
    path = pretrain(tmp_path, source_model=source)
    card = ModelCard.load(path)
    assert card.data.base_model is None and "base_model" not in front_matter(path)
    assert f"local folder `{source}`" in card.text


def test_random_init_has_no_base_model(tmp_path):
    # scratch reuses the source's architecture only; claiming it as base_model would say its weights came along
    path = pretrain(tmp_path, init_method="scratch", mapping_summary={"mode": "scratch"})
    card = ModelCard.load(path)
    assert card.data.base_model is None
    assert "KB/bert-base-swedish-cased" in card.text and "random init" in card.text
    assert "Vocabulary mapping" in card.text and "identity" not in card.text
    built = ModelCard.load(pretrain(tmp_path, "b", source_model=None, init_method="build", mapping_summary=None))
    assert built.data.base_model is None and "Vocabulary mapping" not in built.text


def test_nan_is_nd(tmp_path):
    path = pretrain(tmp_path, eval_loss=math.nan, eval_accuracy=0.5)
    assert "| held-out MLM loss | n/d |" in path.read_text()


def test_deterministic_and_unchanged_file_kept(tmp_path):
    a, b = pretrain(tmp_path, "a"), pretrain(tmp_path, "b")
    assert a.read_bytes() == b.read_bytes()
    os.utime(a, ns=(0, 0))
    assert pretrain(tmp_path, "a").read_bytes() == b.read_bytes()
    assert a.stat().st_mtime_ns == 0   # same bytes: the file is not rewritten
    assert pretrain(tmp_path, "a", steps=1).read_bytes() != b.read_bytes()


def test_finetune_card_stsb_nan(tmp_path):
    path = write_finetune_card(tmp_path / "ft", model_key="sv-to-en-frequency/stsb/seed1",
                               base_model="KB/bert-base-swedish-cased", task="stsb", seed=1,
                               metrics={"spearman": math.nan, "pearson": 0.87654, "degenerate": ["spearman"],
                                        "dropped_rows": {"dev": 0}},
                               hyperparameters={"learning_rate": 2e-05, "epochs": 3})
    card = ModelCard.load(path)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.base_model == "KB/bert-base-swedish-cased"
    assert card.data.datasets == ["glue"] and card.data.language == ["en"]
    assert card.data.model_name == "sv-to-en-frequency/stsb/seed1"
    [result] = card.data.eval_results   # the NaN spearman is left out of the metadata
    assert (result.task_type, result.dataset_type, result.dataset_config, result.dataset_split) == (
        "text-classification", "glue", "stsb", "validation")
    assert (result.metric_type, result.metric_value) == ("pearsonr", 0.8765)
    assert "nan" not in front_matter(path).lower()
    for expected in ("| spearman | n/d |", "| pearson | 0.8765 |", "| seed | 1 |", "GLUE STS-B",
                     "| learning_rate | 2e-05 |", "| epochs | 3 |"):
        assert expected in card.text, expected
    assert "dropped_rows" not in card.text and "degenerate" not in card.text


def test_finetune_card_mnli_splits_and_local_base(tmp_path):
    path = write_finetune_card(tmp_path / "ft", model_key="en-scratch/mnli/seed0", base_model=str(tmp_path),
                               task="mnli", seed=0, metrics={"m_accuracy": 0.8, "mm_accuracy": 0.75},
                               hyperparameters={})
    card = ModelCard.load(path)
    assert card.data.base_model is None and f"local folder `{tmp_path}`" in card.text
    splits = {r.metric_name: (r.dataset_split, r.metric_type, r.metric_value) for r in card.data.eval_results}
    assert splits == {"m_accuracy": ("validation_matched", "accuracy", 0.8),
                      "mm_accuracy": ("validation_mismatched", "accuracy", 0.75)}
    assert "| mm_accuracy | 0.7500 |" in card.text and "Hyperparameters" not in card.text


def test_finetune_card_source_language_task(tmp_path):
    # ScandiSent is no hub GLUE config: no datasets, no model-index, the metrics in the text only
    path = write_finetune_card(tmp_path / "ft", model_key="sv/scandisent-sv/seed0", base_model="KB/bert",
                               task="scandisent-sv", seed=0, metrics={"accuracy": 0.9}, hyperparameters={},
                               language="sv")
    card = ModelCard.load(path)
    assert card.data.datasets is None and card.data.eval_results is None
    assert "model-index" not in front_matter(path)
    assert card.data.language == ["sv"] and card.data.pipeline_tag == "text-classification"
    assert "| accuracy | 0.9000 |" in card.text
