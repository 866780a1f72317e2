"""Stage 1: train the target vocabulary on the target corpus, in the source tokenizer's family: WordPiece (BERT,
the default and the paper's), byte-level BPE (RoBERTa) or SentencePiece-style Unigram (XLM-R).

The result is a folder that `AutoTokenizer.from_pretrained` loads. The vocabulary is learned the way the
`tokenizers` WordPiece trainer learns it (start from characters, word-internal ones with "##", merge the
most frequent adjacent pair until the vocabulary is full), but ties are broken by the pair's strings
instead of by hash-map order, so the same corpus gives the same vocabulary in every process. (The Rust
trainer orders "##" pieces and tied merges by per-process hash seeds: three trainings of the demo corpus
gave three vocabularies.) Ids are in merge order, i.e. roughly by frequency, as in BERT's own files.

The words are counted in one streaming pass (`count_words`: BERT's normalizer and pre-tokenizer, ASCII
words by an exact regex path, the rest by the Rust pipeline, about 1-2 us a word in one process, in a pool of
processes when the node is granted threads), then `learn_vocabulary`
merges over the word types: Python with numpy, one core. On a Zipf table of 10M word types it learns a 32K
vocabulary in about 6 minutes with a 4.8 GiB peak, the Counter of types included, which it frees once the
words are encoded (benchmarks/tokenizer_learner.py; the learner it replaced, with the same result, took 1 to
2 minutes for 100K types and grew like types^1.5). `trainer="tokenizers"` runs the Rust trainer instead
(multi-threaded, counting included), at the price of tied merges that depend on the process: the vocabulary
is trained once per sweep and every dependent node reuses it.

`family: bpe` and `family: unigram` use the `tokenizers` trainers of those models (their own learners; the
`exact` one is WordPiece's), with the pipelines RoBERTa and XLM-R ship: byte-level pre-tokenization and
`<s> A </s></s> B </s>` pairs for BPE, NFKC, Metaspace ("▁") and the same pair template for Unigram, and the
specials `<s> <pad> </s> <unk> <mask>`, which the transfer stage matches to the source's by role.
"""
from __future__ import annotations

import heapq
import itertools
import multiprocessing
import os
import re
import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Iterable, Iterator, Literal

import numpy as np

from stages.common import Number, StageConfig, StageError, resolve_pretrained, setting, write_json
from stages.corpus import CorpusConfig, iter_documents

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HELD_OUT_EVERY = 100  # every 100th document is kept out of training to measure the [UNK] rate honestly
MAX_HELD_OUT = 10_000
COUNT_BATCH_CHARS = 1 << 22  # documents are normalized and pre-tokenized 4M characters at a time


class TokenizerSettings(StageConfig):
    """How an English (or built source's) WordPiece vocabulary is learned: the sweep's `target` section."""
    vocab_size: int = setting(32000, "tokens in the vocabulary, specials included", ge=100)
    min_frequency: int = setting(2, "a merge must occur this often", ge=1)
    limit_alphabet: int | None = setting(1000, "most frequent characters kept as letters (the tokenizers BERT "
                                               "trainer's default; Wikipedia's rare ones would fill the vocabulary); "
                                               "null: every character", ge=1)
    trainer: Literal["exact", "tokenizers"] = setting(
        "exact", "exact: this module's learner, the same vocabulary in every process (10M word types in minutes); "
                 "tokenizers: the Rust trainer, multi-threaded, tied merges in hash order")
    max_unk_rate: Number = setting(0.01, "fail when held-out text is more [UNK] than this", ge=0, le=1)


Family = Literal["wordpiece", "bpe", "unigram"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]   # ids 0-4, as in RoBERTa's own vocabulary


