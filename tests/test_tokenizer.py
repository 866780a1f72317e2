"""WordPiece tokenizer stage: reloadable folder, exact size, casing, rare letters, and the silent-failure guards."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from stages.common import StageError
from stages.corpus import CorpusConfig
from stages.tokenizer import SPECIAL_TOKENS, TokenizerConfig, learn_vocabulary, load_tokenizer, train_tokenizer
from tests.conftest import write_corpus

DATA = Path(__file__).parent / "data"


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
    train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(tmp_path / "c.txt")]),
                                    output_dir=str(tmp_path / "t"), vocab_size=100, min_frequency=2))
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


# --- the scalable learner equals the learner it replaced ---------------------------------------------------

def _reference_merge(a: str, b: str) -> str:
    return a + b[2:]


def _reference_learn_vocabulary(word_counts: dict[str, int], vocab_size: int, min_frequency: int,
                                limit_alphabet: int | None = None) -> list[str]:
    """The exact learner as it was before it was made to scale (commit 9d5c969), kept verbatim as the
    definition the fast one must match: same merges, same order. Re-counts every pair of every word a merge
    touches, holds words as lists of strings; benchmarks/tokenizer_learner.py times it ("old")."""
    import heapq
    from collections import Counter, defaultdict

    chars: Counter = Counter()
    for w, f in word_counts.items():
        for c in w:
            chars[c] += f
    if limit_alphabet is not None and len(chars) > limit_alphabet:
        kept = set(sorted(chars, key=lambda c: (-chars[c], c))[:limit_alphabet])
        word_counts = {w: f for w, f in word_counts.items() if set(w) <= kept}
    else:
        kept = set(chars)
    letters = sorted(kept)
    alphabet = letters + ["##" + c for c in letters]
    if len(SPECIAL_TOKENS) + len(alphabet) > vocab_size:
        raise StageError(f"vocab_size {vocab_size} cannot hold the alphabet: {len(letters)} characters, each also "
                         f"as '##' piece, plus {len(SPECIAL_TOKENS)} special tokens make "
                         f"{len(SPECIAL_TOKENS) + len(alphabet)}. Lower limit_alphabet or raise vocab_size.")
    words = sorted(word_counts)  # a fixed order; counts do the rest
    symbols = [[w[0], *("##" + c for c in w[1:])] for w in words]
    freq = [word_counts[w] for w in words]
    vocab = [*SPECIAL_TOKENS, *alphabet]
    seen = set(vocab)
    pairs: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, syms in enumerate(symbols):
        for p in zip(syms, syms[1:]):
            pairs[p] += freq[i]
            where[p].add(i)
    heap = [(-c, p) for p, c in pairs.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        neg, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -neg:
            continue  # a stale entry: the count changed since it was pushed
        if -neg < max(1, min_frequency):
            break
        new = _reference_merge(*pair)
        if new not in seen:
            vocab.append(new)
            seen.add(new)
        touched: set[tuple[str, str]] = set()
        for i in sorted(where.pop(pair, ())):
            syms, f = symbols[i], freq[i]
            for p in zip(syms, syms[1:]):  # remove this word's pairs, re-add them after merging
                pairs[p] -= f
                touched.add(p)
            out, j = [], 0
            while j < len(syms):
                if j + 1 < len(syms) and (syms[j], syms[j + 1]) == pair:
                    out.append(new)
                    j += 2
                else:
                    out.append(syms[j])
                    j += 1
            symbols[i] = out
            for p in zip(out, out[1:]):
                pairs[p] += f
                where[p].add(i)
                touched.add(p)
        pairs.pop(pair, None)
        for p in touched:
            c = pairs.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                pairs.pop(p, None)
    return vocab[:vocab_size]


def _bert_word_counts(path, lowercase: bool) -> Counter:
    """Words of a text file as train_tokenizer counts them (BERT's normalizer and pre-tokenizer)."""
    from stages.tokenizer import _build_trainer_tokenizer

    pipeline, _ = _build_trainer_tokenizer(lowercase)
    counts: Counter = Counter()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        counts.update(w for w, _ in pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(line)))
    return counts


