"""Stage 1: train a BERT WordPiece vocabulary on the target corpus.

The result is a folder that `AutoTokenizer.from_pretrained` loads. The vocabulary is learned the way the
`tokenizers` WordPiece trainer learns it (start from characters, word-internal ones with "##", merge the
most frequent adjacent pair until the vocabulary is full), but ties are broken by the pair's strings
instead of by hash-map order, so the same corpus gives the same vocabulary in every process. (The Rust
trainer orders "##" pieces and tied merges by per-process hash seeds: three trainings of the demo corpus
gave three vocabularies.) Ids are in merge order, i.e. roughly by frequency, as in BERT's own files.

The learner is pure Python and holds every word type in memory: about 52 s and 1 GB for 400K word types
with a 32K vocabulary, so English Wikipedia's millions of types take it tens of minutes and tens of GB.
`trainer="tokenizers"` runs the Rust trainer instead (multi-threaded, compact), at the price of tied merges
that depend on the process: the vocabulary is trained once per sweep and every dependent node reuses it.
"""
from __future__ import annotations

import heapq
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from stages.common import Number, StageConfig, StageError, resolve_pretrained, setting, write_json
from stages.corpus import CorpusConfig, iter_documents

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HELD_OUT_EVERY = 100  # every 100th document is kept out of training to measure the [UNK] rate honestly
MAX_HELD_OUT = 10_000


class TokenizerSettings(StageConfig):
    """How an English (or built source's) WordPiece vocabulary is learned: the sweep's `target` section."""
    vocab_size: int = setting(32000, "tokens in the vocabulary, specials included", ge=100)
    min_frequency: int = setting(2, "a merge must occur this often", ge=1)
    limit_alphabet: int | None = setting(1000, "most frequent characters kept as letters (the tokenizers BERT "
                                               "trainer's default; Wikipedia's rare ones would fill the vocabulary); "
                                               "null: every character", ge=1)
    trainer: Literal["exact", "tokenizers"] = setting(
        "exact", "exact: this module's learner, the same vocabulary in every process; tokenizers: the Rust "
                 "trainer, for Wikipedia-sized corpora")
    max_unk_rate: Number = setting(0.01, "fail when held-out text is more [UNK] than this", ge=0, le=1)


class TokenizerConfig(TokenizerSettings):
    corpus: CorpusConfig = setting(doc="the text the vocabulary is learned on")
    output_dir: str = setting(doc="where the tokenizer folder is written")
    lowercase: bool = setting(False, "casing follows the source model: cased except AraBERT")


@dataclass(frozen=True)
class TokenizerResult:
    output_dir: str
    vocab_size: int
    lowercase: bool
    documents: int
    unk_rate: float
    seconds: float


