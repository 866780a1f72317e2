"""Probing features: one vector per treebank word and layer, computed once per (model, dataset, layer set).

The structural probe (stages/probe.py) trains one small linear map per layer, for many epochs, so the
encoder's hidden states are computed once here and stored, instead of running BERT again in every epoch.
Words are found by character offsets (stages/pooling.py), so the same code serves every vocabulary: the
English WordPiece, a kept source vocabulary, a cased or an uncased one.

Layout under `output_dir` (float16: half the disk and RAM of float32, far more precision than a probe needs):

    features.json              meta: model, layers, hidden size, per-split sentence/word/skip counts
    {split}/layer{k}.npy       float16 [total_words, hidden]; row offset+i is word i of a sentence
    {split}/sentences.json     per kept sentence: words, heads, upos, deprels and its row offset

Layer 0 is the embedding output and layer k the output of transformer layer k (transformers'
`hidden_states` order). The whole folder is written under a temporary name and moved into place at the end,
so a crash never leaves a folder that looks finished.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Mapping, Sequence

import numpy as np
import torch

from pydantic import model_validator

from stages.common import resolve_pretrained  # hub ids: cache first, one clear error offline
from stages.common import (MixedPrecision, StageConfig, StageError, check_model_fits, configure_threads, pick_device,
                           pad_batch, quiet_transformers, read_json, replace_dir, resolve_mixed_precision, setting,
                           write_json)
from stages.pooling import join_words, pool, token_groups
from stages.tokenizer import load_tokenizer

HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
# Models whose position ids start after the padding index, so two position rows are never used for text.
_OFFSET_POSITION_MODELS = ("roberta", "xlm-roberta", "camembert")
LOG_EVERY_SECONDS = 30.0


# --- treebank reading ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TreeSentence:
    """One dependency tree over syntactic words; heads are 1-based with 0 for the root, as in CoNLL-U."""
    words: tuple[str, ...]
    heads: tuple[int, ...]
    upos: tuple[str, ...]
    deprels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.words)


@dataclass(frozen=True)
class StoredSentence(TreeSentence):
    """A sentence as stored with its features: word i is row `offset + i` of every layer array."""
    offset: int = 0


def _check_tree(heads: Sequence[int], where: str) -> None:
    """Heads in range, exactly one root and no cycle: otherwise tree distances are undefined."""
    n = len(heads)
    bad = [i + 1 for i, h in enumerate(heads) if not 0 <= h <= n or h == i + 1]
    if bad:
        raise StageError(f"{where}: word(s) {bad} have a head outside 0..{n} or point at themselves; "
                         "fix the HEAD column (0 = root, otherwise the ID of a word in the same sentence)")
    roots = [i + 1 for i, h in enumerate(heads) if h == 0]
    if len(roots) != 1:
        raise StageError(f"{where}: the sentence has {len(roots)} roots (words {roots}); a dependency tree needs "
                         "exactly one word with HEAD 0")
    for start in range(n):
        seen, node = set(), start
        while heads[node] != 0:
            if node in seen:
                raise StageError(f"{where}: the heads form a cycle through word {start + 1}; fix the HEAD column")
            seen.add(node)
            node = heads[node] - 1


def read_conllu(path: str | Path) -> tuple[list[TreeSentence], dict[str, int]]:
    """Sentences of a CoNLL-U file, and how many lines were skipped, by reason.

    Multiword token lines (ID `3-4`) are skipped and their syntactic words kept, since the tree is over
    syntactic words; empty nodes (ID `8.1`) belong to enhanced dependencies only and are skipped too.
    Non-projective trees need nothing special. A malformed line stops the read with file and line number.
    """
    path = Path(path)
    if not path.is_file():
        raise StageError(f"CoNLL-U file {path} does not exist; give the path of a .conllu file "
                         "(e.g. en_ewt-ud-train.conllu from Universal Dependencies)")
    sentences: list[TreeSentence] = []
    skipped = {"multiword_token_lines": 0, "empty_node_lines": 0}
    rows: list[tuple[str, int, str, str]] = []
    first_line = 0

    def finish() -> None:
        if rows:
            heads = [r[1] for r in rows]
            _check_tree(heads, f"{path}, sentence starting at line {first_line}")
            sentences.append(TreeSentence(tuple(r[0] for r in rows), tuple(heads),
                                          tuple(r[2] for r in rows), tuple(r[3] for r in rows)))
        rows.clear()

    # utf-8-sig: a byte order mark, which some editors write, would otherwise glue itself to the first ID.
    with open(path, encoding="utf-8-sig") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                finish()
                continue
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise StageError(f"{path}, line {lineno}: expected 10 tab-separated columns, found {len(cols)}; "
                                 "CoNLL-U separates ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC with tabs")
            wid = cols[0]
            if "-" in wid:
                skipped["multiword_token_lines"] += 1
                continue
            if "." in wid:
                skipped["empty_node_lines"] += 1
                continue
            if not rows:
                first_line = lineno
            try:
                wid_int, head = int(wid), int(cols[6])
            except ValueError:
                raise StageError(f"{path}, line {lineno}: ID {wid!r} and HEAD {cols[6]!r} must be integers for a "
                                 "syntactic word; fix the line (multiword tokens use 3-4, empty nodes 8.1)") from None
            if wid_int != len(rows) + 1:
                raise StageError(f"{path}, line {lineno}: word ID {wid_int} should be {len(rows) + 1}; word IDs run "
                                 "1, 2, 3, ... in each sentence, and a blank line ends a sentence")
            if not cols[1]:
                raise StageError(f"{path}, line {lineno}: the FORM column is empty; every word needs its text")
            rows.append((cols[1], head, cols[3], cols[7]))
    finish()
    return sentences, skipped


def _hub_sentences(dataset: str, config: str, split: str) -> tuple[list[TreeSentence], dict[str, int]]:
    """A split of a hub treebank in the `universal_dependencies` layout (tokens, head as strings, upos ids)."""
    hub_split = HUB_SPLITS.get(split, split)
    try:
        from datasets import load_dataset

        ds = load_dataset(dataset, config, split=hub_split)
    except Exception as e:  # offline, script datasets no longer supported, bad cache: one answer for all
        raise StageError(f"cannot load {dataset!r} config {config!r} split {hub_split!r} from the hub: "
                         f"{type(e).__name__}: {e}. Give local CoNLL-U files instead: set splits to "
                         "{train: .../en_ewt-ud-train.conllu, dev: ...-dev.conllu, test: ...-test.conllu}") from e
    missing = [c for c in ("tokens", "head", "upos") if c not in ds.column_names]
    if missing:
        raise StageError(f"hub dataset {dataset!r} has no column(s) {missing}; it must follow the "
                         "universal_dependencies layout (tokens, head, upos, deprel), or give local CoNLL-U files")
    upos_feature = ds.features["upos"]
    names = getattr(getattr(upos_feature, "feature", None), "names", None)  # ClassLabel ids -> UPOS strings
    sentences, skipped = [], {"tokens_without_head": 0}
    for n, row in enumerate(ds):
        words, heads, upos, deprels = [], [], [], []
        for i, (tok, head) in enumerate(zip(row["tokens"], row["head"])):
            try:
                h = int(head)
            except (TypeError, ValueError):
                # Multiword tokens and empty nodes carry no integer head; syntactic word IDs skip them anyway.
                skipped["tokens_without_head"] += 1
                continue
            tag = row["upos"][i]
            words.append(tok)
            heads.append(h)
            upos.append(names[tag] if names is not None and isinstance(tag, int) else str(tag))
            deprels.append(row["deprel"][i] if "deprel" in row else "_")
        if words:
            _check_tree(heads, f"{dataset}/{config} {hub_split} row {n}")
            sentences.append(TreeSentence(tuple(words), tuple(heads), tuple(upos), tuple(deprels)))
    return sentences, skipped


# --- config and result -----------------------------------------------------------------------------
class FeaturesSettings(StageConfig):
    """How hidden states of the probing treebank are extracted: the sweep's `probe.features` section."""
    hub_dataset: str | None = setting(None, "instead of CoNLL-U files: a hub treebank, e.g. universal_dependencies")
    hub_config: str = setting("en_ewt", "its config")
    pooling: Literal["mean", "first", "last"] = setting("mean", "subwords -> word: mean (Hewitt & Manning), first "
                                                                "or last subword")
    max_length: int = setting(512, "tokens incl. specials; longer sentences are skipped (and counted), not cut",
                              ge=3)
    batch_size: int = setting(32, "sentences per forward pass", ge=1)
    max_sentences: int | None = setting(None, "per split: only the first N sentences (quick runs)", ge=1)
    mixed_precision: MixedPrecision = setting("auto", "autocast on GPU; stored arrays are float16 either way")


