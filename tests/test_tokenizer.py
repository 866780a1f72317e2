"""WordPiece tokenizer stage: reloadable folder, exact size, casing, rare letters, and the silent-failure guards."""
from __future__ import annotations

import pytest

from stages.common import StageError
from stages.corpus import CorpusConfig
from stages.tokenizer import load_tokenizer, train_tokenizer, TokenizerConfig
from tests.conftest import write_corpus


def test_trained_folder_reloads_with_exact_size_and_bert_framing(tmp_path, tiny_corpus):
    from transformers import AutoTokenizer

    res = train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(tiny_corpus)]), output_dir=str(tmp_path / "t"),
                                          vocab_size=150, min_frequency=1))
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "t"))
    assert len(tok) == res.vocab_size == 150
    assert tok.convert_ids_to_tokens(list(range(5))) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    enc = tok("The dog runs", "a cat")
    toks = tok.convert_ids_to_tokens(enc["input_ids"])
    assert toks[0] == "[CLS]" and toks.count("[SEP]") == 2 and toks[-1] == "[SEP]"
    assert enc["token_type_ids"][-1] == 1 and enc["token_type_ids"][0] == 0
    assert "The" in toks or "T" in toks  # cased: capitals survive
    assert res.unk_rate == 0.0


def test_uncased_lowercases_and_strips_accents(tmp_path):
    corpus = write_corpus(tmp_path / "c.txt", 500, seed=3, words=["Café", "naïve", "Über", "école", "déjà", "vu"])
    train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(corpus)]), output_dir=str(tmp_path / "t"),
                                    vocab_size=120, lowercase=True, min_frequency=1))
    tok = load_tokenizer(str(tmp_path / "t"))
    assert tok.tokenize("CAFÉ Über") == tok.tokenize("cafe uber")


def test_rare_letters_never_become_unk(tmp_path):
    # 'q' and 'x' occur only inside rare words: the trainer alone may give them no '##' piece.
    lines = ["ba da ga na ma la"] * 2000 + ["aqxa baxq"] * 2
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(tmp_path / "c.txt")]), output_dir=str(tmp_path / "t"),
                                    vocab_size=100, min_frequency=2))
    tok = load_tokenizer(str(tmp_path / "t"))
    assert tok.unk_token not in tok.tokenize("qaxq xaq")
    assert len(tok) <= 100  # a corpus this small runs out of merges before the requested size


def test_guards(tmp_path, tiny_corpus):
    with pytest.raises(StageError, match="too small"):
        train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(tiny_corpus)]), output_dir=str(tmp_path / "a"),
                                        vocab_size=20))
    with pytest.raises(StageError, match="does not exist"):
        train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(tmp_path / "missing.txt")]),
                                        output_dir=str(tmp_path / "b")))
    # A folder with an empty vocab.txt loads in transformers as a 5-token tokenizer: refused, with the fix.
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "vocab.txt").write_text("")
    (tmp_path / "broken" / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    with pytest.raises(StageError, match="malformed|cannot load"):
        load_tokenizer(str(tmp_path / "broken"))
    with pytest.raises(StageError, match="expected 999"):
        train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(tiny_corpus)]), output_dir=str(tmp_path / "c"),
                                        vocab_size=120, min_frequency=1))
        load_tokenizer(str(tmp_path / "c"), expected_vocab_size=999)
