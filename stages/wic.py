"""Semantic probing: fine-tune an encoder on Words in Context (WiC, Pilehvar & Camacho-Collados 2019).

The paper (Table 3, Appendix F.2) trains every model on WiC with jiant and reports dev accuracy over 5 seeds.
This module follows jiant's recipe for WiC as a span-comparison task: the two sentences are encoded jointly
([CLS] s1 [SEP] s2 [SEP]), the target word's subword vectors are averaged in each sentence, and a fresh
linear head classifies the pair; the encoder is fine-tuned end to end (AdamW, lr 2e-5, batch 32, 3 epochs
as for GLUE; the model after the last epoch is reported).

Head input: [cls; v1; v2; v1*v2]. jiant's span-comparison head uses the two span vectors; v1*v2 adds their
element-wise agreement, the feature a "same sense?" decision is about (the classifier is linear, so it
could not form a product itself), and [CLS] carries whatever the pair encoding says about the two
contexts as a whole. The raw [CLS] vector is used, not BERT's pooler: an MLM checkpoint has no trained
pooler, and a pooler left unused would leave parameters without gradients (which multi-GPU DDP refuses).

Data comes from the official WiC folders (train/train.data.txt + train.gold.txt, dev/dev.data.txt +
dev.gold.txt; targets given as whitespace-token indices) or the hub's `super_glue`/`wic` (targets given as
character offsets). Both become `WicExample`s with character spans, and the target's subwords are found
through the tokenizer's offsets (stages.pooling.token_groups), so any fast tokenizer works.

Truncation (longest_first at max_length) can cut a target word away. A training example that loses its
target is dropped (counted in the log and in the result). A dev example is never silently dropped: it is
re-encoded truncating only the *other* sentence; if the target still does not fit, it is scored as wrong,
so the accuracy is always over the whole dev set and models stay comparable (real WiC sentences are far
shorter than 128 tokens, so neither happens at the paper's settings).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from stages.common import resolve_pretrained  # hub ids: cache first, one clear error offline
from stages.common import (LengthGroupedBatches, StageError, TrainingSettings, check_model_fits, configure_threads,
                           make_accelerator, make_adamw, pad_batch, quiet_transformers, resolve_mixed_precision,
                           set_seed, setting, write_json)
from stages.pooling import join_words, token_groups
from stages.tokenizer import load_tokenizer

SPLITS = {"train": "train", "dev": "validation"}  # our split name -> hub split name
GOLD = {"T": 1, "F": 0}                          # 1 = same sense, as the hub's ClassLabel [False, True]
ENCODE_CHUNK = 2048
LAYOUT = ("data_dir must be a WiC folder as the official download (WiC_dataset.zip) unpacks: "
          "<data_dir>/train/train.data.txt, <data_dir>/train/train.gold.txt, <data_dir>/dev/dev.data.txt, "
          "<data_dir>/dev/dev.gold.txt; or set data_dir to None to load WiC from the hub")


class WicSettings(TrainingSettings):
    """Words in Context (paper Tables 3 and 11): data and fine-tuning hyperparameters, the sweep's `wic` section."""
    data_dir: str | None = setting(None, "the official WiC folder (train/, dev/); null: the hub")
    hub_dataset: str = setting("super_glue", "hub dataset used when data_dir is null")
    hub_config: str = setting("wic", "its config")


class WicConfig(WicSettings):
    model: str = setting(doc="folder or hub id: load_tokenizer + AutoModel (an MLM checkpoint loads)")
    output_dir: str = setting(doc="eval_results.json")
    seed: int = setting(0, "classifier init, dropout and batch order")
    num_threads: int | None = setting(None, "torch CPU threads (configure_threads)", hashed=False)