class FeaturesConfig(FeaturesSettings):
    model: str = setting(doc="folder or hub id (an MLM checkpoint loads; the head is dropped)")
    output_dir: str = setting(doc="one float16 array per split and layer, and sentences.json")
    splits: dict[str, str] = setting({}, "CoNLL-U file per split: {train: ..., dev: ..., test: ...}")
    layers: list[int] | None = setting(None, "0 = embedding output, k = output of layer k; null: all")
    num_threads: int | None = setting(None, "torch CPU threads (configure_threads)", hashed=False)

    @model_validator(mode="after")
    def _one_source(self):
        if bool(self.splits) == bool(self.hub_dataset):
            raise ValueError("give exactly one source: splits (local CoNLL-U files by split name) or hub_dataset")
        return self


@dataclass(frozen=True)
class FeaturesResult:
    output_dir: str
    layers: tuple[int, ...]
    hidden_size: int
    sentences: dict[str, int]                    # kept sentences per split
    words: dict[str, int]                        # rows of each split's arrays
    skipped: dict[str, dict[str, int]]           # per split, by reason
    seconds: float


def _resolve_layers(requested: Iterable[int] | None, num_layers: int) -> tuple[int, ...]:
    if requested is None:
        return tuple(range(num_layers + 1))
    layers = tuple(sorted({int(k) for k in requested}))
    bad = [k for k in layers if not 0 <= k <= num_layers]
    if not layers or bad:
        raise StageError(f"probe.layers {list(requested)} must be non-empty and within 0..{num_layers} for this "
                         f"model ({num_layers} layers; 0 = embedding output, {num_layers} = last layer); "
                         f"set probe.layers to e.g. [0, {num_layers // 2}, {num_layers}]")
    return layers


