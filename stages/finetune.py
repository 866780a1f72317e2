"""Stage 4: fine-tune a (transferred, pretrained) BERT on one GLUE task and score its dev set(s).

The paper's Table 5 recipe: AdamW, lr 2e-5, batch 32, 3 epochs, max length 128, no early stopping; the
model after the last epoch is the one reported, for each of 5 seeds. The input is usually an MLM checkpoint
from the pretrain stage, so the pooler and the classifier start fresh; `set_seed` runs right before the model
is built so that this initialisation, the dropout masks and the batch order all follow `seed`.

Batches are padded to their own longest example (dynamic padding), not to max_length: most GLUE sentences
are far shorter than 128 tokens, and padding them all would multiply the cost for nothing. Training batches
are also drawn from examples of similar length (`group_by_length`, seeded: `LengthGroupedBatches`); drawn at
random they would still be 40-50% padding. The padding fraction is logged and in the result.

Local data rows that hold no example (too few fields, empty label) are skipped and reported in the result's
`dropped_rows` (`strict` fails on them instead); metrics that are undefined for the final model (a correlation
of constant predictions) are NaN and listed in `degenerate`. With `predict_test`, the final model also
predicts the task's GLUE test split(s), written in the leaderboard's layout (`stages.glue_submit`).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from stages.common import resolve_pretrained  # hub ids: cache first, one clear error offline
from stages.common import (LengthGroupedBatches, StageConfig, StageError, TrainingSettings, check_model_fits,
                           configure_threads, make_accelerator, make_adamw, pad_batch, quiet_transformers, replace_dir,
                           resolve_mixed_precision, set_seed, setting, write_json)
from stages.glue import DroppedRows, Example, TaskSpec, compute_metrics, get_task, load_split, load_test_split
from stages.glue_submit import TEST_DIR, prediction_strings, write_predictions
from stages.tokenizer import load_tokenizer

ENCODE_CHUNK = 4096  # examples tokenized per call: fast, without holding a whole task as Python lists


class FinetuneSettings(TrainingSettings):
    """Fine-tuning hyperparameters (paper Table 5 defaults): the sweep's `finetune` section, and with other
    defaults (Table 6) its `forgetting` section."""
    save_model: bool = setting(False, "keep the fine-tuned weights (big; the sweep sets it where Winogender "
                                      "needs the RTE models)")


class GlueData(StageConfig):
    """Where GLUE comes from (a local root in the official TSV layout, or the hub), how it is read, and
    whether the test splits are predicted."""
    data_dir: str | None = setting(None, "GLUE root with one folder per task (CoLA/, SST-2/, ...), as "
                                         "download_glue_data.py writes it; null: the hub")
    hub_dataset: str | None = setting("nyu-mll/glue", "hub dataset used when data_dir is null")
    # Unhashed: it decides whether a run with malformed rows fails, never what a finished run computed (a
    # clean file reads the same either way; skipped rows are in the result's dropped_rows).
    strict: bool = setting(False, "fail on a malformed data row (too few or too many fields, empty label) "
                                  "instead of skipping it; skipped rows are counted in dropped_rows",
                           hashed=False)
    # Hashed although it changes no metric: it adds output files, and an unhashed switch turned on later
    # would leave every finished node without them.
    predict_test: bool = setting(False, "also write the final model's predictions on the test split(s) in "
                                        "the GLUE leaderboard layout (glue_test/<Task>.tsv; MNLI adds AX.tsv), "
                                        "for the test files data_dir holds")


class FinetuneConfig(FinetuneSettings, GlueData):
    model: str = setting(doc="folder or hub id: load_tokenizer + AutoModelForSequenceClassification")
    task: str = setting(doc="a GLUE task, or a source-language task (scandisent-<lang>, stsb-<lang>) whose "
                            "data_dir is its own file or folder")
    output_dir: str = setting(doc="eval_results.json (and model/ with save_model)")
    seed: int = setting(0, "classifier init, dropout and batch order")
    num_threads: int | None = setting(None, "torch CPU threads (configure_threads)", hashed=False)


@dataclass(frozen=True)
class FinetuneResult:
    task: str
    metrics: dict[str, float]       # flat: e.g. {"mcc": ...} or for mnli {"m_accuracy": ..., "mm_accuracy": ...}
    train_examples: int
    steps: int
    seconds: float
    train_tokens_per_s: float
    padding_fraction: float         # share of the training batches' token slots that were padding
    output_dir: str
    dropped_rows: dict[str, dict]   # split -> {"count": n, "first": ["train.tsv line 12", ...]}: skipped rows
    degenerate: list[str]           # metrics undefined for the final model (NaN), e.g. constant STS-B predictions
    flags: list[str]                # run_flags: "one_class", "diverged"; the report leaves such runs out of means
    test_predictions: list[str]     # leaderboard files written into glue_test/ (predict_test)


@dataclass(frozen=True)
class Encoded:
    """One tokenized example. int32/int8 arrays: MNLI/QQP as Python int lists would take gigabytes."""
    input_ids: np.ndarray
    token_type_ids: np.ndarray | None
    label: int | float | None    # None: a test example


def _encode(tokenizer, examples: list[Example], max_length: int, with_types: bool) -> list[Encoded]:
    out: list[Encoded] = []
    pair = examples[0].text_b is not None  # a task is all pairs or all single sentences
    for start in range(0, len(examples), ENCODE_CHUNK):
        chunk = examples[start:start + ENCODE_CHUNK]
        a = [e.text_a for e in chunk]
        # Pairs are truncated longest-first, so a long premise cannot push the hypothesis out entirely.
        enc = (tokenizer(a, [e.text_b or "" for e in chunk], truncation=True, max_length=max_length)
               if pair else tokenizer(a, truncation=True, max_length=max_length))
        types = enc["token_type_ids"] if with_types else [None] * len(chunk)
        for ids, tt, e in zip(enc["input_ids"], types, chunk):
            out.append(Encoded(np.asarray(ids, dtype=np.int32),
                               None if tt is None else np.asarray(tt, dtype=np.int8), e.label))
    return out


def _collate_fn(pad_id: int, regression: bool):
    """Pad a batch to its own longest sequence (right padding, as BERT's absolute positions expect)."""
    def collate(batch: list[Encoded]) -> dict[str, torch.Tensor]:
        types = [e.token_type_ids for e in batch] if batch[0].token_type_ids is not None else None
        out = pad_batch([e.input_ids for e in batch], types, pad_id)
        if batch[0].label is not None:   # test batches carry no labels
            out["labels"] = torch.tensor([e.label for e in batch], dtype=torch.float32 if regression else torch.long)
        return out
    return collate


def _load_model(cfg: FinetuneConfig, spec: TaskSpec, tokenizer):
    from transformers import AutoModelForSequenceClassification

    kwargs = {"num_labels": spec.num_labels,
              "problem_type": "regression" if spec.is_regression else "single_label_classification"}
    if not spec.is_regression:
        kwargs["id2label"] = dict(enumerate(spec.label_names))
        kwargs["label2id"] = {name: i for i, name in enumerate(spec.label_names)}
    try:
        # dtype=float32: transformers 5 loads weights in their saved dtype by default ("auto"); a checkpoint
        # saved in bf16/fp16 would then be trained without fp32 master weights. Mixed precision is autocast's job.
        model = AutoModelForSequenceClassification.from_pretrained(resolve_pretrained(cfg.model),
                                                                   dtype=torch.float32, **kwargs)
    except (OSError, ValueError, RuntimeError) as e:
        raise StageError(f"cannot load {cfg.model!r} as a sequence classifier for {spec.name}: {e}. Give a folder "
                         "written by save_pretrained (e.g. the pretrain stage's model/) or a hub id of a BERT-like "
                         "encoder; a checkpoint already fine-tuned with another label count cannot be reused") from e
    check_model_fits(model, tokenizer, cfg.max_length, cfg.model, "run the transfer stage so model and tokenizer match")
    return model


def _predict(model, loader, accelerator, spec: TaskSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (class ids, or scores for regression) over `loader` in its order, and the labels when the
    batches carry them."""
    model.eval()
    preds, golds = [], []
    with torch.no_grad():
        for batch in loader:
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            pred = logits.squeeze(-1).float() if spec.is_regression else logits.argmax(dim=-1)
            # gather_for_metrics drops the samples a multi-process sampler duplicated to even out batches.
            if "labels" in batch:
                pred, gold = accelerator.gather_for_metrics((pred, batch["labels"]))
                golds.append(gold.cpu())
            else:
                pred = accelerator.gather_for_metrics(pred)
            preds.append(pred.cpu())
    model.train()
    return torch.cat(preds).numpy(), torch.cat(golds).numpy() if golds else None


def _evaluate(model, loader, accelerator, spec: TaskSpec) -> tuple[dict[str, float], bool]:
    """The split's metrics, and whether every prediction is the same class (a collapsed classifier)."""
    pred, gold = _predict(model, loader, accelerator, spec)
    one_class = not spec.is_regression and pred.size > 0 and bool(np.all(pred == pred[0]))
    return compute_metrics(spec.name, pred, gold), one_class


# A run whose training loss ends above this multiple of its first logged window's is taken to have diverged:
# fine-tuning from a pretrained body lowers the loss or leaves it near chance, never doubles it.
DIVERGED_LOSS_RATIO = 2.0


def run_flags(one_class: bool, losses: list[float]) -> list[str]:
    """Why a finished run is degenerate beyond an undefined metric (the report leaves it out of means):
    `one_class` (the final model predicts one class on a dev split), `diverged` (a non-finite training loss,
    or a last logged window above DIVERGED_LOSS_RATIO x the first)."""
    flags = ["one_class"] if one_class else []
    if any(not math.isfinite(x) for x in losses) or (losses and losses[-1] > DIVERGED_LOSS_RATIO * losses[0]):
        flags.append("diverged")
    return flags


def _split_name(kind: str, key: str) -> str:
    return f"{kind}_{key}" if key else kind   # "train", "dev", "dev_m", "test_ax"


def _load_tests(cfg: FinetuneConfig, spec: TaskSpec, dropped: dict[str, DroppedRows],
                log: Callable[[str], None]) -> dict[str, tuple[list[str], list[Example]]]:
    """Test splits to predict: submission file -> (indices, unlabelled examples). Read before training, so a
    broken test file fails the node before its training time is spent. All rows: the leaderboard needs each."""
    tests = {}
    for test in spec.test_splits:
        rows = load_test_split(spec.name, test.key, cfg.data_dir, cfg.hub_dataset, cfg.strict,
                               dropped.setdefault(_split_name("test", test.key), DroppedRows()))
        if rows is None:
            log(f"[finetune] {spec.name}: no {' or '.join(test.tsv_files)} in {cfg.data_dir}; "
                f"{test.submission_file} is not written")
        else:
            tests[test.submission_file] = rows
    if not spec.test_splits:
        log(f"[finetune] {spec.name} has no GLUE test split; predict_test writes nothing")
    return tests


def _log_dropped(spec: TaskSpec, dropped: dict[str, DroppedRows], log: Callable[[str], None]) -> dict[str, dict]:
    out = {split: d.as_dict() for split, d in dropped.items() if d.count}
    for split, d in out.items():
        log(f"[finetune] {spec.name} {split}: skipped {d['count']:,} malformed row(s) (too few fields or an "
            f"empty label), first at {', '.join(d['first'])}; set strict: true to fail on them instead")
    return out


def _write_test_predictions(model, accelerator, spec: TaskSpec, test_data: dict[str, tuple[list[str], list[Encoded]]],
                            collate, batch_size: int, out: Path) -> list[str]:
    """The final model's leaderboard files in `<out>/glue_test/`; returns their names."""
    for name, (indices, data) in test_data.items():
        # Prepared only here, apart from the training loaders: a run without test splits stays bit-identical.
        loader = accelerator.prepare(torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False,
                                                                 collate_fn=collate))
        pred, _ = _predict(model, loader, accelerator, spec)
        if accelerator.is_main_process:
            write_predictions(out / TEST_DIR / name, indices, prediction_strings(spec, pred))
    return list(test_data)


def _train_loader(data: list[Encoded], cfg: FinetuneConfig, collate):
    """Length-grouped batches (`group_by_length`, the default), or batches of a seeded random order."""
    if cfg.group_by_length:
        batches = LengthGroupedBatches([len(e.input_ids) for e in data], cfg.batch_size, cfg.seed)
        return torch.utils.data.DataLoader(data, batch_sampler=batches, collate_fn=collate)
    return torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate,
                                       generator=torch.Generator().manual_seed(cfg.seed))


