"""WordPiece tokenizer stage: reloadable folder, exact size, casing, rare letters, and the silent-failure guards."""
from __future__ import annotations

import pytest

from stages.common import StageError
from stages.corpus import CorpusConfig
from stages.tokenizer import SPECIAL_TOKENS, TokenizerConfig, learn_vocabulary, load_tokenizer, train_tokenizer
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
    with pytest.raises(ValueError, match="vocab_size\n  Input should be greater than or equal to 100"):
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


def test_learn_vocabulary_on_the_classic_bpe_example():
    # Worked by hand: pair counts (##e,##s)=9 and (##s,##t)=9 tie -> the smaller pair string wins: "##es";
    # then (##es,##t)=9 -> "##est"; then (##o,##w)=7 ties (l,##o)=7 and "##o" < "l" -> "##ow"; then "low".
    counts = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
    letters = sorted(set("lowernstid"))
    vocab = learn_vocabulary(counts, vocab_size=5 + 2 * len(letters) + 4, min_frequency=1)
    assert vocab[:5] == SPECIAL_TOKENS
    assert vocab[5:5 + 2 * len(letters)] == letters + ["##" + c for c in letters]
    assert vocab[-4:] == ["##es", "##est", "##ow", "low"]
    # min_frequency stops merging: only pairs seen at least 8 times qualify
    assert learn_vocabulary(counts, vocab_size=100, min_frequency=8)[-2:] == ["##es", "##est"]


def test_limit_alphabet_keeps_the_most_frequent_characters():
    # character counts weighted by word counts: b 7, a 6, c 1, é 1 (c wins the tie: "c" < "é")
    counts = {"ab": 5, "abc": 1, "bé": 1}
    full = learn_vocabulary(counts, vocab_size=50, min_frequency=1)
    assert full[5:13] == ["a", "b", "c", "é", "##a", "##b", "##c", "##é"]
    # 3 letters: "bé" leaves merging; "ab" (count 6) merges first, then ("ab", "##c") in "abc"
    limited = learn_vocabulary(counts, vocab_size=50, min_frequency=1, limit_alphabet=3)
    assert limited == SPECIAL_TOKENS + ["a", "b", "c", "##a", "##b", "##c", "ab", "abc"]
    # an alphabet that does not fit the vocabulary is an error, not a silently bigger vocabulary
    with pytest.raises(StageError, match="vocab_size 12 cannot hold the alphabet: 4 characters"):
        learn_vocabulary(counts, vocab_size=12, min_frequency=1)
    assert learn_vocabulary(counts, vocab_size=12, min_frequency=1, limit_alphabet=3) == limited[:12]


def _syllable_corpus(path, n_lines=3000, seed=0):
    """Made-up words from English-looking syllables with Zipfian frequencies: many pairs compete to merge."""
    import random

    rng = random.Random(seed)
    syl = ["th", "e", "an", "in", "er", "on", "re", "at", "st", "en", "ing", "ion", "al", "ou", "ed", "is", "ar"]
    lexicon = sorted({"".join(rng.choice(syl) for _ in range(rng.randint(1, 4))) for _ in range(3000)})
    rng.shuffle(lexicon)
    weights = [1 / (i + 3) for i in range(len(lexicon))]
    with open(path, "w") as f:
        f.writelines(" ".join(rng.choices(lexicon, weights, k=rng.randint(5, 15))) + "\n" for _ in range(n_lines))
    return path


def test_rust_trainer_learns_nearly_the_same_vocabulary(tmp_path):
    """The two trainers run the same algorithm and differ in tie-breaking only: most tokens agree (a learner
    that merged by the wrong counts would share little more than the alphabet, a tenth of these; here 98%)."""
    corpus = CorpusConfig(files=[str(_syllable_corpus(tmp_path / "c.txt"))])
    vocabs = {}
    for trainer in ("exact", "tokenizers"):
        res = train_tokenizer(TokenizerConfig(corpus=corpus, output_dir=str(tmp_path / trainer), vocab_size=300,
                                              trainer=trainer))
        tok = load_tokenizer(str(tmp_path / trainer), expected_vocab_size=300)
        assert res.unk_rate == 0.0 and tok.convert_ids_to_tokens(list(range(5))) == SPECIAL_TOKENS
        vocabs[trainer] = set(tok.get_vocab())
    assert len(vocabs["exact"] & vocabs["tokenizers"]) / 300 > 0.85
    with pytest.raises(ValueError, match="trainer\n  Input should be 'exact' or 'tokenizers'"):
        train_tokenizer(TokenizerConfig(corpus=corpus, output_dir=str(tmp_path / "x"), trainer="bpe"))


def test_training_is_identical_across_processes(tmp_path, tiny_corpus):
    """The Rust trainer breaks ties by per-process hash seeds; ours must give the same bytes every time."""
    import subprocess
    import sys

    code = ("import sys; from stages.tokenizer import TokenizerConfig, train_tokenizer; "
            "from stages.corpus import CorpusConfig; "
            "train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[sys.argv[1]]), output_dir=sys.argv[2], "
            "vocab_size=150, min_frequency=1))")
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", code, str(tiny_corpus), str(tmp_path / name)], check=True)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
