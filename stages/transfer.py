"""Stage 2: vocabulary surgery on a source BERT before continued pretraining on English.

Modes (the paper's Section 3, plus one control):
- `keep`        [lang->en][lang]: keep the source vocabulary, truncated to its first N tokens; embedding
                rows and the MLM decoder bias are sliced to match.
- `frequency`   [lang->en][en]: a new English WordPiece vocabulary; the English token of rank i takes the
                source embedding row of rank i. Special tokens are matched by role. What "rank" means on each
                side is the `rank` setting (RANKS below); `[unused*]` rows are never re-used.
- `random-map`  the `frequency` procedure with the same source rows dealt out in a seeded random order:
                it separates "frequency order matters" from "any reuse of the body helps".
- `scratch`     [en][en]: same architecture, random init, English vocabulary.
- `build`       a new model of a given `Architecture`, random init, with the given vocabulary: a source
                pretrained from scratch inside the sweep (the demo's), or [en][en] shaped like one.
- `overlap`, `fvt`, `random-normal`, `focus`, `wechsel`: the published initialisations of a new vocabulary's
                embeddings (stages/inits.py, one function each). Every mode's mapping report carries the
                same diagnostics: rows copied / composed / random / special, identity rate, and the cosine of
                the rows not copied to their nearest source rows.

Ranks (`rank`), because the paper's sentence "the vocabulary tokens learned by a Wordpiece tokenizer are in
practice ordered by descending frequency" has two readings, and mixing them is a trap:
- `counts`      both sides by token counts on a corpus: English counts on the English corpus, source counts on
                a source-language corpus tokenized by the source tokenizer. Frequent words get frequent words.
- `vocab-order` both vocabularies by id order: keep the matrix, swap the vocabulary (the literal reading).
                WordPiece vocabularies list their alphabet before any merged piece, so characters get
                characters and early merges get early merges.
- `hybrid`      English by counts, source by id order (this project's behaviour before `rank` existed). On a
                real BERT it maps the most frequent English words onto the source's ~1,000 single-character
                rows ("the" -> '"'), because id order is not frequency order for the alphabet. Kept for
                comparison only.

A checkpoint saved without its MLM head (most hub BERTs are `BertModel`s) gets one initialised from `seed`
with BERT's own init; the missing keys are logged and listed in `mapping_report.json`.

The output folder reloads with AutoModelForMaskedLM + AutoTokenizer and holds `mapping_report.json`.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from pydantic import model_validator

from stages.common import (StageConfig, StageError, quiet_transformers, resolve_pretrained, save_npy, set_seed,
                           setting, write_json, write_text)
from stages.inits import COPIED, INITS, RANDOM, SPECIAL, InitInputs, diagnostics
from stages.tokenizer import load_tokenizer
from stages.vectors import VectorSettings

MODES = ("keep", "frequency", "random-map", "scratch", "build", *INITS)
ROLES = ("pad", "unk", "cls", "sep", "mask")
# Rows of reserved tokens such as BERT's "[unused17]" were never trained; they take no part in ranking.
_RESERVED = re.compile(r"^\[[^\]\s]+\]$")
RANK_BANDS = (0, 10, 100, 1000, 10000, 30000)
RANKS = ("counts", "vocab-order", "hybrid")
KIND_TOPS = (100, 1000)   # same-kind shares are reported for the top 100 and top 1000 English ranks
CHARACTER_WARNING = 0.5   # warn when more than half of the source's top-100 ranked rows are single characters


class Architecture(StageConfig):
    """Shape of a BERT built from scratch (`build` mode: the demo's source model).

    `model_type` "roformer" is BERT with rotary position embeddings (Su et al., 2021) in place of learned
    absolute ones; everything else (post-LN blocks, WordPiece, tied MLM head) is BERT's. Tiny models need
    it: at hidden size 64, BERT's absolute positions are not learned within a demo budget (see README).
    """
    model_type: Literal["bert", "roformer"] = setting("bert", "the MLM family built")
    hidden_size: int = setting(768, "width of every layer", ge=1)
    num_layers: int = setting(12, "transformer blocks", ge=1)
    num_heads: int = setting(12, "attention heads per block (must divide hidden_size)", ge=1)
    intermediate_size: int = setting(3072, "feed-forward width", ge=1)
    max_position_embeddings: int = setting(512, "longest input in tokens", ge=8)


class TransferSettings(StageConfig):
    """The per-source knobs of vocabulary surgery (part of each source's section in the sweep)."""
    keep_vocab_size: int | None = setting(32000, "`keep` mode: the first N source tokens (null: all of them, as "
                                                 "for Dutch)", ge=1)
    # When the English vocabulary has more ordinary tokens than the source has rows (BERTje: 30K rows for
    # a 32K vocabulary), the least frequent English tokens get new, randomly initialised rows.
    grow_embeddings: bool = setting(False, "frequency modes: new random rows when English has more tokens than "
                                           "the source has rows")
    rank: Literal["counts", "vocab-order", "hybrid"] = setting(
        "counts", "frequency modes: what rank means on each side. counts: both by token counts (the source's on a "
                  "source-language corpus); vocab-order: both by vocabulary id; hybrid: English by counts, "
                  "source by id (maps frequent words to the source's character rows; comparison only)")


class FocusSettings(StageConfig):
    """FOCUS (`deepfocus`): which tokens count as overlap, and the fastText vectors of target tokens it weighs
    the overlap by (trained by the sweep's vectors node on the target corpus, tokenized by the target tokenizer;
    defaults: deepfocus's own)."""
    exact_match_all: bool = setting(True, "every token whose string is a source token is overlap (FOCUS's default)")
    match_symbols: bool = setting(False, "numbers and punctuation match ignoring case and word-start marking")
    fuzzy_match_all: bool = setting(False, "every token matches ignoring case and word-start marking")
    vectors: VectorSettings = setting(VectorSettings(), "fastText training of the target-token vectors")


class WechselSettings(StageConfig):
    """WECHSEL (`wechsel`): the mix, and the target-language word vectors (the source-language ones and the
    dictionary are per source: `sources.X.wechsel_vectors`, `sources.X.wechsel_dictionary`)."""
    neighbors: int = setting(10, "nearest source subwords mixed per target token (WECHSEL's k)", ge=1)
    temperature: float = setting(0.1, "softmax temperature of the mix", gt=0)
    target_vectors: str | None = setting(None, "fastText .bin of target-language words (e.g. cc.en.300.bin, "
                                               "downloaded by hand); null: trained on the target corpus")
    vectors: VectorSettings = setting(VectorSettings(epochs=20, min_count=5, minn=5, maxn=5),
                                      "fastText training of word vectors trained in the sweep (WECHSEL's own "
                                      "helper: 20 epochs, n-grams of 5)")


class TransferConfig(TransferSettings):
    mode: Literal["keep", "frequency", "random-map", "scratch", "build", "overlap", "fvt", "random-normal",
                  "focus", "wechsel"] = setting(doc="one of MODES")
    output_dir: str = setting(doc="the model folder written")
    source: str | None = setting(None, "hub id or folder of a BERT MLM checkpoint with its tokenizer (every mode "
                                       "but build)")
    target_tokenizer: str | None = setting(None, "English tokenizer folder (frequency, random-map, scratch, build)")
    target_counts: str | None = setting(None, ".npy of English token counts per target id (frequency ranks)")
    source_counts: str | None = setting(None, ".npy of source token counts per source id on a source corpus "
                                              "(rank: counts)")
    architecture: Architecture | None = setting(None, "build mode: the shape of the new model")
    seed: int = setting(0, "random-map order, scratch/build init, grown rows, random-normal rows")
    focus: FocusSettings = setting(FocusSettings(), "focus mode's settings")
    focus_vectors: str | None = setting(None, "focus mode: fastText .bin of the target tokens")
    wechsel: WechselSettings = setting(WechselSettings(), "wechsel mode's settings")
    wechsel_dictionary: str | None = setting(None, "wechsel mode: bilingual dictionary, source word<TAB>target word")
    wechsel_source_vectors: str | None = setting(None, "wechsel mode: fastText .bin of source-language words")
    wechsel_target_vectors: str | None = setting(None, "wechsel mode: fastText .bin of target-language words")

    @model_validator(mode="after")
    def _inputs(self):
        if self.mode == "build" and (self.architecture is None or not self.target_tokenizer):
            raise ValueError("build mode needs architecture and target_tokenizer")
        if self.mode != "build" and not self.source:
            raise ValueError(f"{self.mode} mode needs source (a hub id or model folder)")
        if self.mode in ("frequency", "random-map") and (self.rank == "counts") != bool(self.source_counts):
            raise ValueError("rank: counts ranks the source rows by source_counts (token counts on a source-language "
                             "corpus): give both, or rank: vocab-order" if self.rank == "counts" else
                             f"source_counts is only read with rank: counts (rank is {self.rank})")
        return self


@dataclass(frozen=True)
class TransferResult:
    output_dir: str
    mode: str
    vocab_size: int
    source_rows: int
    identity_count: int
    report_path: str
    seconds: float


def _check_family(src_tok, new_tok) -> None:
    """The new vocabulary must be of the source tokenizer's family: a RoBERTa body reads `<s> A </s></s> B
    </s>` pairs without token types, a BERT one `[CLS] A [SEP] B [SEP]` with them."""
    from stages.inits import family

    have, want = family(new_tok), family(src_tok)
    if have != want:
        raise StageError(f"the source's tokenizer is {want} but the new vocabulary is {have}: set the source's "
                         f"tokenizer_family: {want} in the sweep (sources.<name>.tokenizer_family), so its English "
                         "vocabulary is learned in the same family")


def _role_ids(tok) -> dict[str, int]:
    ids = {r: getattr(tok, f"{r}_token_id") for r in ROLES}
    missing = [r for r, i in ids.items() if i is None]
    if missing:
        raise StageError(f"tokenizer {tok.name_or_path!r} defines no {missing} token(s); a BERT MLM vocabulary "
                         "needs [PAD] [UNK] [CLS] [SEP] [MASK]")
    return ids


def _ranked_source_rows(src_tok, n_rows: int, counts: np.ndarray | None) -> np.ndarray:
    """Source row ids that may be reused, most frequent first: by `counts` (ties by id), or by id if None."""
    specials = set(_role_ids(src_tok).values()) | set(src_tok.all_special_ids)
    tokens = src_tok.convert_ids_to_tokens(list(range(n_rows)))
    usable = np.array([i for i, t in enumerate(tokens)
                       if i not in specials and t is not None and not _RESERVED.match(t)], dtype=np.int64)
    if counts is None:
        return usable
    if counts.shape[0] < n_rows:
        raise StageError(f"source_counts has {counts.shape[0]} entries but the source table has {n_rows} rows; "
                         "recount the source corpus with the source's own tokenizer")
    # Stable sort: equal counts keep vocab order, so the ranking is deterministic.
    return usable[np.argsort(-counts[usable], kind="stable")]


NEW_ROW = -2  # row_map value of a target token that gets a freshly initialised row (grow_embeddings)


def frequency_row_map(src_tok, n_src_rows: int, tgt_tok, tgt_counts: np.ndarray | None,
                      src_counts: np.ndarray | None = None, shuffle_seed: int | None = None,
                      grow: bool = False, rank: str = "counts"):
    """Row map for `frequency` (or `random-map` when shuffle_seed is given).

    Returns (row_map, target_ranked, source_ranked): row_map[target_id] = source row (NEW_ROW: a new row,
    only with `grow`); source_ranked lists the reusable source rows in rank order; target_ranked lists
    non-special target ids in rank order: by descending English count (ties by
    id), or by id for rank `vocab-order`. The source side is ranked by `src_counts` for rank `counts`, by id
    otherwise.
    """
    if rank not in RANKS:
        raise StageError(f"unknown rank {rank!r}; choose from {', '.join(RANKS)}")
    if rank == "counts" and src_counts is None:
        raise StageError("rank: counts needs source_counts (token counts of the source tokenizer on a source-language "
                         "corpus; in a sweep: the source's source_corpus); or use rank: vocab-order")
    n_tgt = len(tgt_tok)
    if rank != "vocab-order" and (tgt_counts is None or tgt_counts.shape[0] != n_tgt):
        got = "none" if tgt_counts is None else f"{tgt_counts.shape[0]} entries"
        raise StageError(f"target_counts has {got} for a {n_tgt}-token target vocabulary; "
                         "recount the English corpus with the same tokenizer")
    tgt_roles, src_roles = _role_ids(tgt_tok), _role_ids(src_tok)
    tgt_special = set(tgt_roles.values()) | set(tgt_tok.all_special_ids)
    tgt_plain = np.array([i for i in range(n_tgt) if i not in tgt_special], dtype=np.int64)
    tgt_ranked = tgt_plain if rank == "vocab-order" else tgt_plain[np.argsort(-tgt_counts[tgt_plain], kind="stable")]
    src_ranked = _ranked_source_rows(src_tok, n_src_rows, src_counts if rank == "counts" else None)
    if len(tgt_ranked) > len(src_ranked) and not grow:
        raise StageError(
            f"the target vocabulary has {len(tgt_ranked)} ordinary tokens but the source embedding table has only "
            f"{len(src_ranked)} reusable rows ({n_src_rows} rows minus special/reserved ones): train the English "
            f"tokenizer with vocab_size <= {len(src_ranked) + len(tgt_special)}, use vocab mode `keep`, or set "
            "grow_embeddings to give the rarest English tokens new random rows")
    rows = src_ranked[: len(tgt_ranked)]
    if shuffle_seed is not None:
        rows = rows[np.random.default_rng(shuffle_seed).permutation(len(rows))]
    row_map = np.full(n_tgt, -1, dtype=np.int64)
    row_map[tgt_ranked[: len(rows)]] = rows
    row_map[tgt_ranked[len(rows):]] = NEW_ROW
    for role, tid in tgt_roles.items():
        row_map[tid] = src_roles[role]
    unmatched = [i for i in np.nonzero(row_map == -1)[0]]
    if unmatched:  # extra special tokens of the target (none in our tokenizers) get the [UNK] row
        row_map[unmatched] = src_roles["unk"]
    return row_map, tgt_ranked, src_ranked


def token_kind(token: str | None) -> str:
    """"character" (one letter, with or without "##"), "subword" ("##" piece), "word", or "reserved"."""
    if token is None or _RESERVED.match(token):
        return "reserved"
    piece = token[2:] if token.startswith("##") else token
    if len(piece) == 1:
        return "character"
    return "subword" if token.startswith("##") else "word"


def kind_report(ranked: np.ndarray, row_map: np.ndarray, tgt_tokens: list, src_tokens: list) -> dict:
    """How many of the top English ranks get a source row of the same kind (words get words, characters get
    characters): the sanity check that tells a meaningful rank alignment from an offset one."""
    out = {}
    for top in KIND_TOPS:
        pairs = [(tgt_tokens[int(t)], src_tokens[int(row_map[t])]) for t in ranked[:top] if row_map[t] >= 0]
        if pairs:
            same = sum(token_kind(a) == token_kind(b) for a, b in pairs)
            out[f"top{top}"] = {"pairs": len(pairs), "same_kind": same, "share": same / len(pairs)}
    return out


def character_share(rows: np.ndarray, src_tokens: list, top: int = 100) -> float:
    """Share of single characters among the first `top` ranked source rows."""
    head = [src_tokens[int(r)] for r in rows[:top]]
    return sum(token_kind(t) == "character" for t in head) / max(len(head), 1)


def keep_row_map(src_tok, n_src_rows: int, keep: int | None) -> np.ndarray:
    """Ids of the first `keep` source tokens, special tokens always among them."""
    n_vocab = min(len(src_tok), n_src_rows)
    keep = n_vocab if keep is None else keep
    if keep > n_vocab:
        raise StageError(f"keep_vocab_size {keep} is larger than the source vocabulary ({n_vocab} tokens); "
                         f"use keep_vocab_size <= {n_vocab} or null for all of it")
    specials = sorted(set(_role_ids(src_tok).values()) | set(src_tok.all_special_ids))
    ids = list(range(keep))
    outside = [s for s in specials if s >= keep]
    if outside:  # drop the last ordinary ids to make room for special tokens stored past the cut
        ordinary = [i for i in ids if i not in specials]
        ids = sorted(set(ordinary[: keep - len([s for s in specials if s < keep]) - len(outside)])
                     | set(s for s in specials if s < keep) | set(outside))
    return np.array(ids, dtype=np.int64)


def _write_kept_tokenizer(src_tok, row_map: np.ndarray, out: Path) -> None:
    """Save the source tokenizer restricted to `row_map` ids, renumbered 0..N-1."""
    state = json.loads(src_tok.backend_tokenizer.to_str())
    if state["model"]["type"] != "WordPiece":
        raise StageError(f"keep mode supports WordPiece vocabularies; {src_tok.name_or_path!r} uses "
                         f"{state['model']['type']}")
    old_tokens = src_tok.convert_ids_to_tokens([int(i) for i in row_map])
    new_id = {t: i for i, t in enumerate(old_tokens)}
    state["model"]["vocab"] = new_id
    state["added_tokens"] = [dict(a, id=new_id[a["content"]]) for a in state.get("added_tokens", [])
                             if a["content"] in new_id]
    pp = state.get("post_processor") or {}
    if pp.get("type") == "TemplateProcessing":
        for tok_name, spec in pp["special_tokens"].items():
            spec["ids"] = [new_id[t] for t in spec["tokens"]]
    elif pp.get("type") == "BertProcessing":
        pp["sep"] = [pp["sep"][0], new_id[pp["sep"][0]]]
        pp["cls"] = [pp["cls"][0], new_id[pp["cls"][0]]]
    src_tok.save_pretrained(str(out))
    (out / "vocab.txt").unlink(missing_ok=True)  # a stale slow-tokenizer vocab would disagree with tokenizer.json
    write_text(out / "tokenizer.json", json.dumps(state, ensure_ascii=False))


def _rank_bands(ranked_ids: np.ndarray, row_map, tgt_tokens, src_tokens, counts, per_band: int = 5):
    bands = []
    for start in RANK_BANDS:
        if start >= len(ranked_ids):
            break
        pairs = []
        for r in range(start, min(start + per_band, len(ranked_ids))):
            tid = int(ranked_ids[r])
            pairs.append({"rank": r, "target_id": tid, "target": tgt_tokens[tid],
                          "count": int(counts[tid]) if counts is not None else None,
                          "source_row": int(row_map[tid]),
                          "source": src_tokens[int(row_map[tid])] if row_map[tid] >= 0 else "(new row)"})
        bands.append({"from_rank": start, "pairs": pairs})
    return bands


def lowercases(tokenizer) -> bool:
    """Whether the tokenizer lowercases its input, read from what its normalizer does (BertNormalizer,
    a Lowercase step in a Sequence, ...) rather than from one class's `do_lower_case` flag."""
    normalizer = tokenizer.backend_tokenizer.normalizer
    return normalizer is not None and normalizer.normalize_str("Ab") == "ab"


def _load_source(cfg: TransferConfig, log: Callable[[str], None]):
    """The source MLM model, with a seeded head when the checkpoint has none (and what was missing, said)."""
    from transformers import AutoModelForMaskedLM

    path = resolve_pretrained(cfg.source)
    # Seeded right before loading: whatever the checkpoint lacks (the MLM head of a `BertModel`) is initialised
    # by transformers' BERT init from the global RNG, so without this two loads differ and reruns differ.
    set_seed(cfg.seed)
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise StageError(f"cannot load {cfg.source!r} as a masked-LM BERT: {e}. Give a folder written by "
                         "save_pretrained (config.json + model.safetensors) or a hub id of a BERT-like model") from e
    missing = sorted(info["missing_keys"])
    head = {"missing_keys": missing, "unexpected_keys": sorted(info["unexpected_keys"]),
            "initialised": None}
    if missing:
        head["initialised"] = (f"transformers' {type(model).__name__} init (normal std "
                               f"{getattr(model.config, 'initializer_range', 0.02)}, zero bias, LayerNorm 1/0) "
                               f"from seed {cfg.seed}; decoder tied to the input embeddings")
        log(f"[transfer] {cfg.source} has no weights for {len(missing)} tensor(s) ({', '.join(missing)}): "
            f"initialised with {head['initialised']}")
    if not any(Path(path).glob("*.safetensors")):
        # transformers loads pickled checkpoints with torch.load(weights_only=True): tensors only, no code runs.
        log(f"[transfer] {cfg.source} has no safetensors file; its pickled weights were loaded with "
            "weights_only=True (tensors only)")
    return model, head


def _check_casing(cfg: TransferConfig, src_tok, new_tok) -> None:
    """The paper's English vocabulary follows the source's casing (uncased only for AraBERT). A mismatch is a
    config slip: the source rows would be reused for tokens of the other casing."""
    if lowercases(new_tok) != lowercases(src_tok):
        if lowercases(src_tok):
            raise StageError(
                f"source {cfg.source} lowercases its input but the English tokenizer {cfg.target_tokenizer} is "
                "cased. If the source is an uncased model, set this source's `lowercase: true` in the sweep "
                "config. If it is a cased model, its tokenizer files lack `do_lower_case: false` and transformers "
                "lowercases by default (a known trap of some hub checkpoints): save a fixed copy with "
                "AutoTokenizer.from_pretrained(<id>, do_lower_case=False).save_pretrained(<folder>), next to the "
                "model's files, and give that folder as the source")
        raise StageError(f"source {cfg.source} is cased but the English tokenizer {cfg.target_tokenizer} "
                         "lowercases; set this source's `lowercase: false` in the sweep config so the English "
                         "vocabulary is trained with the source's casing")


def transfer(cfg: TransferConfig, log: Callable[[str], None] = print) -> TransferResult:
    from transformers import AutoConfig, AutoModelForMaskedLM
    quiet_transformers()
    t0 = time.time()
    out = Path(cfg.output_dir)
    if out.exists():
        shutil.rmtree(out)  # a half-written folder from a crash is never reused
    out.mkdir(parents=True)
    report: dict = {"mode": cfg.mode, "source": cfg.source, "seed": cfg.seed}

    if cfg.mode in ("scratch", "build"):
        if not cfg.target_tokenizer:
            raise StageError(f"{cfg.mode} mode needs target_tokenizer (the English tokenizer folder)")
        tgt_tok = load_tokenizer(cfg.target_tokenizer)
        if cfg.mode == "scratch":   # the source's architecture, the new vocabulary
            _check_family(load_tokenizer(cfg.source), tgt_tok)
            config = AutoConfig.from_pretrained(resolve_pretrained(cfg.source))
            config.vocab_size = len(tgt_tok)
            config.pad_token_id = tgt_tok.pad_token_id
        else:
            a = cfg.architecture
            config = AutoConfig.for_model(a.model_type, vocab_size=len(tgt_tok), hidden_size=a.hidden_size,
                                          num_hidden_layers=a.num_layers, num_attention_heads=a.num_heads,
                                          intermediate_size=a.intermediate_size,
                                          max_position_embeddings=a.max_position_embeddings,
                                          pad_token_id=tgt_tok.pad_token_id)
            report["architecture"] = a.model_dump()
        set_seed(cfg.seed)
        model = AutoModelForMaskedLM.from_config(config)
        tgt_tok.save_pretrained(str(out))
        model.save_pretrained(str(out))
        report.update(target_vocab_size=len(tgt_tok), source_rows=0, identity_count=0)
        write_json(out / "mapping_report.json", report)
        return TransferResult(str(out), cfg.mode, len(tgt_tok), 0, 0, str(out / "mapping_report.json"),
                              time.time() - t0)

    src_tok = load_tokenizer(cfg.source)
    model, report["mlm_head"] = _load_source(cfg, log)
    emb = model.get_input_embeddings().weight.detach().clone()
    head = model.get_output_embeddings()
    bias = head.bias.detach().clone() if head is not None and head.bias is not None else None
    n_src_rows = emb.shape[0]
    src_tokens = src_tok.convert_ids_to_tokens(list(range(min(len(src_tok), n_src_rows))))
    src_tokens += [None] * (n_src_rows - len(src_tokens))
    src_special = set(_role_ids(src_tok).values()) | set(src_tok.all_special_ids)

    if cfg.mode == "keep":
        row_map = keep_row_map(src_tok, n_src_rows, cfg.keep_vocab_size)
        _write_kept_tokenizer(src_tok, row_map, out)
        new_tok = load_tokenizer(str(out), expected_vocab_size=len(row_map))
        report.update(kept=len(row_map), dropped=n_src_rows - len(row_map))
        ranked, counts = np.arange(len(row_map)), None
    else:
        if not cfg.target_tokenizer:
            raise StageError(f"{cfg.mode} mode needs target_tokenizer (the English tokenizer folder)")
        new_tok = load_tokenizer(cfg.target_tokenizer)
        _check_casing(cfg, src_tok, new_tok)
        _check_family(src_tok, new_tok)
    init = None
    if cfg.mode in INITS:
        init = INITS[cfg.mode](InitInputs(src_tok, new_tok, emb, bias, _role_ids(src_tok), _role_ids(new_tok),
                                          cfg.seed, cfg, log))
        new_tok.save_pretrained(str(out))
        row_map, ranked, counts = init.source_row, np.arange(len(new_tok)), None
        report.update(init_details=init.details)
    elif cfg.mode != "keep":
        if not cfg.target_counts:
            raise StageError(f"{cfg.mode} mode needs target_counts (English token counts)")
        counts = np.load(cfg.target_counts)
        src_counts = np.load(cfg.source_counts) if cfg.source_counts else None
        shuffle = cfg.seed if cfg.mode == "random-map" else None
        row_map, ranked, source_ranked = frequency_row_map(src_tok, n_src_rows, new_tok, counts, src_counts,
                                                           shuffle_seed=shuffle, grow=cfg.grow_embeddings,
                                                           rank=cfg.rank)
        new_tok.save_pretrained(str(out))
        chars = character_share(source_ranked, src_tokens)
        report.update(rank=cfg.rank, new_rows=int((row_map == NEW_ROW).sum()),
                      source_ranking="source corpus counts" if cfg.rank == "counts" else "source vocab order",
                      target_ranking="vocab order" if cfg.rank == "vocab-order" else "English corpus counts",
                      source_top100_character_share=chars,
                      unused_source_rows=n_src_rows - len(set(row_map.tolist())),
                      target_tokens_unseen=int((counts[ranked] == 0).sum()))
        if chars > CHARACTER_WARNING:
            report["warning"] = (f"{chars:.0%} of the source's 100 top-ranked rows are single characters "
                                 f"(rank: {cfg.rank}); frequent English tokens will take character rows. "
                                 + ("Rank both sides by counts (rank: counts with a source_corpus) or by vocab "
                                    "order (rank: vocab-order)." if cfg.rank == "hybrid" else
                                    "Check that the source counts come from a source-language corpus."
                                    if cfg.rank == "counts" else "Both sides are in id order, so characters "
                                    "take characters; rank: counts aligns words by frequency instead."))
            log(f"[transfer] warning: {report['warning']}")

    model.resize_token_embeddings(len(row_map), mean_resizing=False)
    with torch.no_grad():
        if init is not None:
            weights, new_bias, how = init.weights, init.bias, init.how
        else:   # a row map: every target row is one source row, or a new one
            idx = torch.as_tensor(row_map).clamp(min=0)
            new = torch.as_tensor(row_map == NEW_ROW)
            weights = emb[idx]
            if new.any():  # BERT's own init for rows that have no source counterpart
                gen = torch.Generator().manual_seed(cfg.seed)
                std = getattr(model.config, "initializer_range", 0.02)
                weights[new] = torch.randn(int(new.sum()), emb.shape[1], generator=gen) * std
            new_bias = torch.where(new, torch.zeros(()), bias[idx]) if bias is not None else None
            how = np.where(row_map == NEW_ROW, RANDOM, COPIED).astype(np.int8)
        model.get_input_embeddings().weight.copy_(weights)
        if bias is not None and new_bias is not None:
            model.get_output_embeddings().bias.copy_(new_bias)
    model.config.vocab_size = len(row_map)
    model.config.pad_token_id = new_tok.pad_token_id
    model.tie_weights()
    model.save_pretrained(str(out))
    save_npy(out / "row_map.npy", row_map)

    new_tokens = new_tok.convert_ids_to_tokens(list(range(len(new_tok))))
    new_roles = _role_ids(new_tok)
    new_special = set(new_roles.values()) | set(new_tok.all_special_ids)
    # Ordinary tokens whose row is the source row of the same string; specials match by role and are counted
    # apart, so a count of 5 on a BERT vocabulary no longer reads as "5 words kept their rows".
    identity = sum(1 for i, (t, r) in enumerate(zip(new_tokens, row_map))
                   if i not in new_special and r >= 0 and int(r) not in src_special and src_tokens[int(r)] == t)
    if init is None:
        how[sorted(new_special)] = SPECIAL

    def source_of(tid: int):
        return src_tokens[int(row_map[tid])] if row_map[tid] >= 0 else None   # random-normal: no source row

    report.update(
        source_rows=n_src_rows, target_vocab_size=len(row_map), identity_count=int(identity),
        special_identity_count=sum(1 for r in ROLES if source_of(new_roles[r]) == new_tokens[new_roles[r]]),
        special_tokens={r: {"target_id": new_roles[r], "target": new_tokens[new_roles[r]],
                            "source_row": int(row_map[new_roles[r]]), "source": source_of(new_roles[r])}
                        for r in ROLES},
        diagnostics=diagnostics(weights, how, row_map, emb, new_tokens, src_tokens, new_special))
    if init is None:   # rank alignment: only a row map has one
        report.update(same_kind=kind_report(ranked, row_map, new_tokens, src_tokens),
                      bands=_rank_bands(ranked, row_map, new_tokens, src_tokens, counts))
    write_json(out / "mapping_report.json", report)
    return TransferResult(str(out), cfg.mode, len(row_map), n_src_rows, int(identity),
                          str(out / "mapping_report.json"), time.time() - t0)