def load_tokenizer(path: str, expected_vocab_size: int | None = None):
    """Load a tokenizer folder or hub id, refusing the silent failure modes.

    transformers builds a 5-token vocabulary (everything [UNK]) from some malformed folders instead of
    raising, so the size is checked here, once, for every stage.
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve_pretrained(path))
    except OSError as e:
        raise StageError(f"cannot load a tokenizer from {path!r}: {e}. Give a hub id or a folder written "
                         "by save_pretrained (tokenizer.json or vocab.txt + tokenizer_config.json).") from e
    if not tok.is_fast:
        raise StageError(f"tokenizer {path!r} has no fast (Rust) version; offsets and vocabulary surgery need one")
    n = len(tok)
    if n <= len(SPECIAL_TOKENS) + 1:
        raise StageError(f"tokenizer {path!r} loaded with only {n} tokens: the folder is malformed "
                         "(e.g. an empty or unreadable vocab.txt). Re-create it with save_pretrained.")
    if expected_vocab_size is not None and n != expected_vocab_size:
        raise StageError(f"tokenizer {path!r} has {n} tokens, expected {expected_vocab_size}")
    return tok


def _build_trainer_tokenizer(lowercase: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]", max_input_chars_per_word=100))
    # BERT's own normalizer: uncased models also strip accents, cased ones keep them.
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=lowercase, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok, processors


def _merge(a: str, b: str) -> str:
    return a + b[2:]  # "un" + "##ion" -> "union", "##io" + "##n" -> "##ion"


def learn_vocabulary(word_counts: dict[str, int], vocab_size: int, min_frequency: int,
                     limit_alphabet: int | None = None) -> list[str]:
    """Special tokens, every letter (plain and "##"), then merged pieces in merge order.

    Greedy pair merging over word types: the pair with the highest count (occurrences weighted by the
    type's count, as the tokenizers WordPiece trainer counts them; no likelihood score) merges next, ties
    go to the lexicographically smallest pair of strings, so the result depends on the counts alone. With
    `limit_alphabet`, only the most frequent characters (occurrences weighted by word count; ties by
    character) become letters, and words with any other character are left out of merging: WordPiece turns
    such a word into [UNK] whatever its pieces. Wikipedia has tens of thousands of distinct characters (CJK,
    symbols), which with their "##" forms would otherwise fill a 32K vocabulary before the first merge.

    How it scales (benchmarks/tokenizer_learner.py): a word is a string with one character per symbol id, so
    finding and merging a pair in it are `str.find` and `str.replace` in C (replace merges left to right
    without overlap, as the greedy scan of a word does). A merge visits only the words that hold the pair
    (an index pair -> type ids, appended to, never pruned: a visit skips a word that lost the pair) and
    changes only the pairs around each merge site. The heap holds, for every pair, an entry whose count is
    at least the pair's count: a count that rises pushes an entry, one that falls pushes nothing, and an
    entry found above the current count when it is popped is pushed again with the current count. So the
    top entry whose count is current is the best pair, and the heap stays near the number of pairs.
    """
    types = list(word_counts)
    freq = np.fromiter(word_counts.values(), dtype=np.int64, count=len(types))
    letters, rank, lens, starts = _alphabet(types, freq, limit_alphabet)
    del types
    n_letters = len(letters)
    alphabet = letters + ["##" + c for c in letters]
    if len(SPECIAL_TOKENS) + len(alphabet) > vocab_size:
        raise StageError(f"vocab_size {vocab_size} cannot hold the alphabet: {n_letters} characters, each also "
                         f"as '##' piece, plus {len(SPECIAL_TOKENS)} special tokens make "
                         f"{len(SPECIAL_TOKENS) + len(alphabet)}. Lower limit_alphabet or raise vocab_size.")
    words, freq, sym, lens = _symbol_words(rank, lens, starts, freq, n_letters)
    count, where = _pair_index(sym, lens, freq, 2 * n_letters)
    del sym, lens
    freq = freq.tolist()  # Python ints: the merge loop reads them one at a time
    # symbol id -> string; the id is also the symbol's character in `words` (chr(id))
    names = list(alphabet)
    ids = {s: i for i, s in enumerate(names)}
    floor = max(1, min_frequency)
    # A pair under min_frequency is in the heap only once its count reaches it: a Zipf tail is mostly such pairs.
    heap = [(-c, names[ord(p[0])], names[ord(p[1])], p) for p, c in count.items() if c >= floor]
    heapq.heapify(heap)
    vocab = [*SPECIAL_TOKENS, *alphabet]
    seen = set(vocab)
    heappop, heappush = heapq.heappop, heapq.heappush
    while len(vocab) < vocab_size and heap:
        neg, a, b, pair = heappop(heap)
        c = count.get(pair, 0)
        if c != -neg:
            if floor <= c < -neg:  # the count fell since the push: the pair competes again at its current count
                heappush(heap, (-c, a, b, pair))
            continue  # gone, under min_frequency, or below the count of another entry of the same pair
        new = _merge(a, b)
        if new not in seen:  # two pairs can spell the same piece ("a"+"##bc", "ab"+"##c"): listed once
            vocab.append(new)
            seen.add(new)
        m = ids.get(new)
        if m is None:
            m = ids[new] = len(names)
            names.append(new)
        delta = _merge_pair(pair, chr(m), where.pop(pair), words, freq, where)
        del count[pair]  # every word that held it was visited: none holds it now
        for p, d in delta.items():
            c = count.get(p, 0) + d
            if c > 0:
                count[p] = c
                if d > 0 and c >= floor:
                    heappush(heap, (-c, names[ord(p[0])], names[ord(p[1])], p))
            else:  # no word holds the pair any more: its index is all stale entries
                count.pop(p, None)
                where.pop(p, None)
    return vocab[:vocab_size]


def _merge_pair(pair: str, new: str, holders: int | array, words: list[str], freq: list[int],
                where: dict[str, int | array]) -> dict[str, int]:
    """Merge `pair` (two symbol characters) into the symbol `new` in every word of `holders`, add each word
    to the index of the pairs it gains, and return how much each pair's count changes.

    Only the pairs around a merge site change: at "x a b y" -> "x N y", (x, a) and (b, y) are lost and
    (x, N) and (N, y) gained, by the word's count each; (a, b) itself is dropped by the caller. Two sites
    side by side ("a b a b" -> "N N") lose the pair between them, (b, a), once and gain (N, N) once. The
    word loop only notes each site's neighbours (word ids by neighbour symbol); counts and index are
    updated once per neighbour symbol afterwards, which keeps the per-word work to a few C calls."""
    a, b = pair
    lefts: dict[str, list[int]] = {}  # left neighbour x -> a word id per site: lose (x, a), gain (x, N)
    rights: dict[str, list[int]] = {}  # right neighbour y -> a word id per site: lose (b, y), gain (N, y)
    between: list[int] = []  # a word id per two adjacent sites: lose (b, a), gain (N, N)
    # a word enters the index once per gained pair, perhaps more than once: visit it once
    for w in (holders,) if holders.__class__ is int else set(holders):
        s = words[w]
        i = s.find(pair)
        if i < 0:
            continue  # a stale index entry: an earlier merge took the pair from this word
        n, prev_end = len(s), -2
        while True:
            if i > 0 and prev_end != i - 1:  # (right after the previous site, `between` has it)
                ws = lefts.get(s[i - 1])
                if ws is None:
                    lefts[s[i - 1]] = [w]
                else:
                    ws.append(w)
            j = s.find(pair, i + 2)
            if j == i + 2:
                between.append(w)
            elif i + 2 < n:
                ws = rights.get(s[i + 2])
                if ws is None:
                    rights[s[i + 2]] = [w]
                else:
                    ws.append(w)
            if j < 0:
                break
            prev_end, i = i + 1, j
        words[w] = s.replace(pair, new)
    delta: dict[str, int] = {}
    for lost, gained, ws in [*((x + a, x + new, ws) for x, ws in lefts.items()),
                             *((b + y, new + y, ws) for y, ws in rights.items()),
                             *([(b + a, new + new, between)] if between else [])]:
        f = sum(map(freq.__getitem__, ws))
        delta[lost] = delta.get(lost, 0) - f
        delta[gained] = delta.get(gained, 0) + f
        _index(where, gained, ws)
    return delta


def _index(where: dict[str, int | array], pair: str, words: list[int]) -> None:
    """Add words to a pair's index. Most pairs of a large vocabulary are held by one word (three in four at
    1M types): that word's id alone, not an array, saves 56 bytes a pair."""
    ids = where.get(pair)
    if ids is None:
        where[pair] = words[0] if len(words) == 1 else array("i", words)
    elif ids.__class__ is int:
        where[pair] = array("i", [ids, *words])
    else:
        ids.extend(words)


