"""Stage 3: continued masked-language-model pretraining with Accelerate (the paper's Table 5 defaults).

Text is packed into fixed blocks ([CLS] + block_size-2 tokens + [SEP], documents separated by [SEP]),
so no batch holds padding. 15% of positions are chosen for prediction (80% [MASK], 10% random token,
10% unchanged), no NSP. The loss is computed only at the chosen positions: the vocabulary projection of
the other 85% is work whose result is thrown away. Batch order and masks are functions of
(seed, step), so a run resumed from a checkpoint continues exactly as an uninterrupted one would.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from pydantic import model_validator

import numpy as np
import torch
import torch.nn.functional as F

from stages.common import resolve_pretrained  # hub ids: cache first, one clear error offline
from stages.common import (MixedPrecision, Number, StageConfig, StageError, configure_threads, make_accelerator, make_adamw, quiet_transformers,
                           read_json, replace_dir, resolve_mixed_precision, set_seed, setting,
                           sha256_file, write_json)
from stages.corpus import CorpusConfig, load_token_cache, tokenize_to_cache
from stages.tokenizer import load_tokenizer


class PretrainSettings(StageConfig):
    """Continued-pretraining hyperparameters (paper Table 5 defaults): the sweep's `pretrain` section."""
    learning_rate: Number = setting(5e-5, "peak AdamW learning rate", gt=0)
    batch_size: int = setting(128, "effective batch: sequences per optimizer step", ge=1)
    per_device_batch_size: int = setting(32, "micro-batch; the rest of the batch is gradient accumulation", ge=1)
    block_size: int = setting(128, "tokens per packed sequence, [CLS] and [SEP] included", ge=8)
    mlm_probability: Number = setting(0.15, "share of positions chosen for prediction", gt=0, lt=1)
    epochs: Number = setting(1.0, "passes over the corpus (when max_steps is null)", gt=0)
    max_steps: int | None = setting(None, "a step budget; overrides epochs when set", ge=1)
    warmup_steps: int = setting(0, "linear warm-up steps, then linear decay to 0", ge=0)
    weight_decay: Number = setting(0.0, "AdamW weight decay (not on biases and LayerNorm)", ge=0)
    max_grad_norm: Number = setting(1.0, "gradient clipping norm; 0 turns clipping off", ge=0)
    eval_fraction: Number = setting(0.01, "share of blocks held out for MLM loss / perplexity", ge=0, lt=1)
    max_eval_blocks: int = setting(512, "at most this many held-out blocks", ge=0)
    mixed_precision: MixedPrecision = setting("auto", "auto: bf16 (or fp16) on GPU, fp32 on CPU")
    eval_every: int = setting(1000, "held-out evaluation every N steps (at a logging step; always at the end)",
                              hashed=False, ge=1)
    log_every: int = setting(50, "training metrics every N steps", hashed=False, ge=1)
    checkpoint_every: int = setting(1000, "resumable checkpoint every N steps", hashed=False, ge=1)
    # Unhashed: the same computation, fused into other kernels (its last bits may differ).
    compile: bool = setting(False, "torch.compile the model's training forward (GPU: fewer kernel launches; on "
                                   "CPU it costs more than it saves)", hashed=False)

    @model_validator(mode="after")
    def _whole_micro_batches(self):
        if self.batch_size % self.per_device_batch_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of per_device_batch_size "
                             f"{self.per_device_batch_size}; change one of them")
        return self


class PretrainConfig(PretrainSettings):
    init_model: str = setting(doc="folder (or hub id) with an MLM model and its tokenizer")
    corpus: CorpusConfig = setting(doc="the text pretrained on")
    output_dir: str = setting(doc="checkpoints and the final model/ folder")
    cache_dir: str = setting(doc="tokenized corpora, shared by every node of a sweep")
    seed: int = setting(0, "batch order, masks and dropout")
    num_threads: int | None = setting(None, "torch CPU threads (configure_threads)", hashed=False)
    # A learning-curve segment (the sweep's learning_curve section): the same run, cut at a share of its budget.
    stop_at_fraction: float | None = setting(None, "stop at this share of the step budget (a learning-curve point): "
                                                   "export model/ and a resumable checkpoint there", gt=0, lt=1,
                                         added=True)
    resume_from: str | None = setting(None, "the checkpoint folder to start from when output_dir has none of its "
                                            "own: the previous segment's (learning curves)", added=True)
    extra_tokens: int = setting(0, "tokens added to the budget: ceil(extra / (batch_size x block_size)) more steps "
                                   "(experiments.scratch_budget: match)", ge=0, added=True)