@dataclass(frozen=True)
class WicResult:
    accuracy: float          # dev accuracy after the last epoch, over all dev examples (fraction)
    train_examples: int      # training examples actually used (after dropping truncated targets)
    dev_examples: int        # dev examples scored (all of them; unfittable ones count as wrong)
    dropped: int             # training examples dropped because truncation removed a target word
    steps: int
    seconds: float
    output_dir: str
    dev_unfittable: int = 0  # dev examples whose target could not be kept even truncating the other sentence
    padding_fraction: float = 0.0   # share of the training batches' token slots that were padding


@dataclass(frozen=True)
class WicExample:
    word: str                 # the lemma (file layout) or the hub's `word`; informational
    sentence1: str
    sentence2: str
    span1: tuple[int, int]    # character span of the target in sentence1
    span2: tuple[int, int]    # character span of the target in sentence2
    label: int                # 1 = same sense (T / True), 0 = different sense (F / False)


@dataclass(frozen=True)
class EncodedWic:
    input_ids: np.ndarray
    token_type_ids: np.ndarray | None
    groups: tuple[tuple[int, ...], tuple[int, ...]]  # token indices of the target in sentence1 / sentence2
    label: int
    index: int                # position in the split's example list (keeps predictions in order)


# ------------------------------------------------------------------------------------------------------ data

