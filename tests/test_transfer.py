"""Vocabulary surgery checked row by row on hand-built vocabularies whose embedding row i holds the value i."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stages.common import StageError
from stages.transfer import TransferConfig, transfer


def hand_tokenizer(folder, tokens: list[str], lowercase: bool = False):
    """A BERT WordPiece tokenizer with exactly this vocabulary, in this id order."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tokens.index("[CLS]")), ("[SEP]", tokens.index("[SEP]"))])
    fast = BertTokenizerFast(tokenizer_object=tok, do_lower_case=lowercase, unk_token="[UNK]", sep_token="[SEP]",
                             pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    fast.save_pretrained(str(folder))
    return fast


def hand_model(folder, vocab_tokens: list[str]):
    """Source model: embedding row i is all i, MLM bias[i] = 1000 + i."""
    from transformers import BertConfig, BertForMaskedLM

    hand_tokenizer(folder, vocab_tokens)
    cfg = BertConfig(vocab_size=len(vocab_tokens), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, max_position_embeddings=32, pad_token_id=vocab_tokens.index("[PAD]"))
    model = BertForMaskedLM(cfg)
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(torch.arange(len(vocab_tokens)).float()[:, None].expand(-1, 8))
        model.cls.predictions.bias.copy_(1000 + torch.arange(len(vocab_tokens)).float())
    model.save_pretrained(str(folder))
    return str(folder)


# Source vocabulary in the KB-BERT style: specials first but in another order than the target,
# a reserved [unused0] row that must never be reused, then ordinary tokens in frequency order.
SOURCE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "och", "att", "det", "##en", "i", "som", "en"]
#           0        1        2        3        4          5          6      7      8      9     10    11    12
SOURCE_SWAPPED = ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"] + SOURCE[5:]
TARGET = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "of", "and", "##s", "en"]
#           0        1        2        3        4         5      6      7      8     9
TARGET_COUNTS = np.array([0, 3, 50, 50, 0, 10, 40, 40, 25, 0])  # "of" and "and" tie: id order breaks it


def rows_of(folder) -> np.ndarray:
    from transformers import AutoModelForMaskedLM

    m = AutoModelForMaskedLM.from_pretrained(folder)
    return m.get_input_embeddings().weight[:, 0].detach().numpy(), m.get_output_embeddings().bias.detach().numpy(), m


@pytest.fixture()
def setup(tmp_path):
    src = hand_model(tmp_path / "src", SOURCE_SWAPPED)
    hand_tokenizer(tmp_path / "tgt", TARGET)
    np.save(tmp_path / "counts.npy", TARGET_COUNTS)
    return tmp_path, src


def test_frequency_mapping_row_by_row(setup):
    tmp, src = setup
    res = transfer(TransferConfig(source=src, mode="frequency", output_dir=str(tmp / "out"), rank="hybrid",
                                  target_tokenizer=str(tmp / "tgt"), target_counts=str(tmp / "counts.npy")))
    emb, bias, model = rows_of(str(tmp / "out"))
    # rank hybrid: English ranks by count: of(40) and(40) ##s(25) the(10) en(0). Source ordinary rows in vocab order,
    # skipping specials and [unused0]: och=6 att=7 det=8 ##en=9 i=10 ...
    expected = {
        0: SOURCE_SWAPPED.index("[PAD]"), 1: SOURCE_SWAPPED.index("[UNK]"), 2: SOURCE_SWAPPED.index("[CLS]"),
        3: SOURCE_SWAPPED.index("[SEP]"), 4: SOURCE_SWAPPED.index("[MASK]"),
        6: 6, 7: 7, 8: 8, 5: 9, 9: 10,
    }
    assert emb.tolist() == [float(expected[i]) for i in range(len(TARGET))]
    assert bias.tolist() == [1000.0 + expected[i] for i in range(len(TARGET))]
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert model.config.vocab_size == len(TARGET) and model.config.pad_token_id == 0
    report = json.loads((tmp / "out" / "mapping_report.json").read_text())
    assert report["special_tokens"]["cls"] == {"target_id": 2, "target": "[CLS]", "source_row": 0, "source": "[CLS]"}
    # "en" (target id 9) lands on source row 10 ("i"): no ordinary token keeps its string; the 5 specials
    # match by role and are counted apart.
    assert res.identity_count == 0 and report["special_identity_count"] == 5
    assert report["rank"] == "hybrid" and report["source_ranking"] == "source vocab order"
    assert report["bands"][0]["pairs"][0] == {"rank": 0, "target_id": 6, "target": "of", "count": 40,
                                              "source_row": 6, "source": "och"}
    from transformers import AutoTokenizer
    assert AutoTokenizer.from_pretrained(str(tmp / "out")).convert_ids_to_tokens([5, 6]) == ["the", "of"]