def _model_max_tokens(config) -> int | None:
    max_pos = getattr(config, "max_position_embeddings", None)
    if max_pos is None:
        return None
    if getattr(config, "model_type", "") in _OFFSET_POSITION_MODELS:
        return max_pos - 2
    return max_pos


def _load_encoder(name: str, tokenizer):
    from transformers import AutoModel

    try:
        # dtype=float32: transformers 5 would keep a checkpoint's saved bf16/fp16; precision is autocast's job.
        model = AutoModel.from_pretrained(resolve_pretrained(name), dtype=torch.float32, output_hidden_states=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise StageError(f"cannot load {name!r} as an encoder: {e}. Give a folder written by save_pretrained "
                         "(e.g. the pretrain stage's model/) or a hub id of a BERT-like encoder") from e
    check_model_fits(model, tokenizer, None, name, "run the transfer stage so model and tokenizer match")
    return model


# --- writing -----------------------------------------------------------------------------------------
def _sentence_record(s: TreeSentence, offset: int) -> dict:
    return {"words": list(s.words), "heads": list(s.heads), "upos": list(s.upos), "deprels": list(s.deprels),
            "offset": offset}


def _write_sentences(folder: Path, sentences: Sequence[TreeSentence], offsets: Sequence[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # Compact JSON: UD EWT's train split is ~200K words, and one indented line per word is 5x the size.
    with open(folder / "sentences.json", "w") as f:
        json.dump({"sentences": [_sentence_record(s, o) for s, o in zip(sentences, offsets)]}, f,
                  separators=(",", ":"), ensure_ascii=False)


def _new_layer_array(path: Path, rows: int, hidden: int) -> np.ndarray:
    # A memmap keeps UD-sized train splits x 13 layers out of RAM; numpy cannot map a zero-length file.
    if rows == 0:
        arr = np.zeros((0, hidden), dtype=np.float16)
        np.save(path, arr)
        return arr
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, hidden))


def _tmp_dir_for(out: Path) -> Path:
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a crashed run; never trusted
    tmp.mkdir(parents=True)
    return tmp


def write_features_dir(output_dir: str | Path, hidden_size: int,
                       splits: Mapping[str, tuple[Sequence[TreeSentence], Mapping[int, np.ndarray]]],
                       meta: Mapping | None = None) -> Path:
    """Write already computed word vectors in the features layout (baselines, controls, tests).

    `splits` maps a split name to (sentences, {layer: float array [sum of sentence lengths, hidden_size]}).
    Every split must have the same layers.
    """
    out = Path(output_dir)
    layer_sets = {tuple(sorted(arrays)) for _, arrays in splits.values()}
    if len(layer_sets) != 1:
        raise StageError(f"write_features_dir: every split needs the same layers, got {sorted(layer_sets)}")
    layers = layer_sets.pop()
    tmp = _tmp_dir_for(out)
    counts, words = {}, {}
    for split, (sentences, arrays) in splits.items():
        offsets = np.cumsum([0] + [len(s) for s in sentences]).tolist()
        for k, arr in arrays.items():
            if arr.shape != (offsets[-1], hidden_size):
                raise StageError(f"write_features_dir: {split} layer {k} has shape {arr.shape}, expected "
                                 f"({offsets[-1]}, {hidden_size}) for these sentences")
            (tmp / split).mkdir(parents=True, exist_ok=True)
            np.save(tmp / split / f"layer{k}.npy", np.asarray(arr, dtype=np.float16))
        _write_sentences(tmp / split, sentences, offsets[:-1])
        counts[split], words[split] = len(sentences), offsets[-1]
    write_json(tmp / "features.json", {**(meta or {}), "layers": list(layers), "hidden_size": hidden_size,
                                       "splits": sorted(splits), "sentences": counts, "words": words})
    replace_dir(tmp, out)
    return out


# --- extraction --------------------------------------------------------------------------------------
@dataclass
class _Encoded:
    index: int                      # position among the split's kept sentences
    input_ids: list[int]
    token_type_ids: list[int] | None
    groups: list[list[int]]         # token indices of each word


def _encode_split(tokenizer, sentences: Sequence[TreeSentence], max_tokens: int,
                  skipped: dict[str, int]) -> tuple[list[TreeSentence], list[_Encoded]]:
    kept, encoded = [], []
    with_types = "token_type_ids" in tokenizer.model_input_names
    skipped.setdefault("sentences_too_long", 0)
    skipped.setdefault("sentences_word_without_tokens", 0)
    for s in sentences:
        text, spans = join_words(s.words)
        # No truncation: a cut sentence would silently lose words; too-long ones are skipped and counted.
        enc = tokenizer(text, return_offsets_mapping=True, truncation=False)
        if len(enc["input_ids"]) > max_tokens:
            skipped["sentences_too_long"] += 1
            continue
        groups = token_groups(enc["offset_mapping"], spans)
        if any(not g for g in groups):
            # e.g. a word of characters the normalizer deletes (control or zero-width characters).
            skipped["sentences_word_without_tokens"] += 1
            continue
        encoded.append(_Encoded(len(kept), list(enc["input_ids"]),
                                list(enc["token_type_ids"]) if with_types and "token_type_ids" in enc else None,
                                groups))
        kept.append(s)
    return kept, encoded


def _autocast(device: torch.device, precision: str):
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


def _run_split(model, tokenizer, encoded: list[_Encoded], offsets: list[int], arrays: dict[int, np.ndarray],
               layers: tuple[int, ...], cfg: FeaturesConfig, device: torch.device, precision: str,
               split: str, log: Callable[[str], None]) -> None:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # Batches of similar length waste little on padding; results go to each sentence's own rows anyway.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    t0 = last_log = time.perf_counter()
    done = 0
    for start in range(0, len(order), cfg.batch_size):
        batch = [encoded[i] for i in order[start:start + cfg.batch_size]]
        types = [e.token_type_ids for e in batch] if batch[0].token_type_ids is not None else None
        inputs = {k: v.to(device) for k, v in pad_batch([e.input_ids for e in batch], types, pad).items()}
        with torch.no_grad(), _autocast(device, precision):
            hidden_states = model(**inputs).hidden_states
        stacked = torch.stack([hidden_states[k] for k in layers], dim=2).float()  # [b, tokens, L, d]
        del hidden_states                     # the layers not asked for are freed before pooling
        n, width, n_layers, d = stacked.shape
        # One pooling call for the whole batch and all layers (the batch's tokens as one sequence, the layers
        # side by side as one wide vector per token), then one copy to the host: no sync per sentence.
        groups = [[b * width + t for t in g] for b, e in enumerate(batch) for g in e.groups]
        words = pool(stacked.reshape(n * width, n_layers * d), groups, cfg.pooling)
        words = words.reshape(len(groups), n_layers, d).cpu().numpy().astype(np.float16)
        first = 0
        for e in batch:
            row = offsets[e.index]
            for j, k in enumerate(layers):
                arrays[k][row:row + len(e.groups)] = words[first:first + len(e.groups), j]
            first += len(e.groups)
        done += len(batch)
        now = time.perf_counter()
        if now - last_log >= LOG_EVERY_SECONDS or done == len(order):
            log(f"[features] {split}: {done:,}/{len(order):,} sentences, {done / max(now - t0, 1e-9):.1f} sentences/s")
            last_log = now


def extract_features(cfg: FeaturesConfig, log: Callable[[str], None] = print) -> FeaturesResult:
    quiet_transformers()  # the MLM -> encoder load would print a LOAD REPORT of dropped head weights
    t_start = time.time()
    configure_threads(cfg.num_threads)

    # Read every split first: a malformed test file should fail before minutes of train extraction.
    split_names = list(cfg.splits) if cfg.splits else list(HUB_SPLITS)
    treebanks: dict[str, tuple[list[TreeSentence], dict[str, int]]] = {}
    for split in split_names:
        if cfg.splits:
            sentences, skipped = read_conllu(cfg.splits[split])
            source = cfg.splits[split]
        else:
            sentences, skipped = _hub_sentences(cfg.hub_dataset, cfg.hub_config, split)
            source = f"{cfg.hub_dataset}/{cfg.hub_config}"
        if not sentences:
            raise StageError(f"split {split!r} ({source}) has no sentences; give a CoNLL-U file with trees")
        if cfg.max_sentences is not None:
            sentences = sentences[:cfg.max_sentences]
        treebanks[split] = (sentences, dict(skipped))

    tokenizer = load_tokenizer(cfg.model)
    model = _load_encoder(cfg.model, tokenizer)
    layers = _resolve_layers(cfg.layers, model.config.num_hidden_layers)
    hidden = int(model.config.hidden_size)
    model_max = _model_max_tokens(model.config)
    max_tokens = min(cfg.max_length, model_max) if model_max else cfg.max_length
    device = pick_device()
    precision = resolve_mixed_precision(cfg.mixed_precision)
    model.to(device).eval()
    log(f"[features] {cfg.model}: layers {list(layers)}, hidden {hidden}, {cfg.pooling} pooling, "
        f"max {max_tokens} tokens, precision {precision}, on {device.type}")

    out = Path(cfg.output_dir)
    tmp = _tmp_dir_for(out)
    counts, words, skipped_all = {}, {}, {}
    for split, (sentences, skipped) in treebanks.items():
        kept, encoded = _encode_split(tokenizer, sentences, max_tokens, skipped)
        offsets = np.cumsum([0] + [len(s) for s in kept]).tolist()
        if skipped["sentences_too_long"] or skipped["sentences_word_without_tokens"]:
            log(f"[features] {split}: skipped {skipped['sentences_too_long']} sentence(s) longer than {max_tokens} "
                f"tokens and {skipped['sentences_word_without_tokens']} with a word that has no tokens")
        if not kept:
            log(f"[features] WARNING {split}: no sentence left to encode; the probe cannot use this split")
        (tmp / split).mkdir()
        arrays = {k: _new_layer_array(tmp / split / f"layer{k}.npy", offsets[-1], hidden) for k in layers}
        _run_split(model, tokenizer, encoded, offsets, arrays, layers, cfg, device, precision, split, log)
        for arr in arrays.values():
            if isinstance(arr, np.memmap):
                arr.flush()
        del arrays  # closes the memmaps before the folder is moved
        _write_sentences(tmp / split, kept, offsets[:-1])
        counts[split], words[split], skipped_all[split] = len(kept), offsets[-1], skipped

    result = FeaturesResult(output_dir=str(out), layers=layers, hidden_size=hidden, sentences=counts, words=words,
                            skipped=skipped_all, seconds=time.time() - t_start)
    write_json(tmp / "features.json", {"model": cfg.model, "layers": list(layers), "hidden_size": hidden,
                                       "splits": list(treebanks), "sentences": counts, "words": words,
                                       "skipped": skipped_all, "pooling": cfg.pooling, "max_tokens": max_tokens,
                                       "config": {k: (dict(v) if isinstance(v, Mapping) else v)
                                                  for k, v in cfg.__dict__.items()},
                                       "seconds": result.seconds})
    replace_dir(tmp, out)
    log(f"[features] wrote {out}: " + ", ".join(f"{s} {counts[s]:,} sentences / {words[s]:,} words" for s in counts)
        + f" in {result.seconds:.1f}s")
    return result


# --- reading (the probe's side) -------------------------------------------------------------------
def read_features_meta(features_dir: str | Path) -> dict:
    path = Path(features_dir) / "features.json"
    if not path.is_file():
        raise StageError(f"{features_dir} holds no finished features (no features.json); run extract_features "
                         "(stages/features.py) into it first")
    return read_json(path)


def load_split_features(features_dir: str | Path, split: str, layer: int) -> tuple[np.ndarray, list[StoredSentence]]:
    """(read-only memmap float16 [words, hidden], sentences with their row offsets) of one split and layer."""
    meta = read_features_meta(features_dir)
    if split not in meta["splits"]:
        raise StageError(f"{features_dir} has no split {split!r} (it has {meta['splits']}); add it to the "
                         "features config's splits and extract again")
    if layer not in meta["layers"]:
        raise StageError(f"{features_dir} has no layer {layer} (it has {meta['layers']}); add it to probe.layers "
                         "and extract again")
    folder = Path(features_dir) / split
    vectors = np.load(folder / f"layer{layer}.npy", mmap_mode="r")
    records = read_json(folder / "sentences.json")["sentences"]
    sentences = [StoredSentence(tuple(r["words"]), tuple(r["heads"]), tuple(r["upos"]),
                                tuple(r.get("deprels") or ["_"] * len(r["words"])), int(r["offset"]))
                 for r in records]
    end = sentences[-1].offset + len(sentences[-1]) if sentences else 0
    if vectors.shape[0] != end or vectors.ndim != 2:
        raise StageError(f"{folder}/layer{layer}.npy has shape {vectors.shape} but sentences.json needs {end} rows; "
                         "the folder is damaged, extract the features again")
    return vectors, sentences