def _alphabet(types: list[str], freq: np.ndarray, limit_alphabet: int | None):
    """The letters (sorted), and for the joined text of all types each character's letter rank (-1: left out by
    `limit_alphabet`), with the types' lengths and start offsets.

    numpy counts the characters over the code points of the joined text, in C rather than a Python loop over
    every character of every type."""
    lens = np.fromiter(map(len, types), dtype=np.int64, count=len(types))
    starts = np.zeros(len(types), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    codes = np.frombuffer("".join(types).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    size = int(codes.max()) + 1 if len(codes) else 1
    weighted = np.zeros(size, dtype=np.int64)
    np.add.at(weighted, codes, np.repeat(freq, lens))  # int64 sums: exact, unlike bincount's float weights
    present = np.flatnonzero(np.bincount(codes, minlength=size))  # a word counted 0 times still has letters
    if limit_alphabet is not None and len(present) > limit_alphabet:
        best = np.lexsort((present, -weighted[present]))[:limit_alphabet]  # by count, then by character
        present = np.sort(present[best])
    rank = np.full(size, -1, dtype=np.int32)
    rank[present] = np.arange(len(present), dtype=np.int32)
    return [chr(c) for c in present.tolist()], rank[codes], lens, starts


def _symbol_words(rank: np.ndarray, lens: np.ndarray, starts: np.ndarray, freq: np.ndarray, n_letters: int):
    """The words that take part in merging, each as a string of symbol ids (chr(id)): the first character is
    its letter (id = rank), the others their "##" piece (id = n_letters + rank). A Python string of a few
    symbols costs about 80 bytes, a tenth of a list of strings. Words with a letter outside the alphabet,
    single characters (no pair) and words counted 0 times (they add nothing) are left out."""
    ends = starts + lens
    bad = np.r_[0, np.cumsum(rank < 0)]
    keep = (bad[ends] == bad[starts]) & (lens >= 2) & (freq > 0)
    sym = rank + n_letters
    sym[starts[lens > 0]] -= n_letters
    sym = sym[np.repeat(keep, lens)]
    text = sym.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
    lens = lens[keep]
    bounds = np.r_[0, np.cumsum(lens)].tolist()
    return [text[i:j] for i, j in zip(bounds, bounds[1:])], freq[keep], sym, lens


def _pair_index(sym: np.ndarray, lens: np.ndarray, freq: np.ndarray,
                n_symbols: int) -> tuple[dict[str, int], dict[str, int | array]]:
    """Every adjacent pair's count (weighted by the word's count) and the words that hold it, keyed by the
    pair's two symbol characters. `sym` holds the words' symbol ids end to end, `lens` their lengths.

    numpy does it in one stable sort of the pairs as integers (a * n_symbols + b): a pair's words come out in
    increasing order, each listed once. The index holds an array of int32 word ids per pair, 4 bytes an
    entry (or the one word's id, see `_index`)."""
    if len(sym) == 0:
        return {}, {}
    inner = np.ones(len(sym), dtype=bool)
    inner[np.cumsum(lens) - 1] = False  # the last symbol of a word starts no pair
    inner = inner[:-1]
    wide = np.int64 if n_symbols * n_symbols >= 2 ** 31 else np.int32
    keys = sym[:-1][inner].astype(wide) * n_symbols + sym[1:][inner]
    word_of = np.repeat(np.arange(len(lens), dtype=np.int32), lens)[:-1][inner]
    del inner
    order = np.argsort(keys, kind="stable")
    keys, word_of = keys[order], word_of[order]
    del order
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    counts = np.add.reduceat(freq[word_of], starts).tolist()
    once = np.r_[True, (keys[1:] != keys[:-1]) | (word_of[1:] != word_of[:-1])]  # a word holding a pair twice
    keys, word_of = keys[once], word_of[once]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]).tolist() + [len(keys)]
    count, where = {}, {}
    for k, c, i, j in zip(keys[starts[:-1]].tolist(), counts, starts, starts[1:]):
        a, b = divmod(k, n_symbols)
        p = chr(a) + chr(b)
        count[p] = c
        if j == i + 1:
            where[p] = int(word_of[i])
        else:
            where[p] = ids = array("i")
            ids.frombytes(word_of[i:j].tobytes())
    return count, where


