"""Stage 1: train a BERT WordPiece vocabulary on the target corpus.

The result is a folder that `AutoTokenizer.from_pretrained` loads. WordPiece training in `tokenizers`
is not deterministic across runs, so the sweep trains each (corpus, casing, size) once and every later
stage loads that folder.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from stages.common import StageError, write_json
from stages.corpus import CorpusConfig, iter_documents

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HELD_OUT_EVERY = 100  # every 100th document is kept out of training to measure the [UNK] rate honestly


@dataclass(frozen=True)
class TokenizerConfig:
    corpus: CorpusConfig
    output_dir: str
    vocab_size: int = 32000
    lowercase: bool = False  # casing follows the source model: cased except AraBERT
    min_frequency: int = 2
    max_unk_rate: float = 0.01  # fail when held-out text is more [UNK] than this


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
        tok = AutoTokenizer.from_pretrained(path)
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

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    # BERT's own normalizer: uncased models also strip accents, cased ones keep them.
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=lowercase, lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok, processors


def _train(docs: list[str], vocab_size: int, min_frequency: int, lowercase: bool, alphabet: list[str]):
    from tokenizers import trainers

    tok, processors = _build_trainer_tokenizer(lowercase)
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet,
                                        limit_alphabet=max(1000, len(alphabet)), show_progress=False)
    tok.train_from_iterator(docs, trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok


def _add_missing_pieces(tok, alphabet: list[str]):
    """Make sure every letter exists as a word-initial and a word-internal piece.

    On small corpora WordPiece can miss `##x` for a rare letter, which turns whole words into [UNK].
    """
    from tokenizers import Tokenizer

    state = json.loads(tok.to_str())
    vocab = state["model"]["vocab"]
    missing = [p for c in alphabet for p in (c, "##" + c) if p not in vocab]
    for p in missing:
        vocab[p] = len(vocab)
    return Tokenizer.from_str(json.dumps(state)), missing


def train_tokenizer(cfg: TokenizerConfig) -> TokenizerResult:
    from transformers import BertTokenizerFast

    t0 = time.time()
    if cfg.vocab_size < 100:
        raise StageError(f"vocab_size {cfg.vocab_size} is too small for WordPiece; use at least 100")
    docs = list(iter_documents(cfg.corpus, "tokenizer corpus"))
    train_docs = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    held_out = [d for i, d in enumerate(docs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1] or docs[:100]

    # The alphabet of the normalized training text; letters seen once or twice still get pieces.
    norm, _ = _build_trainer_tokenizer(cfg.lowercase)
    chars = Counter()
    for d in train_docs:
        chars.update(norm.normalizer.normalize_str(d))
    alphabet = sorted(c for c in chars if not c.isspace())

    tok = _train(train_docs, cfg.vocab_size, cfg.min_frequency, cfg.lowercase, alphabet)
    tok, missing = _add_missing_pieces(tok, alphabet)
    if missing:  # retrain a little smaller so the final size is the one asked for
        tok = _train(train_docs, cfg.vocab_size - len(missing), cfg.min_frequency, cfg.lowercase, alphabet)
        tok, missing = _add_missing_pieces(tok, alphabet)

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
                             documents=len(docs), unk_rate=unk_rate, seconds=time.time() - t0)
    write_json(out / "tokenizer_result.json", result.__dict__)
    return result