def test_source_counts_reorder_source_ranks(setup):
    tmp, src = setup
    src_counts = np.zeros(len(SOURCE_SWAPPED), dtype=np.int64)
    src_counts[[6, 7, 8, 9, 10, 11, 12]] = [1, 2, 3, 4, 5, 6, 7]  # reverse of vocab order: "en"=12 most frequent
    np.save(tmp / "src_counts.npy", src_counts)
    res = transfer(TransferConfig(source=src, mode="frequency", output_dir=str(tmp / "out"), rank="counts",
                                  target_tokenizer=str(tmp / "tgt"), target_counts=str(tmp / "counts.npy"),
                                  source_counts=str(tmp / "src_counts.npy")))
    emb, _, _ = rows_of(str(tmp / "out"))
    # English by count: of and ##s the en; source by count: en(12) som(11) i(10) ##en(9) det(8)
    assert emb[[6, 7, 8, 5, 9]].tolist() == [12.0, 11.0, 10.0, 9.0, 8.0]
    # "en" (target 9) gets source row 8 ("det"), not 12 ("en"): still no ordinary identity
    assert res.identity_count == 0


def test_random_map_deals_same_rows_in_seeded_order(setup):
    tmp, src = setup
    kw = dict(source=src, mode="random-map", rank="hybrid", target_tokenizer=str(tmp / "tgt"),
              target_counts=str(tmp / "counts.npy"))
    transfer(TransferConfig(output_dir=str(tmp / "a"), seed=1, **kw))
    transfer(TransferConfig(output_dir=str(tmp / "b"), seed=1, **kw))
    a, _, _ = rows_of(str(tmp / "a"))
    b, _, _ = rows_of(str(tmp / "b"))
    assert a.tolist() == b.tolist()
    assert sorted(a[5:].tolist()) == [6.0, 7.0, 8.0, 9.0, 10.0]  # the rows frequency would use, nothing else
    assert a[:5].tolist() == [2.0, 4.0, 0.0, 1.0, 3.0]  # specials still matched by role
    perms = set()
    for seed in range(6):
        transfer(TransferConfig(output_dir=str(tmp / f"s{seed}"), seed=seed, **kw))
        perms.add(tuple(rows_of(str(tmp / f"s{seed}"))[0][5:].tolist()))
    assert len(perms) > 1


def test_keep_truncates_vocab_rows_and_bias(tmp_path):
    src = hand_model(tmp_path / "src", SOURCE)
    res = transfer(TransferConfig(source=src, mode="keep", output_dir=str(tmp_path / "out"), keep_vocab_size=9))
    emb, bias, model = rows_of(str(tmp_path / "out"))
    assert emb.tolist() == [float(i) for i in range(9)]
    assert bias.tolist() == [1000.0 + i for i in range(9)]
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert len(tok) == 9 and res.vocab_size == 9
    assert tok.convert_ids_to_tokens(tok("och det")["input_ids"]) == ["[CLS]", "och", "det", "[SEP]"]
    assert tok.convert_ids_to_tokens(tok("som")["input_ids"]) == ["[CLS]", "[UNK]", "[SEP]"]  # cut off