@dataclass(frozen=True)
class PretrainResult:
    model_dir: str
    steps: int
    tokens_seen: int
    train_loss: float
    eval_loss: float
    eval_perplexity: float
    eval_accuracy: float              # top-1 accuracy at the held-out masked positions
    tokens_per_s: float               # real (non-pad) tokens per second of the training loop itself
    padding_fraction: float
    resumed_from_step: int
    seconds: float
    start_step: int = 0               # where this node began: 0, or the step of its resume_from checkpoint


class SparseMLM(torch.nn.Module):
    """MLM loss evaluated only at the predicted positions (a wrapper so Accelerate/DDP see one forward).

    The positions come as flat indices into the (batch x block) grid, padded to a fixed count with targets
    of -100 (`MaskedBatch`), computed on the host where the masks are drawn: gathering them on the device
    needs no boolean-mask indexing, whose output size the host must wait for (a device-to-host sync per
    micro-batch), and the shapes stay the same from step to step."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
        if self.head is None:
            raise StageError(f"{type(model).__name__} has no MLM head (`cls` or `lm_head`)")

    def masked_logits(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits at `positions` (flat indices into input_ids) only."""
        hidden = self.model.base_model(input_ids=input_ids).last_hidden_state
        return self.head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.masked_logits(input_ids, positions)
        return F.cross_entropy(logits.float(), targets, ignore_index=-100)


@dataclass(frozen=True)
class MaskedBatch:
    """One masked micro-batch, ready to copy to the device: the masked ids, the flat positions chosen for
    prediction padded to a fixed count (`slots`) with position 0, and their targets (-100 at the padding)."""
    input_ids: torch.Tensor
    positions: torch.Tensor
    targets: torch.Tensor
    pad_tokens: int              # [PAD] tokens in the ids before masking (packed blocks have none)

    def to(self, device, non_blocking: bool = False) -> "MaskedBatch":
        return MaskedBatch(*(t.to(device, non_blocking=non_blocking) for t in
                             (self.input_ids, self.positions, self.targets)), self.pad_tokens)

    def pin_memory(self) -> "MaskedBatch":
        return MaskedBatch(self.input_ids.pin_memory(), self.positions.pin_memory(), self.targets.pin_memory(),
                           self.pad_tokens)


def prediction_slots(tokens: int, prob: float) -> int:
    """A fixed number of prediction slots for micro-batches of `tokens` positions: the expected count plus
    six standard deviations, in multiples of 64. A batch that draws more (odds below 1e-8) gets a larger,
    equally padded shape; nothing is dropped."""
    mean, sd = tokens * prob, math.sqrt(tokens * prob * (1 - prob))
    return int(math.ceil((mean + 6 * sd) / 64) * 64)


def gather_targets(ids: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor, slots: int,
                   pad_id: int | None) -> MaskedBatch:
    """The MaskedBatch of masked ids and their labels (-100 where nothing is predicted)."""
    flat = labels.reshape(-1)
    where = flat.ne(-100).nonzero().squeeze(1)          # on the host: no device is waiting for this
    n = max(slots, int(math.ceil(where.numel() / 64) * 64))
    positions = torch.zeros(n, dtype=torch.long)
    targets = torch.full((n,), -100, dtype=torch.long)
    positions[:where.numel()], targets[:where.numel()] = where, flat[where]
    pads = int(ids.eq(pad_id).sum()) if pad_id is not None else 0
    return MaskedBatch(masked, positions, targets, pads)