class TokenizerConfig(TokenizerSettings):
    corpus: CorpusConfig = setting(doc="the text the vocabulary is learned on")
    output_dir: str = setting(doc="where the tokenizer folder is written")
    lowercase: bool = setting(False, "casing follows the source model: cased except AraBERT")
    family: Family = setting("wordpiece", "the source tokenizer's family: wordpiece (BERT), bpe (byte-level, "
                                          "RoBERTa), unigram (SentencePiece, XLM-R)", added=True)


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

    How it scales (benchmarks/tokenizer_learner.py): symbols are interned as ids, a word is a string with
    one character per symbol id (chr(id)), and a pair of ids (a, b) is the integer a * vocab_size + b. A
    merge visits only the words that hold the pair and changes only the pairs around each merge site
    (`_merge_pair`); `_Pairs` keeps the counts, the index pair -> words and the heap. Counting the types,
    letters and first pairs is numpy. The caller may hand over its last reference to `word_counts`: it is
    dropped once the words are encoded.
    """
    if vocab_size > 0x10FFFF:
        raise StageError(f"vocab_size {vocab_size} is above {0x10FFFF}, the most symbols this learner can hold")
    types = list(word_counts)
    freq = np.fromiter(word_counts.values(), dtype=np.int64, count=len(types))
    del word_counts
    letters, rank, lens, starts = _alphabet(types, freq, limit_alphabet)
    del types
    alphabet = letters + ["##" + c for c in letters]
    if len(SPECIAL_TOKENS) + len(alphabet) > vocab_size:
        raise StageError(f"vocab_size {vocab_size} cannot hold the alphabet: {len(letters)} characters, each also "
                         f"as '##' piece, plus {len(SPECIAL_TOKENS)} special tokens make "
                         f"{len(SPECIAL_TOKENS) + len(alphabet)}. Lower limit_alphabet or raise vocab_size.")
    words, freq, sym, lens = _symbol_words(rank, lens, starts, freq, len(letters))
    del rank, starts
    # Symbol ids stay under vocab_size: every new symbol but the spelling of a special token adds a token.
    pairs = _Pairs(*_pair_index(sym, lens, freq, vocab_size), names=list(alphabet), k=vocab_size,
                   floor=max(1, min_frequency))
    del sym, lens
    counts = freq.tolist()  # Python ints: the merge loop reads them one at a time
    del freq
    ids = {s: i for i, s in enumerate(alphabet)}
    vocab = [*SPECIAL_TOKENS, *alphabet]
    seen = set(vocab)
    while len(vocab) < vocab_size:
        pair = pairs.best()
        if pair is None:
            break
        new = _merge(pairs.names[pair // vocab_size], pairs.names[pair % vocab_size])
        if new not in seen:  # two pairs can spell the same piece ("a"+"##bc", "ab"+"##c"): listed once
            vocab.append(new)
            seen.add(new)
        m = ids.get(new)
        if m is None:
            m = ids[new] = len(pairs.names)
            pairs.names.append(new)
        _merge_pair(pairs, pair, m, words, counts)
    return vocab[:vocab_size]


class _Pairs:
    """The learner's pair statistics, by pair key a * k + b: `count` (occurrences weighted by word count),
    `where` (the ids of the words that hold the pair) and a heap to find the best pair.

    `where` is appended to and never pruned: a merge skips a word that lost the pair. Most pairs of a large
    vocabulary are held by one word (three in four at 1M types): that word's id alone, not an array('i'),
    saves 56 bytes a pair. A pair's entries go when its count reaches 0: no word holds it then.

    The heap holds, for every pair of at least `floor` (min_frequency), an entry whose count is at least the
    pair's count: a count that rises pushes an entry, one that falls pushes nothing, and an entry found above
    the current count when popped is pushed again at the current count. So the first popped entry whose
    count is current is the best pair (ties by the pair's strings, the entry's next fields), and the heap
    stays near the number of pairs. A Zipf tail is mostly pairs under min_frequency: they enter the heap
    only if they reach it."""

    def __init__(self, count: dict[int, int], where: dict[int, int | array], names: list[str], k: int, floor: int):
        self.count, self.where, self.names, self.k, self.floor = count, where, names, k, floor
        self.heap = [(-c, names[p // k], names[p % k], p) for p, c in count.items() if c >= floor]
        heapq.heapify(self.heap)

    def best(self) -> int | None:
        """The pair to merge next, None when no pair has min_frequency."""
        heap, count = self.heap, self.count
        while heap:
            neg, a, b, pair = heapq.heappop(heap)
            c = count.get(pair, 0)
            if c == -neg:
                return pair
            if self.floor <= c < -neg:  # the count fell since the push: the pair competes at its current count
                heapq.heappush(heap, (-c, a, b, pair))
            # else: gone, under min_frequency, or below the count of another entry of the same pair
        return None

    def drop(self, pair: int) -> int | array:
        """Forget the pair being merged, and return its words: each is merged now, none holds it after."""
        del self.count[pair]
        return self.where.pop(pair)

    def lose(self, pair: int, f: int) -> None:
        c = self.count.get(pair, 0) - f
        if c > 0:
            self.count[pair] = c
        else:  # no word holds the pair any more: its index is all stale entries
            self.count.pop(pair, None)
            self.where.pop(pair, None)

    def gain(self, pair: int, f: int, words: list[int]) -> None:
        c = self.count[pair] = self.count.get(pair, 0) + f
        if c >= self.floor:
            heapq.heappush(self.heap, (-c, self.names[pair // self.k], self.names[pair % self.k], pair))
        ids = self.where.get(pair)
        if ids is None:
            self.where[pair] = words[0] if len(words) == 1 else array("i", words)
        elif ids.__class__ is int:
            self.where[pair] = array("i", [ids, *words])
        else:
            ids.extend(words)


def _merge_pair(pairs: _Pairs, pair: int, m: int, words: list[str], counts: list[int]) -> None:
    """Merge `pair` into the symbol `m` in every word that holds it, and update the pair statistics.

    Only the pairs around a merge site change: at "x a b y" -> "x m y", (x, a) and (b, y) are lost and
    (x, m) and (m, y) gained, by the word's count each; (a, b) itself is dropped. Two sites side by side
    ("a b a b" -> "m m") lose the pair between them, (b, a), once and gain (m, m) once. str.find and
    str.replace do the scanning in C, and replace merges as the greedy scan of a word does: left to right,
    without overlap ("a a a" -> "m a")."""
    k = pairs.k
    a, b = divmod(pair, k)
    find, new = chr(a) + chr(b), chr(m)
    holders = pairs.drop(pair)
    lost: dict[int, int] = {}  # lost pair -> count lost
    gains: dict[int, list[int]] = {}  # gained pair -> a word id per site
    # a word enters the index once per gained pair, perhaps more than once: visit it once
    for w in (holders,) if holders.__class__ is int else set(holders):
        s = words[w]
        i = s.find(find)
        if i < 0:
            continue  # a stale index entry: an earlier merge took the pair from this word
        f, n, prev_end = counts[w], len(s), -2
        while True:
            if i > 0:
                if prev_end == i - 1:  # right after the previous site, which lost the pair between them
                    gains.setdefault(m * k + m, []).append(w)
                else:
                    x = ord(s[i - 1]) * k
                    lost[x + a] = lost.get(x + a, 0) + f
                    gains.setdefault(x + m, []).append(w)
            j = s.find(find, i + 2)
            if i + 2 < n:
                y = ord(s[i + 2])
                lost[b * k + y] = lost.get(b * k + y, 0) + f
                if j != i + 2:  # else the next site gains (m, m)
                    gains.setdefault(m * k + y, []).append(w)
            if j < 0:
                break
            prev_end, i = i + 1, j
        words[w] = s.replace(find, new)
    for p, f in lost.items():  # first: a pair both lost and gained (m was a symbol already) may reach 0 between
        pairs.lose(p, f)
    for p, ws in gains.items():
        pairs.gain(p, sum(map(counts.__getitem__, ws)), ws)


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
                k: int) -> tuple[dict[int, int], dict[int, int | array]]:
    """Every adjacent pair's count (weighted by the word's count) and the words that hold it, keyed by the
    pair's integer a * k + b. `sym` holds the words' symbol ids end to end, `lens` their lengths.

    numpy does it in one stable sort of the pairs: a pair's words come out in increasing order, each listed
    once, as `_Pairs.where` holds them."""
    if len(sym) == 0:
        return {}, {}
    inner = np.ones(len(sym), dtype=bool)
    inner[np.cumsum(lens) - 1] = False  # the last symbol of a word starts no pair
    inner = inner[:-1]
    keys = sym[:-1][inner].astype(np.int64 if k * k >= 2 ** 31 else np.int32) * k + sym[1:][inner]
    word_of = np.repeat(np.arange(len(lens), dtype=np.intc), lens)[:-1][inner]
    del inner
    order = np.argsort(keys, kind="stable")
    keys, word_of = keys[order], word_of[order]
    del order
    starts = np.flatnonzero(np.diff(keys, prepend=-1))
    counts = np.add.reduceat(freq[word_of], starts).tolist()
    once = (np.diff(keys, prepend=-1) != 0) | (np.diff(word_of, prepend=-1) != 0)  # a word holding a pair twice
    keys, word_of = keys[once], word_of[once]
    starts = np.append(np.flatnonzero(np.diff(keys, prepend=-1)), len(keys)).tolist()
    count, where = {}, {}
    for p, c, i, j in zip(keys[starts[:-1]].tolist(), counts, starts, starts[1:]):
        count[p] = c
        if j == i + 1:
            where[p] = int(word_of[i])
        else:
            where[p] = ids = array("i")
            ids.frombytes(word_of[i:j].tobytes())
    return count, where


def count_words(documents: Iterable[str], lowercase: bool, workers: int = 1,
                batch_chars: int = COUNT_BATCH_CHARS) -> Counter:
    """Word types and their counts, as BERT's own normalizer and pre-tokenizer cut the documents: one
    streaming pass. Documents go in batches of about `batch_chars` characters, joined by newlines (a word never
    spans a newline, so a batch gives the words of its documents). With workers > 1 and more than one batch,
    a pool of that many processes counts batches and this process adds up their Counters in batch order: the
    same counts, and the same first-seen order of the types, as one process. Counting costs about
    1-2 us a word in one process (`_count_batch`), i.e. an hour or more for English Wikipedia's billions of
    words on one core."""
    batches = _batches(documents, batch_chars)
    counts: Counter = Counter()
    first = next(batches, None)
    if first is None:
        return counts
    second = next(batches, None)
    if workers <= 1 or second is None:
        _init_count_worker(lowercase)
        for text in itertools.chain([first], [second] if second is not None else [], batches):
            counts.update(_count_batch(text))
        return counts
    # spawn, not fork: the parent may have used the tokenizers thread pool, which does not survive a fork
    with multiprocessing.get_context("spawn").Pool(workers, _init_count_worker, (lowercase,)) as pool:
        pending: deque = deque()
        for text in itertools.chain([first, second], batches):
            pending.append(pool.apply_async(_count_batch, (text,)))
            if len(pending) >= 2 * workers:  # a bounded window: the corpus never sits in memory
                counts.update(pending.popleft().get())
        while pending:
            counts.update(pending.popleft().get())
    return counts


def _count_workers() -> int:
    """Processes for counting words: RAYON_NUM_THREADS, which orchestrator/runner.py sets to the node's threads
    around a tokenizer node that runs the Rust trainer (for `exact` too once it wraps every tokenizer node), else
    one."""
    try:
        return max(1, int(os.environ.get("RAYON_NUM_THREADS") or 1))
    except ValueError:
        return 1


def _batches(documents: Iterable[str], batch_chars: int) -> Iterator[str]:
    batch, size = [], 0
    for d in documents:
        batch.append(d)
        size += len(d) + 1
        if size >= batch_chars:
            yield "\n".join(batch)
            batch, size = [], 0
    if batch:
        yield "\n".join(batch)


_COUNT_PIPELINE = None  # the normalizer and pre-tokenizer of a counting process
_COUNT_LOWERCASE = False


def _init_count_worker(lowercase: bool) -> None:
    global _COUNT_PIPELINE, _COUNT_LOWERCASE
    _COUNT_PIPELINE, _ = _build_trainer_tokenizer(lowercase)
    _COUNT_LOWERCASE = lowercase


# BERT's normalizer deletes these ASCII characters (control characters other than tab, newline and return;
# it deletes controls before it maps whitespace to spaces, so \x0b and \x0c go too) and U+0085 (a control
# that Python's str.split would split on).
# A regex, not str.translate: translate walks a non-ASCII string character by character in Python's slow path.
_DELETED = re.compile("[" + "".join(map(chr, [*range(0, 9), 11, 12, *range(14, 32), 127, 0x85])) + "]")
_ASCII_PUNCT = r"!-/:-@\[-`{-~"  # BERT's punctuation within ASCII: every printable that is not a letter or digit
_ASCII_WORDS = re.compile(rf"[^\s{_ASCII_PUNCT}]+|[{_ASCII_PUNCT}]")


def _count_batch(text: str) -> Counter:
    """The words of `text` as BERT's normalizer and pre-tokenizer cut them, counted.

    The Rust pipeline costs about 9 us a word once its offsets become Python tuples, most of a tokenizer
    node at Wikipedia scale. Words are independent once split at whitespace, and for an ASCII-only piece the
    pipeline reduces to three exact steps: delete control characters, lowercase (uncased), cut punctuation
    off as single characters. So pieces are split at whitespace, ASCII pieces take that path (a C regex,
    about 1 us a word) and the rest go through the Rust pipeline in one call. The counts are the same as the
    Rust pipeline's over the whole text (tests/test_tokenizer.py checks every ASCII character and mixed
    text); the types' first-seen order is not, which `learn_vocabulary` never reads."""
    if _DELETED.search(text):
        text = _DELETED.sub("", text)
    pieces = text.split()  # whitespace to Python is whitespace to BERT once those controls are gone
    ascii_text = " ".join(p for p in pieces if p.isascii())
    other = " ".join(p for p in pieces if not p.isascii())
    if _COUNT_LOWERCASE:
        ascii_text = ascii_text.lower()
    counts = Counter(_ASCII_WORDS.findall(ascii_text))
    if other:
        words = _COUNT_PIPELINE.pre_tokenizer.pre_tokenize_str(_COUNT_PIPELINE.normalizer.normalize_str(other))
        counts.update(map(itemgetter(0), words))
    return counts


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