def test_keep_keeps_special_tokens_stored_past_the_cut(tmp_path):
    vocab = ["[PAD]", "och", "att", "det", "i", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    src = hand_model(tmp_path / "src", vocab)
    transfer(TransferConfig(source=src, mode="keep", output_dir=str(tmp_path / "out"), keep_vocab_size=7))
    emb, _, _ = rows_of(str(tmp_path / "out"))
    # specials 0,5,6 fall inside the first 7 ids, 7 and 8 outside: the last ordinary ids (3, 4) make room.
    assert emb.tolist() == [0.0, 1.0, 2.0, 5.0, 6.0, 7.0, 8.0]


def test_scratch_has_target_vocab_and_source_shape(setup):
    tmp, src = setup
    transfer(TransferConfig(source=src, mode="scratch", output_dir=str(tmp / "out"), target_tokenizer=str(tmp / "tgt")))
    emb, _, model = rows_of(str(tmp / "out"))
    assert emb.shape == (len(TARGET),) and model.config.hidden_size == 8
    assert not np.allclose(emb, np.round(emb))  # random init, not the source's integer rows


def test_casing_mismatch_between_source_and_english_tokenizer_is_refused(setup):
    tmp, src = setup
    hand_tokenizer(tmp / "tgt_uncased", TARGET, lowercase=True)
    with pytest.raises(StageError, match="is cased but the English tokenizer .* lowercases; set this source's "
                                         "`lowercase: false`"):
        transfer(TransferConfig(source=src, mode="frequency", output_dir=str(tmp / "out"), rank="hybrid",
                                target_tokenizer=str(tmp / "tgt_uncased"), target_counts=str(tmp / "counts.npy")))
    # the other way round: either an uncased source, or a cased one whose tokenizer files lack do_lower_case
    uncased_src = hand_model(tmp / "src_uncased", SOURCE_SWAPPED)
    hand_tokenizer(tmp / "src_uncased", SOURCE_SWAPPED, lowercase=True)
    with pytest.raises(StageError, match="lowercases its input but .* set this source's `lowercase: true`.* lack "
                                         "`do_lower_case: false`"):
        transfer(TransferConfig(source=uncased_src, mode="random-map", output_dir=str(tmp / "out2"), rank="hybrid",
                                target_tokenizer=str(tmp / "tgt"), target_counts=str(tmp / "counts.npy")))
    # keep mode uses the source's own tokenizer: no English vocabulary to disagree with
    transfer(TransferConfig(source=src, mode="keep", output_dir=str(tmp / "kept"), keep_vocab_size=None))


def test_target_vocab_larger_than_source_table_is_refused(tmp_path):
    src = hand_model(tmp_path / "src", SOURCE[:8])  # reusable ordinary rows: och, att (2 of them)
    hand_tokenizer(tmp_path / "tgt", TARGET)
    np.save(tmp_path / "counts.npy", TARGET_COUNTS)
    with pytest.raises(StageError, match="vocab_size <= 7"):
        transfer(TransferConfig(source=src, mode="frequency", output_dir=str(tmp_path / "out"), rank="vocab-order",
                                target_tokenizer=str(tmp_path / "tgt"), target_counts=str(tmp_path / "counts.npy")))


def test_unknown_mode_and_oversized_keep(tmp_path):
    src = hand_model(tmp_path / "src", SOURCE)
    with pytest.raises(ValueError, match="mode\n  Input should be 'keep', 'frequency', 'random-map', 'scratch'"):
        transfer(TransferConfig(source=src, mode="freq", output_dir=str(tmp_path / "o")))
    with pytest.raises(StageError, match="larger than the source vocabulary"):
        transfer(TransferConfig(source=src, mode="keep", output_dir=str(tmp_path / "o"), keep_vocab_size=99))


def test_grow_embeddings_gives_rarest_tokens_new_rows(tmp_path):
    src = hand_model(tmp_path / "src", SOURCE[:8])  # only och=6, att=7 reusable
    hand_tokenizer(tmp_path / "tgt", TARGET)
    np.save(tmp_path / "counts.npy", TARGET_COUNTS)
    transfer(TransferConfig(source=src, mode="frequency", output_dir=str(tmp_path / "out"), grow_embeddings=True,
                            rank="hybrid",
                            target_tokenizer=str(tmp_path / "tgt"), target_counts=str(tmp_path / "counts.npy")))
    emb, bias, model = rows_of(str(tmp_path / "out"))
    assert emb[[6, 7]].tolist() == [6.0, 7.0]  # of, and: the two most frequent take the two source rows
    for tid in (8, 5, 9):  # ##s, the, en: new rows, small random values and zero bias
        assert abs(emb[tid]) < 0.2 and emb[tid] != 0.0 and bias[tid] == 0.0
    # Exactly BERT's init, N(0, initializer_range = 0.02), drawn from the config's seed (0) for the new rows
    # in id order: the run is reproducible, and the rows are not, say, copies of a source row or unit-scaled.
    full = model.get_input_embeddings().weight.detach()
    expected = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)) * 0.02
    torch.testing.assert_close(full[[5, 8, 9]], expected)