def _read_lines(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise StageError(f"{path} is not UTF-8 text ({e}); re-download WiC") from e
    while lines and not lines[-1].strip():
        lines.pop()  # trailing newlines hold no example
    return lines


def _target_index(raw: str, tokens: list[str], which: str, where: str) -> int:
    try:
        i = int(raw)
    except ValueError:
        raise StageError(f"{where}: target index {raw!r} of {which} is not an integer; the third column must be "
                         "'i-j', the 0-based word indices of the target in sentence1 and sentence2") from None
    if not 0 <= i < len(tokens):
        raise StageError(f"{where}: target index {i} is outside {which}, which has {len(tokens)} whitespace "
                         f"tokens (valid: 0..{len(tokens) - 1}); fix the 'i-j' column of that line")
    return i


def read_wic_folder(data_dir: str | Path, split: str, max_examples: int | None = None) -> list[WicExample]:
    """`split` ("train" or "dev") of an official WiC folder, in file order."""
    if split not in SPLITS:
        raise StageError(f"unknown WiC split {split!r}; use 'train' or 'dev' (the test gold labels are not public)")
    folder = Path(data_dir) / split
    data, gold = folder / f"{split}.data.txt", folder / f"{split}.gold.txt"
    for path in (folder, data, gold):
        if not path.exists():
            raise StageError(f"WiC {'folder' if path == folder else 'file'} {path} does not exist; {LAYOUT}")
    rows, labels = _read_lines(data), _read_lines(gold)
    if len(rows) != len(labels):
        raise StageError(f"{data} has {len(rows)} lines but {gold} has {len(labels)}; the gold file needs exactly "
                         "one T/F per data line, in the same order. Re-download WiC or fix the shorter file")
    out: list[WicExample] = []
    for n, (row, raw_gold) in enumerate(zip(rows, labels), start=1):
        where = f"{data.name} line {n} ({data})"
        cols = row.split("\t")
        if len(cols) != 5:
            raise StageError(f"{where}: expected 5 tab-separated columns (lemma, POS, i-j, sentence1, sentence2), "
                             f"found {len(cols)}; fix that line")
        lemma, _pos, idx, s1, s2 = cols
        parts = idx.split("-")
        if len(parts) != 2:
            raise StageError(f"{where}: the index column {idx!r} must be 'i-j' (two 0-based word indices)")
        toks1, toks2 = s1.split(), s2.split()
        i = _target_index(parts[0].strip(), toks1, "sentence1", where)
        j = _target_index(parts[1].strip(), toks2, "sentence2", where)
        value = raw_gold.strip()
        if value not in GOLD:
            raise StageError(f"{gold.name} line {n} ({gold}): gold label {raw_gold!r} is not T or F; fix that line")
        text1, spans1 = join_words(toks1)
        text2, spans2 = join_words(toks2)
        out.append(WicExample(lemma, text1, text2, spans1[i], spans2[j], GOLD[value]))
        if max_examples is not None and len(out) >= max_examples:
            break
    return out


HUB_COLUMNS = ("word", "sentence1", "sentence2", "start1", "end1", "start2", "end2", "label")


def wic_examples_from_columns(columns, source: str = "hub WiC") -> list[WicExample]:
    """Hub-format rows (a `datasets.Dataset` or a dict of equal-length columns) -> WicExamples.

    start/end are character offsets of the target in each sentence (end exclusive); label 1 = same sense.
    """
    names = columns.column_names if hasattr(columns, "column_names") else list(columns)
    missing = [c for c in HUB_COLUMNS if c not in names]
    if missing:
        raise StageError(f"{source} lacks column(s) {missing}; it has {names}. Use super_glue/wic or a copy "
                         "with the same columns")
    cols = {c: list(columns[c]) for c in HUB_COLUMNS}
    out: list[WicExample] = []
    for r in range(len(cols["label"])):
        word, s1, s2 = cols["word"][r], cols["sentence1"][r], cols["sentence2"][r]
        spans = []
        for k, text in ((1, s1), (2, s2)):
            a, b = int(cols[f"start{k}"][r]), int(cols[f"end{k}"][r])
            if not 0 <= a < b <= len(text):
                raise StageError(f"{source} row {r}: target span start{k}={a}, end{k}={b} is not inside sentence{k} "
                                 f"({len(text)} characters); the offsets must satisfy 0 <= start < end <= length")
            spans.append((a, b))
        label = int(cols["label"][r])
        if label not in (0, 1):
            raise StageError(f"{source} row {r}: label {label} is not 0 or 1 (an unlabelled test split?); "
                             "use the train and validation splits")
        out.append(WicExample(word, s1, s2, spans[0], spans[1], label))
    return out


def _load_hub(split: str, hub_dataset: str, hub_config: str, max_examples: int | None) -> list[WicExample]:
    hub_split = SPLITS[split]
    try:
        from datasets import load_dataset

        ds = load_dataset(hub_dataset, hub_config, split=hub_split)
    except Exception as e:  # offline, unknown dataset, script datasets unsupported: all end the same way
        raise StageError(f"cannot load {hub_dataset!r} config {hub_config!r} split {hub_split!r} from the hub: "
                         f"{type(e).__name__}: {e}. Offline, set data_dir to the unpacked official WiC download "
                         "(train/train.data.txt, train/train.gold.txt, dev/dev.data.txt, dev/dev.gold.txt); with a "
                         "datasets release that no longer runs loading scripts, try hub_dataset='aps/super_glue'"
                         ) from e
    if max_examples is not None:
        ds = ds.select(range(min(max_examples, len(ds))))
    return wic_examples_from_columns(ds, f"hub {hub_dataset}/{hub_config} {hub_split}")


def load_wic_split(split: str, data_dir: str | None, hub_dataset: str = "super_glue", hub_config: str = "wic",
                   max_examples: int | None = None) -> list[WicExample]:
    """WiC "train" or "dev" examples from the official folder (data_dir) or the hub (data_dir None)."""
    if split not in SPLITS:
        raise StageError(f"unknown WiC split {split!r}; use 'train' or 'dev'")
    if max_examples is not None and max_examples < 1:
        raise StageError(f"max_examples must be at least 1 (or None for all), got {max_examples}")
    if data_dir is None:
        examples, source = _load_hub(split, hub_dataset, hub_config, max_examples), f"hub {hub_dataset}/{hub_config}"
    else:
        if not Path(data_dir).is_dir():
            raise StageError(f"WiC folder {data_dir} does not exist; {LAYOUT}")
        examples, source = read_wic_folder(data_dir, split, max_examples), str(data_dir)
    if not examples:
        raise StageError(f"WiC split {split!r} from {source} holds no examples; re-download WiC")
    return examples


# -------------------------------------------------------------------------------------------------- encoding

def _groups_of(enc, b: int, ex: WicExample) -> tuple[list[int], list[int]]:
    offsets, seq_ids = enc["offset_mapping"][b], enc.sequence_ids(b)
    g1 = token_groups(offsets, [ex.span1], seq_ids, sequence=0)[0]
    g2 = token_groups(offsets, [ex.span2], seq_ids, sequence=1)[0]
    return g1, g2


def _encoded(enc, b: int, groups, ex: WicExample, index: int, with_types: bool) -> EncodedWic:
    return EncodedWic(np.asarray(enc["input_ids"][b], dtype=np.int32),
                      np.asarray(enc["token_type_ids"][b], dtype=np.int8) if with_types else None,
                      (tuple(groups[0]), tuple(groups[1])), ex.label, index)


def _refit(tokenizer, ex: WicExample, lost_first: bool, max_length: int, index: int,
           with_types: bool) -> EncodedWic | None:
    """Re-encode truncating only the sentence whose target survived; None if the target still does not fit."""
    try:
        enc = tokenizer([ex.sentence1], [ex.sentence2], truncation="only_second" if lost_first else "only_first",
                        max_length=max_length, return_offsets_mapping=True)
    except Exception:  # the kept sentence alone is longer than max_length
        return None
    if len(enc["input_ids"][0]) > max_length:
        return None
    g1, g2 = _groups_of(enc, 0, ex)
    return _encoded(enc, 0, (g1, g2), ex, index, with_types) if g1 and g2 else None


def encode_wic(tokenizer, examples: Sequence[WicExample], max_length: int, with_types: bool,
               refit: bool = False) -> tuple[list[EncodedWic], list[int]]:
    """Pair-encode examples and locate both targets' subwords.

    Returns the encoded examples and the indices of those whose target was truncated away. With `refit`
    (dev), such an example is first re-encoded truncating only the other sentence; only when that fails too
    is it listed as lost.
    """
    out: list[EncodedWic] = []
    lost: list[int] = []
    for start in range(0, len(examples), ENCODE_CHUNK):
        chunk = examples[start:start + ENCODE_CHUNK]
        enc = tokenizer([e.sentence1 for e in chunk], [e.sentence2 for e in chunk], truncation="longest_first",
                        max_length=max_length, return_offsets_mapping=True)
        for b, ex in enumerate(chunk):
            index = start + b
            g1, g2 = _groups_of(enc, b, ex)
            if g1 and g2:
                out.append(_encoded(enc, b, (g1, g2), ex, index, with_types))
                continue
            fixed = _refit(tokenizer, ex, not g1, max_length, index, with_types) if refit and (g1 or g2) else None
            if fixed is None:
                lost.append(index)
            else:
                out.append(fixed)
    return out, lost


def span_weights(groups: Sequence[Sequence[Sequence[int]]], width: int) -> torch.Tensor:
    """(batch, 2, width) averaging weights: 1/len(group) on each target subword, 0 elsewhere."""
    w = torch.zeros((len(groups), 2, width), dtype=torch.float32)
    for i, pair in enumerate(groups):
        for k, g in enumerate(pair):
            w[i, k, list(g)] = 1.0 / len(g)
    return w


def _collate_fn(pad_id: int):
    def collate(batch: list[EncodedWic]) -> dict[str, torch.Tensor]:
        types = [e.token_type_ids for e in batch] if batch[0].token_type_ids is not None else None
        out = pad_batch([e.input_ids for e in batch], types, pad_id)
        out["span_weights"] = span_weights([e.groups for e in batch], out["input_ids"].shape[1])
        out["labels"] = torch.tensor([e.label for e in batch], dtype=torch.long)
        out["index"] = torch.tensor([e.index for e in batch], dtype=torch.long)
        return out
    return collate


# ------------------------------------------------------------------------------------------------------ model

class WicModel(nn.Module):
    """Encoder + mean-pooled target vectors + a linear head over [cls; v1; v2; v1*v2]."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(getattr(encoder.config, "hidden_dropout_prob", 0.1))
        self.classifier = nn.Linear(4 * hidden, 2)
        nn.init.normal_(self.classifier.weight, std=getattr(encoder.config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids, attention_mask, span_weights, token_type_ids=None, labels=None, index=None):
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        words = torch.einsum("bkt,btd->bkd", span_weights.to(h.dtype), h)  # batched masked mean of each target
        v1, v2 = words[:, 0], words[:, 1]
        logits = self.classifier(self.dropout(torch.cat([h[:, 0], v1, v2, v1 * v2], dim=-1)))
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return loss, logits


def _load_encoder(cfg: WicConfig, tokenizer) -> nn.Module:
    from transformers import AutoModel

    try:
        # float32 master weights whatever dtype the checkpoint was saved in (see stages/finetune.py).
        encoder = AutoModel.from_pretrained(resolve_pretrained(cfg.model), dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as e:
        raise StageError(f"cannot load {cfg.model!r} as an encoder for WiC: {e}. Give a folder written by "
                         "save_pretrained (e.g. the pretrain stage's model/) or a hub id of a BERT-like encoder") from e
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # unused (the head reads the raw [CLS] vector): no gradient-less parameters
    check_model_fits(encoder, tokenizer, cfg.max_length, cfg.model, "run the transfer stage so model and tokenizer match")
    return encoder


def _predict(model, loader, accelerator, n: int) -> np.ndarray:
    """Predicted class per dev example index; -1 (always wrong) for examples that could not be encoded."""
    model.eval()
    preds = np.full(n, -1, dtype=np.int64)
    with torch.no_grad():
        for batch in loader:
            _, logits = model(**{k: v for k, v in batch.items() if k != "labels"})
            pred, index = accelerator.gather_for_metrics((logits.argmax(dim=-1), batch["index"]))
            preds[index.cpu().numpy()] = pred.cpu().numpy()
    model.train()
    return preds


def run_wic(cfg: WicConfig, on_log: Callable[[int, dict[str, float]], None] | None = None,
            log: Callable[[str], None] = print) -> WicResult:
    from sklearn.metrics import accuracy_score
    from transformers import get_linear_schedule_with_warmup

    quiet_transformers()
    t_start = time.time()
    configure_threads(cfg.num_threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(resolve_mixed_precision(cfg.mixed_precision))

    tokenizer = load_tokenizer(cfg.model)
    with_types = "token_type_ids" in tokenizer.model_input_names
    train_examples = load_wic_split("train", cfg.data_dir, cfg.hub_dataset, cfg.hub_config, cfg.max_train_examples)
    dev_examples = load_wic_split("dev", cfg.data_dir, cfg.hub_dataset, cfg.hub_config, cfg.max_eval_examples)
    train_data, train_lost = encode_wic(tokenizer, train_examples, cfg.max_length, with_types)
    dev_data, dev_lost = encode_wic(tokenizer, dev_examples, cfg.max_length, with_types, refit=True)
    if train_lost:
        log(f"[wic] dropped {len(train_lost):,} of {len(train_examples):,} training examples whose target word "
            f"was truncated away at max_length {cfg.max_length}")
    if dev_lost:
        log(f"[wic] WARNING: {len(dev_lost):,} dev examples keep no target word even when only the other sentence "
            f"is truncated at max_length {cfg.max_length}; they are scored as wrong (raise max_length)")
    if not train_data:
        raise StageError(f"no WiC training example keeps both target words at max_length {cfg.max_length}; "
                         "raise max_length")
    gold = np.asarray([e.label for e in dev_examples], dtype=np.int64)

    set_seed(cfg.seed)  # right before the model: the fresh head's initialisation follows the seed
    model = WicModel(_load_encoder(cfg, tokenizer))
    collate = _collate_fn(tokenizer.pad_token_id)
    if cfg.group_by_length:   # batches of similar length, seeded (as GLUE fine-tuning: LengthGroupedBatches)
        batches = LengthGroupedBatches([len(e.input_ids) for e in train_data], cfg.batch_size, cfg.seed)
        train_loader = torch.utils.data.DataLoader(train_data, batch_sampler=batches, collate_fn=collate)
    else:
        train_loader = torch.utils.data.DataLoader(train_data, batch_size=cfg.batch_size, shuffle=True,
                                                   collate_fn=collate,
                                                   generator=torch.Generator().manual_seed(cfg.seed))
    loaders = [train_loader]
    if dev_data:   # in length order: predictions are put back in place by each example's index
        loaders.append(torch.utils.data.DataLoader(sorted(dev_data, key=lambda e: len(e.input_ids)),
                                                   batch_size=cfg.eval_batch_size, shuffle=False, collate_fn=collate))
    optimizer = make_adamw(model, cfg.learning_rate, cfg.weight_decay)
    model, optimizer, *loaders = accelerator.prepare(model, optimizer, *loaders)
    train_loader, dev_loader = loaders[0], (loaders[1] if dev_data else None)
    steps_per_epoch = len(train_loader)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    world = accelerator.num_processes
    scheduler = accelerator.prepare(get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * total_steps) * world, total_steps * world))

    log(f"[wic] {cfg.model}: {len(train_data):,} train examples, {len(dev_examples):,} dev; {total_steps} steps x "
        f"{cfg.batch_size} ({cfg.epochs:g} epochs), seed {cfg.seed}, precision {accelerator.mixed_precision}")

    step = 0
    window_loss = torch.zeros((), device=accelerator.device)
    window_steps = 0
    tokens = torch.zeros((), dtype=torch.long, device=accelerator.device)   # real tokens, summed without a sync
    slots = 0                                                                # padded token slots
    accuracy = 0.0
    preds = np.full(len(dev_examples), -1, dtype=np.int64)
    epoch_metrics: list[dict[str, float]] = []
    model.train()
    for epoch in range(num_epochs):
        for batch in train_loader:
            loss, _ = model(**{k: v for k, v in batch.items() if k != "index"})
            accelerator.backward(loss)
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += batch["attention_mask"].sum()
            slots += batch["attention_mask"].numel()
            window_loss += loss.detach().float()
            window_steps += 1
            if step % cfg.log_every == 0 or step == total_steps:
                if on_log:
                    on_log(step, {"train/loss": float(window_loss) / window_steps,
                                  "train/lr": scheduler.get_last_lr()[0],
                                  "train/padding_fraction": 1 - float(tokens) / max(1, slots)})
                window_loss.zero_()
                window_steps = 0
            if step == total_steps:
                break
        if dev_loader is not None:
            preds = _predict(model, dev_loader, accelerator, len(dev_examples))
        accuracy = float(accuracy_score(gold, preds))
        epoch_metrics.append({"accuracy": accuracy})
        log(f"[wic] epoch {epoch + 1}/{num_epochs} step {step}: dev accuracy {accuracy:.4f}")
        if on_log:
            on_log(step, {"eval/accuracy": accuracy})

    result = WicResult(accuracy=accuracy, train_examples=len(train_data), dev_examples=len(dev_examples),
                       dropped=len(train_lost), steps=step, seconds=time.time() - t_start, output_dir=str(out),
                       dev_unfittable=len(dev_lost), padding_fraction=1 - float(tokens) / max(1, slots))
    if accelerator.is_main_process:
        write_json(out / "eval_results.json", {**asdict(result), "config": cfg.model_dump(), "epoch_metrics": epoch_metrics,
                                               "dev_predictions": preds.tolist()})
    return result
