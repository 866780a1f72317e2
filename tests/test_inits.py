"""The embedding initialisations of stages/inits.py, row by row on hand-built models whose embedding row i holds
the value i (so a row's value names the source row it came from, and a mean of rows is the mean of their ids)."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from stages.common import StageError
from stages.transfer import TransferConfig, transfer
from tests.test_transfer import hand_model, hand_tokenizer, rows_of

SRC = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##do", "##ing", "do", "##s", "ing", "en", "the"]
#        0        1        2        3        4       5      6        7      8     9      10     11    12
TGT = ["[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "undo", "##ing", "doing", "##dos", "xyz", "ing", "the", "##en"]
#        0        1        2        3         4        5       6         7        8       9      10     11     12
ROLE = {0: 2, 1: 3, 2: 0, 3: 4, 4: 1}   # target special id -> source id of the same role


def _run(tmp_path, mode, seed=0, **kw):
    src = str(tmp_path / "src") if (tmp_path / "src").exists() else hand_model(tmp_path / "src", SRC)
    if not (tmp_path / "tgt").exists():
        hand_tokenizer(tmp_path / "tgt", TGT)
    out = tmp_path / f"out-{mode}-{seed}"
    res = transfer(TransferConfig(source=src, mode=mode, output_dir=str(out), target_tokenizer=str(tmp_path / "tgt"),
                                  seed=seed, **kw))
    emb, bias, _ = rows_of(str(out))
    import json
    return res, emb, bias, json.loads((out / "mapping_report.json").read_text())


def test_overlap_copies_identical_strings_and_roles(tmp_path):
    res, emb, bias, report = _run(tmp_path, "overlap")
    copied = {10: 10, 11: 12, 6: 7}          # "ing", "the", "##ing" (a "##" piece matches only a "##" piece)
    for tid, sid in {**copied, **ROLE}.items():
        assert emb[tid] == sid and bias[tid] == 1000 + sid
    # "##en" is not copied from "en": a continuation is another token than a word start
    for tid in (5, 7, 8, 9, 12):
        assert bias[tid] == 0 and not float(emb[tid]).is_integer()
    d = report["diagnostics"]
    assert d["rows"] == {"copied": 3, "composed": 0, "random": 5, "special": 5}
    assert d["identity_count"] == 3 and d["identity_rate"] == pytest.approx(3 / 8)
    assert res.identity_count == 3


def test_fvt_is_the_mean_of_the_source_pieces(tmp_path):
    res, emb, bias, report = _run(tmp_path, "fvt")
    expected = {5: (5 + 6) / 2,        # undo = un ##do
                6: 7,                  # ##ing, a continuation: its own "##ing" row
                7: (8 + 7) / 2,        # doing = do ##ing
                8: (6 + 9) / 2,        # ##dos = ##do ##s, cut as a continuation
                10: 10, 11: 12}        # ing, the: one piece each
    for tid, v in {**expected, **ROLE}.items():
        assert emb[tid] == pytest.approx(v) and bias[tid] == pytest.approx(1000 + v)
    assert bias[9] == 0 and bias[12] == 0   # xyz, ##en: the source spells them only with [UNK]
    assert report["diagnostics"]["rows"] == {"copied": 3, "composed": 3, "random": 2, "special": 5}


def test_random_normal_matches_the_source_statistics_and_the_seed(tmp_path):
    # a wide source: 400 rows with random values, so mean and sd per dimension are measurable
    from transformers import BertConfig, BertForMaskedLM

    vocab = SRC + [f"w{i}" for i in range(400)]
    hand_tokenizer(tmp_path / "src", vocab)
    m = BertForMaskedLM(BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=16, max_position_embeddings=32))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        m.get_input_embeddings().weight.copy_(torch.randn(len(vocab), 8, generator=g) * torch.arange(1, 9) + 5)
    m.save_pretrained(str(tmp_path / "src"))
    tgt = TGT + [f"t{i}" for i in range(3000)]
    hand_tokenizer(tmp_path / "tgt", tgt)
    outs = []
    for seed in (0, 0, 1):
        out = tmp_path / f"rn{len(outs)}"
        transfer(TransferConfig(source=str(tmp_path / "src"), mode="random-normal", output_dir=str(out),
                                target_tokenizer=str(tmp_path / "tgt"), seed=seed))
        outs.append(np.asarray(rows_of(str(out))[2].get_input_embeddings().weight.detach()))
    src = m.get_input_embeddings().weight.detach().numpy()
    assert np.array_equal(outs[0], outs[1]) and not np.allclose(outs[0], outs[2])
    # independent check of the distribution: per-dimension mean and sd of 3,013 draws (sd of the mean ~ sd/55)
    assert np.allclose(outs[0].mean(0), src.mean(0), atol=4 * src.std(0) / 55)
    assert np.allclose(outs[0].std(0), src.std(0, ddof=1), rtol=0.08)


# --- FOCUS and WECHSEL through their libraries on a tiny two-language world -----------------------------------

def _tiny_world(tmp_path):
    """Two languages with one lexicon: S words are E words respelled; a dictionary S<TAB>E; corpora; a source
    model with the S vocabulary (rows hold their ids) and an E tokenizer that shares a few strings with it."""
    rng = random.Random(0)
    e_words = ["dog", "cat", "runs", "sleeps", "big", "small", "the", "a", "house", "tree", "sees", "eats"]
    s_words = ["hund", "katt", "springer", "sover", "stor", "liten", "den", "en", "hus", "trad", "ser", "ater"]
    def corpus(words):
        lines = []
        for _ in range(3000):
            n = rng.randrange(4, 9)
            lines.append(" ".join(rng.choice(words) for _ in range(n)))
        return "\n".join(lines) + "\n"
    (tmp_path / "E.txt").write_text(corpus(e_words))
    (tmp_path / "S.txt").write_text(corpus(s_words))
    (tmp_path / "dict.txt").write_text("".join(f"{s}\t{e}\n" for s, e in zip(s_words, e_words)))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = sorted(set("".join(e_words + s_words)) - {"a"})   # "a" is a word of both vocabularies already
    src_vocab = specials + s_words + ["the", "a"] + letters + ["##" + c for c in letters]
    tgt_vocab = specials + e_words + letters + ["##" + c for c in letters]
    hand_model(tmp_path / "src", src_vocab)
    hand_tokenizer(tmp_path / "tgt", tgt_vocab)
    return src_vocab, tgt_vocab


def _vectors(tmp_path, name, corpus, unit, tokenizer=None):
    from stages.corpus import CorpusConfig
    from stages.vectors import VectorsConfig, train_vectors

    return train_vectors(VectorsConfig(corpus=CorpusConfig(files=[str(tmp_path / corpus)]), unit=unit,
                                       tokenizer=tokenizer, output_dir=str(tmp_path / name), dim=16, epochs=3,
                                       min_count=1), log=lambda m: None).path


def test_focus_through_deepfocus_copies_overlap_and_mixes_it(tmp_path):
    src_vocab, tgt_vocab = _tiny_world(tmp_path)
    vec = _vectors(tmp_path, "vec", "E.txt", "tokens", str(tmp_path / "tgt"))
    runs = [_run(tmp_path, "focus", focus_vectors=vec)[1:] for _ in range(2)]   # same vectors: same rows
    (emb, bias, report), (emb2, _, _) = runs
    assert np.array_equal(emb, emb2)
    overlap = {t: src_vocab.index(t) for t in tgt_vocab[5:] if t in src_vocab}   # "the", "a", the letters
    assert {"the", "a"} <= set(overlap)
    for t, sid in overlap.items():
        assert emb[tgt_vocab.index(t)] == sid and bias[tgt_vocab.index(t)] == 1000 + sid
    for tid, sid in {0: 0, 1: 1, 2: 2, 3: 3, 4: 4}.items():   # same specials order here: roles are identity
        assert emb[tid] == sid
    d = report["diagnostics"]["rows"]
    assert d["copied"] == len(overlap) and d["special"] == 5
    assert d["composed"] + d["random"] == len(tgt_vocab) - 5 - len(overlap)
    # a composed row is a convex combination of overlap rows: its value lies within their ids
    lo, hi = min(overlap.values()), max(overlap.values())
    composed = [tgt_vocab.index(w) for w in ("dog", "house", "eats")]
    assert all(lo - 1e-4 <= emb[i] <= hi + 1e-4 for i in composed)


def test_wechsel_through_the_library(tmp_path):
    src_vocab, tgt_vocab = _tiny_world(tmp_path)
    sv = _vectors(tmp_path, "sv", "S.txt", "words")
    ev = _vectors(tmp_path, "ev", "E.txt", "words")
    kw = dict(wechsel_dictionary=str(tmp_path / "dict.txt"), wechsel_source_vectors=sv, wechsel_target_vectors=ev)
    (_, emb, bias, report), (_, emb2, _, _) = _run(tmp_path, "wechsel", **kw), _run(tmp_path, "wechsel", **kw)
    assert np.array_equal(emb, emb2)
    ordinary = [i for i, t in enumerate(src_vocab) if i >= 5]
    for tid in range(5):   # specials by role, with their bias; every mixed row's bias is 0
        assert emb[tid] == tid and bias[tid] == 1000 + tid
    assert all(bias[tgt_vocab.index(w)] == 0 for w in ("dog", "house", "eats"))
    d = report["diagnostics"]["rows"]
    assert d["special"] == 5 and d["composed"] > 0
    composed = [tgt_vocab.index(w) for w in ("dog", "house", "eats")]
    assert all(min(ordinary) - 1e-4 <= emb[i] <= max(ordinary) + 1e-4 for i in composed)

    (tmp_path / "bad.txt").write_text("hund dog\nkatt\n")
    with pytest.raises(StageError, match=r"bad.txt:2: expected 'source word<TAB>target word'"):
        _run(tmp_path, "wechsel", **dict(kw, wechsel_dictionary=str(tmp_path / "bad.txt")))
    (tmp_path / "none.txt").write_text("hund\tperro\n")
    with pytest.raises(StageError, match="none of the 1 target words"):
        _run(tmp_path, "wechsel", **dict(kw, wechsel_dictionary=str(tmp_path / "none.txt")))
    with pytest.raises(StageError, match="fastText vectors 'missing.bin' are not a file"):
        _run(tmp_path, "wechsel", **dict(kw, wechsel_source_vectors="missing.bin"))
    # WECHSEL's published files list English first: given as is, the first column spells the target tokens
    pairs = [line.split("\t") for line in (tmp_path / "dict.txt").read_text().splitlines()]
    (tmp_path / "reversed.txt").write_text("".join(f"{e}\t{s}\n" for s, e in pairs))
    with pytest.raises(StageError, match=r"reversed.txt looks reversed: its first column spells \d+ .* Swap"):
        _run(tmp_path, "wechsel", **dict(kw, wechsel_dictionary=str(tmp_path / "reversed.txt")))


def test_focus_without_vectors_names_the_file(tmp_path):
    _tiny_world(tmp_path)
    with pytest.raises(StageError, match="focus needs fastText vectors of the target tokens"):
        _run(tmp_path, "focus", focus_vectors=str(tmp_path / "nope.bin"))


def test_nearest_cosines_against_a_hand_computation():
    from stages.inits import nearest_cosines

    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    rows = torch.tensor([[2.0, 0.0], [1.0, -1.0]])
    got = nearest_cosines(rows, emb, k=2)
    s = 2 ** -0.5
    assert np.allclose(got, [[1.0, (1.0 + s) / 2], [s, (s + 0.0) / 2]])


def test_movement_against_a_hand_computation():
    from stages.inits import movement

    w0 = {"bert.embeddings.word_embeddings.weight": torch.ones(3, 2),
          "bert.encoder.layer.0.attention.self.query.weight": torch.full((2, 2), 2.0),
          "bert.encoder.layer.0.output.dense.bias": torch.zeros(2),
          "bert.encoder.layer.1.output.dense.weight": torch.eye(2),
          "cls.predictions.bias": torch.zeros(3)}
    w1 = dict(w0)
    w1["bert.embeddings.word_embeddings.weight"] = torch.ones(3, 2) * 1.5        # moved by half of itself
    w1["bert.encoder.layer.0.output.dense.bias"] = torch.tensor([3.0, 4.0])     # |d| = 5; |w0| of layer 0 = 4
    w1["cls.predictions.bias"] = torch.ones(3) * 100                            # the head is not counted
    got = movement(w0, w1)
    assert got["embeddings"] == pytest.approx(0.5)
    assert got["layer0"] == pytest.approx(5 / 4) and got["layer1"] == 0
    assert got["body"] == pytest.approx(5 / np.sqrt(16 + 2))   # layer 0 and 1 together: |w0|^2 = 16 + 2
    assert set(got) == {"embeddings", "layer0", "layer1", "body"}