def test_vocab_order_pairs_ordinary_ids_in_order(setup):
    tmp, src = setup
    res = transfer(TransferConfig(source=src, mode="frequency", output_dir=str(tmp / "out"), rank="vocab-order",
                                  target_tokenizer=str(tmp / "tgt"), target_counts=str(tmp / "counts.npy")))
    emb, _, _ = rows_of(str(tmp / "out"))
    # Literal reading: the i-th ordinary English id (the of and ##s en = ids 5..9) takes the i-th reusable source
    # row (och att det ##en i = rows 6..10), whatever the counts say; specials by role; [unused0] (row 5) skipped.
    assert emb.tolist() == [2.0, 4.0, 0.0, 1.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    report = json.loads((tmp / "out" / "mapping_report.json").read_text())
    assert report["target_ranking"] == "vocab order" and res.identity_count == 0


def test_identity_counts_ordinary_tokens_only(tmp_path):
    # Source and English share "en" at the same rank: exactly one ordinary identity, specials apart.
    src = hand_model(tmp_path / "src", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "en", "och"])
    hand_tokenizer(tmp_path / "tgt", ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "en", "the"])
    np.save(tmp_path / "counts.npy", np.array([0, 0, 0, 0, 0, 9, 3]))
    res = transfer(TransferConfig(source=src, mode="frequency", output_dir=str(tmp_path / "out"), rank="vocab-order",
                                  target_tokenizer=str(tmp_path / "tgt"), target_counts=str(tmp_path / "counts.npy")))
    assert res.identity_count == 1
    assert json.loads((tmp_path / "out" / "mapping_report.json").read_text())["special_identity_count"] == 5


def test_rank_needs_matching_counts():
    kw = dict(source="s", mode="frequency", output_dir="o", target_tokenizer="t", target_counts="c.npy")
    with pytest.raises(ValueError, match="rank: counts ranks the source rows by source_counts"):
        TransferConfig(**kw)   # counts is the default rank and needs the source side counted
    with pytest.raises(ValueError, match="source_counts is only read with rank: counts"):
        TransferConfig(**kw, rank="hybrid", source_counts="s.npy")
    TransferConfig(**kw, rank="counts", source_counts="s.npy")
    TransferConfig(source="s", mode="keep", output_dir="o")   # keep ranks nothing


def test_same_kind_report_and_character_warning(tmp_path):
    from stages.transfer import character_share, kind_report, token_kind

    assert [token_kind(t) for t in ["a", "##a", "the", "##ing", "[unused3]", None]] == \
        ["character", "character", "word", "subword", "reserved", "reserved"]
    tgt = ["[PAD]", "the", "of", "a"]
    src = ["[PAD]", "!", "och", "b"]
    ranked = np.array([1, 2, 3])
    rows = np.array([0, 1, 2, 3])   # the->!, of->och, a->b
    rep = kind_report(ranked, rows, tgt, src)
    assert rep["top100"] == {"pairs": 3, "same_kind": 2, "share": 2 / 3}   # of/och words, a/b characters
    assert character_share(np.array([1, 3, 2]), src, top=3) == 2 / 3
    # A BERT-style source vocabulary (alphabet before words) in hybrid mode: warned, in the log and the report.
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    src_vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + letters + ["och", "att"]
    hand_model(tmp_path / "src", src_vocab)
    tgt_vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "of", "t", "h"]
    hand_tokenizer(tmp_path / "tgt", tgt_vocab)
    np.save(tmp_path / "counts.npy", np.array([0, 0, 0, 0, 0, 9, 8, 2, 1]))
    lines = []
    transfer(TransferConfig(source=str(tmp_path / "src"), mode="frequency", output_dir=str(tmp_path / "out"),
                            rank="hybrid", target_tokenizer=str(tmp_path / "tgt"),
                            target_counts=str(tmp_path / "counts.npy")), log=lines.append)
    report = json.loads((tmp_path / "out" / "mapping_report.json").read_text())
    assert report["source_top100_character_share"] == 26 / 28
    assert "single characters" in report["warning"] and any("warning" in line for line in lines)
    # the, of (words) took a, b (characters); t, h took c, d: 2 of 4 pairs of the same kind
    assert report["same_kind"]["top100"]["same_kind"] == 2