def _train_with_tokenizers(pipeline, documents, cfg: TokenizerConfig) -> list[str]:
    """The Rust WordPiece trainer of `tokenizers`: multi-threaded and memory-lean, for Wikipedia-sized corpora;
    its tied merges follow per-process hash order, so two trainings may differ in a few tokens."""
    from tokenizers import trainers

    trainer = trainers.WordPieceTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                        special_tokens=SPECIAL_TOKENS, limit_alphabet=cfg.limit_alphabet,
                                        continuing_subword_prefix="##", show_progress=False)
    pipeline.train_from_iterator(documents, trainer)
    vocab = [t for t, _ in sorted(pipeline.get_vocab().items(), key=lambda kv: kv[1])]
    if len(vocab) > cfg.vocab_size:   # the trainer keeps the whole alphabet even when it does not fit
        raise StageError(f"vocab_size {cfg.vocab_size} cannot hold the alphabet of this corpus ({len(vocab)} tokens "
                         "before any merge). Lower limit_alphabet or raise vocab_size.")
    return vocab


def _tokenizer_from_vocab(vocab: list[str], lowercase: bool):
    from tokenizers import models, processors

    tok, _ = _build_trainer_tokenizer(lowercase)
    tok.model = models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100)
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def train_tokenizer(cfg: TokenizerConfig) -> TokenizerResult:
    from transformers import BertTokenizerFast

    t0 = time.time()
    # One streaming pass (a Wikipedia dump never sits in memory); every 100th document is held out to
    # measure the [UNK] rate.
    pipeline, _ = _build_trainer_tokenizer(cfg.lowercase)
    held_out: list[str] = []
    first, n_docs = None, 0

    def training_documents():
        nonlocal first, n_docs
        for i, d in enumerate(iter_documents(cfg.corpus, "tokenizer corpus")):
            n_docs += 1
            first = d if first is None else first
            if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1:
                if len(held_out) < MAX_HELD_OUT:
                    held_out.append(d)
                continue
            yield d

    if cfg.trainer == "exact":
        # words as BERT's own normalizer and pre-tokenizer cut them, counted
        word_counts: Counter = Counter()
        for d in training_documents():
            words = pipeline.pre_tokenizer.pre_tokenize_str(pipeline.normalizer.normalize_str(d))
            word_counts.update(w for w, _ in words)
        vocab = learn_vocabulary(word_counts, cfg.vocab_size, cfg.min_frequency, cfg.limit_alphabet)
    else:
        vocab = _train_with_tokenizers(pipeline, training_documents(), cfg)
    held_out = held_out or [first]  # under 100 documents: check the first one (it was also trained on)
    tok = _tokenizer_from_vocab(vocab, cfg.lowercase)

    fast = BertTokenizerFast(tokenizer_object=tok, do_lower_case=cfg.lowercase, unk_token="[UNK]",
                             sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                             model_max_length=512)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))

    reloaded = load_tokenizer(str(out), expected_vocab_size=tok.get_vocab_size())
    unk_id = reloaded.unk_token_id
    ids = reloaded(held_out, add_special_tokens=False)["input_ids"]
    n_tok = sum(len(x) for x in ids)
    n_unk = sum(x.count(unk_id) for x in ids)
    unk_rate = n_unk / max(1, n_tok)
    if unk_rate > cfg.max_unk_rate:
        raise StageError(f"the trained tokenizer leaves {unk_rate:.2%} of held-out tokens as [UNK] "
                         f"(limit {cfg.max_unk_rate:.2%}); raise vocab_size or give a larger corpus")
    result = TokenizerResult(output_dir=str(out), vocab_size=len(reloaded), lowercase=cfg.lowercase,
                             documents=n_docs, unk_rate=unk_rate, seconds=time.time() - t0)
    write_json(out / "tokenizer_result.json", result.__dict__)
    return result