def _train_roberta_family(documents, cfg: TokenizerConfig):
    """A byte-level BPE (RoBERTa) or Unigram (XLM-R) tokenizer trained on `documents` by the `tokenizers`
    trainer of that family, with that model's pipeline and pair template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if cfg.family == "bpe":
        tok = Tokenizer(models.BPE())               # byte-level: every string has pieces, nothing is unknown
        if cfg.lowercase:
            tok.normalizer = normalizers.Lowercase()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                      special_tokens=ROBERTA_SPECIALS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.Unigram())
        steps = [normalizers.Nmt(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
        tok.normalizer = normalizers.Sequence(steps + ([normalizers.Lowercase()] if cfg.lowercase else []))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(vocab_size=cfg.vocab_size, special_tokens=ROBERTA_SPECIALS,
                                          unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(documents, trainer)
    cls, sep = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    if cfg.family == "bpe":   # offsets trimmed of the leading space byte, so a word's offsets are the word's
        tok.post_processor = processors.RobertaProcessing(("</s>", sep), ("<s>", cls), trim_offsets=True,
                                                          add_prefix_space=False)
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", cls), ("</s>", sep)])
    return tok


def _roberta_fast(tok, cfg: TokenizerConfig):
    from transformers import RobertaTokenizerFast, XLMRobertaTokenizerFast

    cls = RobertaTokenizerFast if cfg.family == "bpe" else XLMRobertaTokenizerFast
    return cls(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
               unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", model_max_length=512)


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

    if cfg.family != "wordpiece":   # RoBERTa / XLM-R: their family's trainer (`trainer`, `limit_alphabet`
        tok = _train_roberta_family(training_documents(), cfg)   # are WordPiece's settings)
        fast = _roberta_fast(tok, cfg)
    else:
        if cfg.trainer == "exact":
            # The counts go straight into the learner, which frees them once it has encoded the words.
            vocab = learn_vocabulary(count_words(training_documents(), cfg.lowercase, _count_workers()),
                                     cfg.vocab_size, cfg.min_frequency, cfg.limit_alphabet)
        else:
            vocab = _train_with_tokenizers(pipeline, training_documents(), cfg)
        tok = _tokenizer_from_vocab(vocab, cfg.lowercase)
        fast = BertTokenizerFast(tokenizer_object=tok, do_lower_case=cfg.lowercase, unk_token="[UNK]",
                                 sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                                 model_max_length=512)
    held_out = held_out or [first]  # under 100 documents: check the first one (it was also trained on)
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