def mask_tokens(ids: torch.Tensor, special_ids: torch.Tensor, mask_id: int, vocab_size: int, prob: float,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose `prob` of non-special positions; 80% -> [MASK], 10% -> random, 10% kept."""
    ids = ids.clone()
    chosen = torch.rand(ids.shape, generator=gen) < prob
    chosen &= ~torch.isin(ids, special_ids)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    r = torch.rand(ids.shape, generator=gen)
    random_tokens = torch.randint(vocab_size, ids.shape, generator=gen)
    ids = torch.where(chosen & (r < 0.8), torch.full_like(ids, mask_id), ids)
    ids = torch.where(chosen & (r >= 0.8) & (r < 0.9), random_tokens, ids)
    return ids, labels


class PackedBlocks:
    """Fixed-length blocks over a token cache, with a seeded held-out split and per-epoch shuffles."""

    def __init__(self, cache_path: Path, block_size: int, cls_id: int, sep_id: int, eval_fraction: float,
                 max_eval_blocks: int, seed: int):
        self.ids = load_token_cache(cache_path)
        self.body = block_size - 2
        self.cls, self.sep = cls_id, sep_id
        n = self.ids.shape[0] // self.body
        if n < 2:
            raise StageError(f"the corpus has {self.ids.shape[0]} tokens, fewer than two blocks of {block_size}; "
                             "give a larger corpus or a smaller block_size")
        order = np.random.default_rng(seed).permutation(n)
        n_eval = min(max_eval_blocks, max(1, int(round(n * eval_fraction)))) if eval_fraction > 0 else 0
        self.eval_blocks, self.train_blocks = order[:n_eval], np.sort(order[n_eval:])
        self.seed = seed

    def batch(self, blocks: np.ndarray) -> torch.Tensor:
        out = np.empty((len(blocks), self.body + 2), dtype=np.int64)
        out[:, 0], out[:, -1] = self.cls, self.sep
        for row, b in enumerate(blocks):
            out[row, 1:-1] = self.ids[b * self.body:(b + 1) * self.body]
        return torch.from_numpy(out)

    def train_micro_batch(self, index: int, size: int) -> torch.Tensor:
        """Micro-batch number `index` of the endless, epoch-wise reshuffled stream of training blocks."""
        per_epoch = len(self.train_blocks) // size
        epoch, pos = divmod(index, per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_blocks))
        return self.batch(self.train_blocks[perm[pos * size:(pos + 1) * size]])


def _evaluate(model: SparseMLM, data: PackedBlocks, masker, accelerator, batch_size: int) -> tuple[float, float]:
    """Held-out MLM loss and top-1 accuracy at the predicted positions.

    The accuracy shows what the loss hides in small models: one stuck on the unigram plateau predicts the
    same few frequent tokens everywhere (accuracy near the most frequent token's share) while its loss
    still creeps down.
    """
    if len(data.eval_blocks) == 0:
        return float("nan"), float("nan")
    model.eval()
    inner = accelerator.unwrap_model(model)
    gen = torch.Generator().manual_seed(data.seed + 7919)  # the same masks at every evaluation
    total, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(data.eval_blocks), batch_size):
            ids = data.batch(data.eval_blocks[i:i + batch_size])
            masked, labels = masker(ids, gen)
            b = gather_targets(ids, masked, labels, 0, None).to(accelerator.device)
            with accelerator.autocast():
                logits = inner.masked_logits(b.input_ids, b.positions)
            total += float(F.cross_entropy(logits.float(), b.targets, ignore_index=-100, reduction="sum"))
            correct += int(logits.argmax(dim=-1).eq(b.targets).sum())
            n += int(b.targets.ne(-100).sum())
    model.train()
    return total / max(1, n), correct / max(1, n)


class Prefetcher:
    """Builds `make(i)` for i = first, first+1, ... < stop in one background thread, at most `ahead` ahead of
    the consumer. Each item depends on its index alone, so the order of work cannot change a result; an error in
    the thread is raised again by `next()`."""

    def __init__(self, make: Callable[[int], MaskedBatch], first: int, stop: int, ahead: int):
        self.make, self.next_index, self.stop, self.ahead = make, first, stop, max(1, ahead)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlt-batches")
        self.queue: deque = deque()

    def __enter__(self) -> "Prefetcher":
        return self

    def next(self) -> MaskedBatch:
        while len(self.queue) < self.ahead and self.next_index < self.stop:
            self.queue.append(self.pool.submit(self.make, self.next_index))
            self.next_index += 1
        return self.queue.popleft().result()

    def __exit__(self, *exc) -> None:
        for f in self.queue:
            f.cancel()
        self.pool.shutdown(wait=True)


CHECKPOINTS = ("checkpoint", "checkpoint.prev")   # the newest first; the older one is kept until a newer is in place


def _save_checkpoint(accelerator, out: Path, step: int) -> None:
    """Model weights as safetensors (optimizer, scheduler and RNG states in Accelerate's own files), with a
    manifest of every file's size and digest, so a torn or truncated checkpoint is found before it is loaded.
    The previous checkpoint is kept as `checkpoint.prev` until this one is complete and in place."""
    tmp = out / "checkpoint.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    # safetensors stores a shared tensor once; Accelerate warns at every save about the aliases it drops (the
    # decoder tied to the embeddings, and SparseMLM's `head`, which is the model's own MLM head). Loading ties
    # them again: a resumed run equals an uninterrupted one bit for bit (tests/test_pretrain.py).
    shared_warning = logging.getLogger("accelerate.utils.other")
    level = shared_warning.level
    shared_warning.setLevel(logging.ERROR)
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
    finally:
        shared_warning.setLevel(level)
    files = {f.name: [f.stat().st_size, sha256_file(f)] for f in sorted(tmp.iterdir()) if f.is_file()}
    write_json(tmp / "trainer_state.json", {"step": step, "files": files})
    newest, previous = (out / name for name in CHECKPOINTS)
    if newest.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(newest, previous)
    os.replace(tmp, newest)


def checkpoint_problem(folder: Path) -> str | None:
    """What is wrong with a checkpoint folder (None: it is whole): no readable state, or a file missing or
    not the size and digest its manifest records."""
    try:
        state = read_json(folder / "trainer_state.json")
        int(state["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "trainer_state.json missing or unreadable"
    for name, (size, digest) in (state.get("files") or {}).items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size:,} bytes, its manifest says {size:,} (truncated?)"
        if sha256_file(f) != digest:
            return f"{name} does not match its recorded digest"
    return None


def _good_checkpoint(out: Path, log: Callable[[str], None]) -> Path | None:
    """The newest whole checkpoint; a damaged one is said in the log and skipped (then deleted by the next
    save). None: start from step 0."""
    for name in CHECKPOINTS:
        folder = out / name
        if not folder.exists():
            continue
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder
        log(f"[pretrain] checkpoint {folder} is damaged ({problem}); not resuming from it")
    if any((out / name).exists() for name in CHECKPOINTS):
        log("[pretrain] no whole checkpoint left: starting from step 0 (batches and masks are functions of "
            "(seed, step), so the result is the same)")
    return None


def pretrain(cfg: PretrainConfig, on_log: Callable[[int, dict[str, float]], None] | None = None,
             log: Callable[[str], None] = print) -> PretrainResult:
    from transformers import AutoModelForMaskedLM, get_linear_schedule_with_warmup
    quiet_transformers()
    t_start = time.time()
    configure_threads(cfg.num_threads)
    set_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    # One process per trial (Ray gives each its share of a GPU); nothing launches data-parallel workers.
    accelerator = make_accelerator(resolve_mixed_precision(cfg.mixed_precision))
    accum = cfg.batch_size // cfg.per_device_batch_size

    tokenizer = load_tokenizer(cfg.init_model)
    cache = tokenize_to_cache(cfg.corpus, tokenizer, cfg.cache_dir, "pretraining corpus", log=log)
    data = PackedBlocks(cache, cfg.block_size, tokenizer.cls_token_id, tokenizer.sep_token_id,
                        cfg.eval_fraction, cfg.max_eval_blocks, cfg.seed)
    steps_per_epoch = len(data.train_blocks) // cfg.batch_size
    if steps_per_epoch == 0:
        raise StageError(f"{len(data.train_blocks)} training blocks cannot fill one batch of {cfg.batch_size}; "
                         "give a larger corpus or a smaller batch_size")
    total_steps = cfg.max_steps if cfg.max_steps is not None else max(1, int(cfg.epochs * steps_per_epoch))
    total_steps += math.ceil(cfg.extra_tokens / (cfg.batch_size * cfg.block_size))
    # A segment stops early; the schedule and the batches are still those of the whole budget, so the segments
    # chained by resume_from end on the model an uninterrupted run gives (tests/test_pretrain.py).
    end = total_steps if cfg.stop_at_fraction is None else min(total_steps, max(1, round(cfg.stop_at_fraction *
                                                                                       total_steps)))

    model = AutoModelForMaskedLM.from_pretrained(resolve_pretrained(cfg.init_model))
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        raise StageError(f"the tokenizer of {cfg.init_model} has {len(tokenizer)} tokens but the model's embedding "
                         f"table only {model.get_input_embeddings().weight.shape[0]} rows; run the transfer stage")
    # On the device before the optimizer is built: fused AdamW (one kernel for all parameters) needs it there.
    wrapped = SparseMLM(model).to(accelerator.device)
    optimizer = make_adamw(wrapped, cfg.learning_rate, cfg.weight_decay, fused=accelerator.device.type == "cuda")
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total_steps)
    wrapped, optimizer, scheduler = accelerator.prepare(wrapped, optimizer, scheduler)

    step, start = 0, 0
    if cfg.resume_from:
        src = Path(cfg.resume_from)
        problem = checkpoint_problem(src)
        if problem:
            raise StageError(f"resume_from {src}: {problem}; that learning-curve segment must run again (delete "
                             f"its DONE, {src.parent / 'DONE'}, and rerun the sweep)")
        start = read_json(src / "trainer_state.json")["step"]
        if start > end:
            raise StageError(f"resume_from {src} is at step {start}, past this node's stop at step {end} of "
                             f"{total_steps}: the learning-curve fractions must increase")
    good = _good_checkpoint(out, log) or (Path(cfg.resume_from) if cfg.resume_from else None)
    if good is not None:
        accelerator.load_state(str(good))
        step = read_json(good / "trainer_state.json")["step"]
        log(f"[pretrain] resuming from checkpoint {good} at step {step}/{total_steps}")
    resumed_from = step

    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    vocab = len(tokenizer)

    def masker(ids, gen):
        return mask_tokens(ids, special, tokenizer.mask_token_id, vocab, cfg.mlm_probability, gen)

    micro = cfg.per_device_batch_size
    tokens_per_step = cfg.batch_size * cfg.block_size
    slots = prediction_slots(micro * cfg.block_size, cfg.mlm_probability)
    pin = accelerator.device.type == "cuda"

    def micro_batch(index: int) -> MaskedBatch:
        """Micro-batch `index` of the run, masked: a function of (seed, index) alone, so a resumed run draws
        exactly what an uninterrupted one would, whichever thread builds it."""
        ids = data.train_micro_batch(index, micro)
        masked, labels = masker(ids, torch.Generator().manual_seed(cfg.seed * 1_000_003 + index))
        b = gather_targets(ids, masked, labels, slots, tokenizer.pad_token_id)
        return b.pin_memory() if pin else b     # pinned: the copy to the GPU runs asynchronously

    window_loss = torch.zeros((), device=accelerator.device)   # summed on the device: read at logging steps
    window_steps, window_tokens, window_pad, window_time = 0, 0, 0, 0.0
    total_pad, total_time = 0, 0.0
    last_loss, eval_loss, eval_accuracy = float("nan"), float("nan"), float("nan")
    wrapped.train()
    forward = torch.compile(wrapped) if cfg.compile else wrapped
    log(f"[pretrain] {cfg.init_model}: {len(data.train_blocks):,} train / {len(data.eval_blocks):,} held-out blocks "
        f"of {cfg.block_size}; {total_steps} steps x {cfg.batch_size} seqs (accumulation {accum}); "
        + (f"this segment stops at step {end}; " if end < total_steps else "")
        + f"precision {accelerator.mixed_precision}" + (", torch.compile" if cfg.compile else ""))
    # Batches are built and masked by numpy and torch on the CPU: a background thread prepares the next
    # ones while the device computes, so the GPU does not wait for the host between micro-batches.
    # XLT_SYNC_DEBUG=error (the GPU check sets it): a step that neither logs nor checkpoints fails at any
    # device-to-host sync, so one hidden in the loop cannot go unnoticed (torch.cuda.set_sync_debug_mode).
    sync_debug = os.environ.get("XLT_SYNC_DEBUG") if accelerator.device.type == "cuda" else None

    def reports(n: int) -> bool:
        return n % cfg.log_every == 0 or n == end or n % cfg.checkpoint_every == 0

    with Prefetcher(micro_batch, first=step * accum, stop=end * accum, ahead=2 * accum) as batches:
        while step < end:
            if sync_debug:
                torch.cuda.set_sync_debug_mode(0 if reports(step + 1) else sync_debug)
            t0 = time.perf_counter()
            step_loss = torch.zeros((), device=accelerator.device)
            for _ in range(accum):
                b = batches.next().to(accelerator.device, non_blocking=True)
                window_pad += b.pad_tokens
                with accelerator.autocast():
                    loss = forward(b.input_ids, b.positions, b.targets)
                    accelerator.backward(loss / accum)
                step_loss += loss.detach()
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(wrapped.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_loss += step_loss / accum
            window_steps += 1
            window_tokens += tokens_per_step
            window_time += time.perf_counter() - t0
            total_time += time.perf_counter() - t0
            if step == end < total_steps:
                # the next segment's start: saved before the evaluation below, as an uninterrupted run has it
                _save_checkpoint(accelerator, out, step)

            if step % cfg.log_every == 0 or step == end:
                last_loss = float(step_loss) / accum       # host syncs only here, at logging steps
                metrics = {"train/loss": float(window_loss) / window_steps, "train/lr": scheduler.get_last_lr()[0],
                           "train/tokens_per_s": window_tokens / max(window_time, 1e-9),
                           "train/padding_fraction": window_pad / max(1, window_tokens)}
                if step % cfg.eval_every == 0 or step == end:
                    eval_loss, eval_accuracy = _evaluate(wrapped, data, masker, accelerator, micro)
                    metrics.update({"eval/loss": eval_loss, "eval/perplexity": math.exp(min(eval_loss, 50)),
                                    "eval/accuracy": eval_accuracy})
                log(f"[pretrain] step {step}/{total_steps} loss {metrics['train/loss']:.4f} "
                    f"lr {metrics['train/lr']:.2e} {metrics['train/tokens_per_s']:,.0f} tok/s"
                    + (f" eval_loss {eval_loss:.4f} eval_acc {eval_accuracy:.3f}" if "eval/loss" in metrics else ""))
                if on_log:
                    on_log(step, metrics)
                total_pad += window_pad
                window_loss.zero_()
                window_steps, window_tokens, window_pad, window_time = 0, 0, 0, 0.0

            if step % cfg.checkpoint_every == 0 and step < end:
                _save_checkpoint(accelerator, out, step)
    if sync_debug:
        torch.cuda.set_sync_debug_mode(0)

    final = out / "model"
    tmp = out / "model.tmp"
    unwrapped = accelerator.unwrap_model(wrapped).model
    unwrapped.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    replace_dir(tmp, final)
    seconds = time.time() - t_start
    trained_tokens = (step - resumed_from) * tokens_per_step
    result = PretrainResult(
        model_dir=str(final), steps=step, tokens_seen=step * tokens_per_step, train_loss=last_loss,
        eval_loss=eval_loss, eval_perplexity=math.exp(min(eval_loss, 50)) if eval_loss == eval_loss else float("nan"),
        eval_accuracy=eval_accuracy,
        tokens_per_s=trained_tokens / max(total_time, 1e-9), padding_fraction=total_pad / max(1, trained_tokens),
        resumed_from_step=resumed_from,
        seconds=seconds, start_step=start)
    write_json(out / "pretrain_result.json", asdict(result))
    return result