def _zipf_types(n: int, seed: int) -> dict[str, int]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("tokenizer_learner", DATA.parent.parent / "benchmarks" /
                                                  "tokenizer_learner.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.zipf_types(n, seed)


@pytest.fixture(scope="module")
def learner_corpora(tmp_path_factory, tiny_corpus) -> dict[str, dict[str, int]]:
    import random

    tmp = tmp_path_factory.mktemp("learner")
    rng = random.Random(0)
    return {
        "english-cased": _bert_word_counts(DATA / "english.txt", lowercase=False),
        "english-uncased": _bert_word_counts(DATA / "english.txt", lowercase=True),
        "conftest-tiny": _bert_word_counts(tiny_corpus, lowercase=False),
        "syllables": _bert_word_counts(_syllable_corpus(tmp / "s.txt", n_lines=1500), lowercase=False),
        "zipf": _zipf_types(3000, seed=1),  # counts floor(3000 / rank): long runs of tied counts
        # three letters, counts 1-3: nearly every pair ties with others, and runs like "aaaa" and "abab" merge
        # by the greedy left-to-right rule
        "ties": {"".join(rng.choice("abcab") for _ in range(rng.randint(1, 9))): rng.choice([1, 2, 3])
                 for _ in range(3000)},
        # runs of one letter, alternations, a word counted 0 times (its letters still count), and "[UNK]",
        # whose last merge spells a special token (merged, not listed twice)
        "edges": {"aaaa": 3, "aaaaa": 2, "abab": 5, "ababa": 4, "xaaax": 2, "aa": 7, "a": 9, "zq": 0, "[UNK]": 6},
    }


@pytest.mark.parametrize("vocab_size, min_frequency, limit_alphabet", [
    (300, 1, None), (1000, 2, 1000), (32000, 2, 20), (5000, 3, 5)])
@pytest.mark.parametrize("name", ["english-cased", "english-uncased", "conftest-tiny", "syllables", "zipf", "ties",
                                  "edges"])
def test_fast_learner_learns_exactly_what_the_reference_learns(learner_corpora, name, vocab_size, min_frequency,
                                                              limit_alphabet):
    counts = learner_corpora[name]
    expected = _reference_learn_vocabulary(counts, vocab_size, min_frequency, limit_alphabet)
    assert learn_vocabulary(dict(counts), vocab_size, min_frequency, limit_alphabet) == expected


def test_fast_learner_reaches_the_full_vocabulary_on_a_zipf_table():
    """A table large enough for 1,750 tokens (the parametrized cases above mostly run out of pairs first)."""
    counts = _zipf_types(10000, seed=2)
    expected = _reference_learn_vocabulary(counts, 1750, 2, 1000)
    assert len(expected) == 1750
    assert learn_vocabulary(counts, 1750, 2, 1000) == expected


def test_fast_learner_is_identical_across_hash_seeds():
    """String hashing differs per process (PYTHONHASHSEED); the vocabulary must not."""
    import subprocess
    import sys

    code = ("import hashlib, sys; sys.path.insert(0, 'tests'); from test_tokenizer import _zipf_types; "
            "from stages.tokenizer import learn_vocabulary; "
            "v = learn_vocabulary(_zipf_types(5000, seed=3), 1500, 2, 1000); "
            "print(len(v), hashlib.sha256('\\n'.join(v).encode()).hexdigest())")
    root = DATA.parent.parent
    outs = {subprocess.run([sys.executable, "-c", code], cwd=root, env=dict(os.environ, PYTHONHASHSEED=seed),
                           check=True, capture_output=True, text=True).stdout for seed in ("0", "4242")}
    assert len(outs) == 1 and outs.pop().startswith("1500 ")


def test_count_words_batched_and_in_processes_equals_document_by_document(tmp_path):
    """Batches join documents with newlines; a pool of processes adds up their Counters in batch order."""
    from stages.tokenizer import _build_trainer_tokenizer, count_words

    docs = [d for d in (DATA / "english.txt").read_text(encoding="utf-8").splitlines() if d.strip()]
    docs += ["Café naïve \u0301x", "中文 and 日本語", "ctrl\x00char\x07s", "tab\tand\u00a0nbsp", "can't..."]
    for lowercase in (False, True):
        pipeline, _ = _build_trainer_tokenizer(lowercase)
        one_by_one: Counter = Counter()
        for d in docs:
            one_by_one.update(w for w, _ in
                              pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(d)))
        batched = count_words(iter(docs), lowercase, batch_chars=500)
        assert batched == one_by_one
    pooled = count_words(iter(docs), True, workers=2, batch_chars=500)
    assert pooled == batched and list(pooled) == list(batched)  # batch order kept: the same in every run
    assert count_words(iter([]), False) == Counter()


def _rust_words(text: str, lowercase: bool) -> Counter:
    from stages.tokenizer import _build_trainer_tokenizer
    pipeline, _ = _build_trainer_tokenizer(lowercase)
    return Counter(w for w, _ in pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(text)))


@pytest.mark.parametrize("lowercase", [False, True])
def test_fast_counting_path_equals_the_rust_pipeline_on_every_character(lowercase):
    """`_count_batch` cuts ASCII pieces with a regex and sends the rest to the Rust pipeline. Checked against
    the Rust pipeline alone: every ordered pair of ASCII characters between letters (controls, whitespace,
    punctuation, digits, case), and every code point of the Basic Multilingual Plane plus a sample of the
    others, each between an ASCII word and a non-ASCII one, so a character Python splits on but BERT deletes
    (or the reverse) would join or split words differently."""
    from stages.tokenizer import _count_batch, _init_count_worker

    _init_count_worker(lowercase)
    ascii_text = " ".join(f"Ab{chr(a)}{chr(b)}cD" for a in range(128) for b in range(128))
    assert _count_batch(ascii_text) == _rust_words(ascii_text, lowercase)
    points = [c for c in range(0x80, 0x10000) if not 0xD800 <= c <= 0xDFFF] + list(range(0x10000, 0x110000, 97))
    mixed = " ".join(f"Xy{chr(c)}z.é{chr(c)}Q" for c in points) + "\x1cA\x0bB\x85C\u00a0D\u3000E\u200bF"
    assert _count_batch(mixed) == _rust_words(mixed, lowercase)


def test_learned_vocabulary_does_not_depend_on_the_order_of_the_types():
    """count_words's first-seen order differs from the Rust pipeline's (ASCII words are counted first): the
    learner must read the counts only."""
    from stages.tokenizer import count_words, learn_vocabulary

    counts = count_words((DATA / "english.txt").read_text(encoding="utf-8").splitlines(), False)
    shuffled = dict(sorted(counts.items(), key=lambda kv: hash(kv[0][::-1]) % 1000))
    assert list(shuffled) != list(counts)
    assert learn_vocabulary(shuffled, 400, 2) == learn_vocabulary(dict(counts), 400, 2)