def finetune(cfg: FinetuneConfig, on_log: Callable[[int, dict[str, float]], None] | None = None,
             log: Callable[[str], None] = print) -> FinetuneResult:
    from transformers import get_linear_schedule_with_warmup

    quiet_transformers()  # transformers 5 prints a LOAD REPORT table for every MLM -> classifier load
    t_start = time.time()
    spec = get_task(cfg.task)
    configure_threads(cfg.num_threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    accelerator = make_accelerator(resolve_mixed_precision(cfg.mixed_precision))

    tokenizer = load_tokenizer(cfg.model)
    with_types = "token_type_ids" in tokenizer.model_input_names  # BERT yes; RoBERTa/DistilBERT take none
    dropped = {"train": DroppedRows(), **{_split_name("dev", d.key): DroppedRows() for d in spec.dev_splits}}
    train_examples = load_split(spec.name, "train", cfg.data_dir, cfg.hub_dataset, cfg.max_train_examples,
                                cfg.strict, dropped["train"])
    dev_examples = {d.key: load_split(spec.name, d.key, cfg.data_dir, cfg.hub_dataset, cfg.max_eval_examples,
                                      cfg.strict, dropped[_split_name("dev", d.key)])
                    for d in spec.dev_splits}
    tests = _load_tests(cfg, spec, dropped, log) if cfg.predict_test else {}
    dropped_rows = _log_dropped(spec, dropped, log)
    train_data = _encode(tokenizer, train_examples, cfg.max_length, with_types)
    dev_data = {k: _encode(tokenizer, v, cfg.max_length, with_types) for k, v in dev_examples.items()}
    test_data = {name: (indices, _encode(tokenizer, examples, cfg.max_length, with_types))
                 for name, (indices, examples) in tests.items()}

    set_seed(cfg.seed)  # right before the model: the fresh classifier/pooler initialisation follows the seed
    model = _load_model(cfg, spec, tokenizer)
    collate = _collate_fn(tokenizer.pad_token_id, spec.is_regression)
    train_loader = _train_loader(train_data, cfg, collate)
    # Dev examples in length order: no padding to speak of, and the metrics only pair predictions with labels.
    dev_loaders = {k: torch.utils.data.DataLoader(sorted(v, key=lambda e: len(e.input_ids)),
                                                  batch_size=cfg.eval_batch_size, shuffle=False, collate_fn=collate)
                   for k, v in dev_data.items()}

    optimizer = make_adamw(model, cfg.learning_rate, cfg.weight_decay)

    model, optimizer, train_loader, *dev_prepared = accelerator.prepare(model, optimizer, train_loader,
                                                                        *dev_loaders.values())
    dev_loaders = dict(zip(dev_loaders, dev_prepared))
    steps_per_epoch = len(train_loader)  # per process, after prepare() sharded the batches
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    # An accelerate-prepared scheduler advances num_processes times per step(), so its horizon is scaled to match.
    world = accelerator.num_processes
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps) * world,
                                                total_steps * world)
    scheduler = accelerator.prepare(scheduler)

    log(f"[finetune] {cfg.model} on {spec.name}: {len(train_data):,} train examples, "
        f"{', '.join(f'{len(v):,}' for v in dev_data.values())} dev; {total_steps} steps x {cfg.batch_size} "
        f"({cfg.epochs:g} epochs), seed {cfg.seed}, precision {accelerator.mixed_precision}")

    step = 0
    train_seconds = 0.0
    tokens = torch.zeros((), dtype=torch.long, device=accelerator.device)  # summed on device: no per-step sync
    slots = window_slots = 0              # padded token slots: a shape, known without a sync
    window_tokens = tokens.clone()
    window_loss = torch.zeros((), device=accelerator.device)
    window_steps = 0
    metrics: dict[str, float] = {}
    epoch_metrics: list[dict[str, float]] = []
    losses: list[float] = []     # every logged window's mean training loss, for run_flags
    one_class = False
    model.train()
    for epoch in range(num_epochs):
        t0 = time.perf_counter()
        for batch in train_loader:
            # prepare() already runs the forward under autocast when mixed precision is on.
            loss = model(**batch).loss
            accelerator.backward(loss)
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            real = batch["attention_mask"].sum()  # real tokens only; padding is not work we asked for
            tokens += real
            window_tokens += real
            slots += batch["attention_mask"].numel()
            window_slots += batch["attention_mask"].numel()
            window_loss += loss.detach().float()
            window_steps += 1
            if step % cfg.log_every == 0 or step == total_steps:
                losses.append(float(window_loss) / window_steps)
                entry = {"train/loss": losses[-1], "train/lr": scheduler.get_last_lr()[0],
                         "train/padding_fraction": 1 - float(window_tokens) / max(1, window_slots)}
                if on_log:
                    on_log(step, entry)
                window_loss.zero_()
                window_tokens.zero_()
                window_steps = window_slots = 0
            if step == total_steps:
                break
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # queued kernels belong to this epoch's training time, not to evaluation
        train_seconds += time.perf_counter() - t0

        metrics, one_class = {}, False
        for key, loader in dev_loaders.items():
            split_metrics, split_one_class = _evaluate(model, loader, accelerator, spec)
            one_class |= split_one_class
            for name, value in split_metrics.items():
                metrics[f"{key}_{name}" if key else name] = value
        epoch_metrics.append(dict(metrics))
        log(f"[finetune] {spec.name} epoch {epoch + 1}/{num_epochs} step {step}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if on_log:
            on_log(step, {f"eval/{k}": v for k, v in metrics.items()})

    total_tokens = int(accelerator.reduce(tokens, reduction="sum"))
    if cfg.save_model:
        accelerator.wait_for_everyone()
    if cfg.save_model and accelerator.is_main_process:
        tmp, final = out / "model.tmp", out / "model"
        accelerator.unwrap_model(model).save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        replace_dir(tmp, final)

    written = _write_test_predictions(model, accelerator, spec, test_data, collate, cfg.eval_batch_size, out)
    degenerate = [k for k, v in metrics.items() if math.isnan(v)]
    if degenerate:
        log(f"[finetune] {spec.name}: {', '.join(degenerate)} undefined (NaN) for the final model: a degenerate "
            "run (e.g. the same STS-B score for every pair)")
    flags = run_flags(one_class, losses)
    if flags:
        log(f"[finetune] {spec.name}: degenerate run ({', '.join(flags)}): the report leaves it out of means")
    result = FinetuneResult(task=spec.name, metrics=metrics, train_examples=len(train_data), steps=step,
                            seconds=time.time() - t_start,
                            train_tokens_per_s=total_tokens / max(train_seconds, 1e-9),
                            padding_fraction=1 - float(tokens) / max(1, slots), output_dir=str(out),
                            dropped_rows=dropped_rows, degenerate=degenerate, flags=flags,
                            test_predictions=written)
    if accelerator.is_main_process:
        write_json(out / "eval_results.json",
                   {**asdict(result), "config": cfg.model_dump(), "epoch_metrics": epoch_metrics})
    return result
