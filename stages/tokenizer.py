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
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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

    Greedy pair merging over word types, with a max-heap keyed by (count, pair): ties go to the
    lexicographically smallest pair, so the result depends on the counts alone. With `limit_alphabet`, only
    the most frequent characters (occurrences weighted by word count; ties by character) become letters,
    and words with any other character are left out of merging: WordPiece turns such a word into [UNK]
    whatever its pieces. Wikipedia has tens of thousands of distinct characters (CJK, symbols), which with
    their "##" forms would otherwise fill a 32K vocabulary before the first merge.
    """
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
        new = _merge(*pair)
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
