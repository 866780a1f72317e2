"""Throughput of the pretrain stage against two `transformers.Trainer` MLM runs, in one process, interleaved.

Three runs train the same model (same init, loaded from one saved folder) on the same packed blocks
([CLS] + block_size-2 tokens + [SEP], `stages.pretrain.PackedBlocks`), with the same micro-batch, gradient
accumulation, AdamW (lr 5e-5, linear decay, no weight decay, clipping at 1.0; fused on a GPU only, as the
stage does), precision, torch thread count and number of steps:

- **stage**: `stages.pretrain.pretrain`: logits only at the predicted positions (their flat indices found on
  the host, padded to a fixed count), batches built and masked in a background thread;
- **Trainer, masked head**: `Trainer` with `DataCollatorForLanguageModeling` and a small wrapper model
  (`MaskedHeadMLM`) whose forward computes logits only where label != -100, as the stage does (but with a
  boolean selection on the device, as one would write it for `Trainer`). Same work per step as the stage:
  stage / this = the loop's own efficiency (target >= 1.0);
- **Trainer, stock**: `Trainer` with `DataCollatorForLanguageModeling` and `BertForMaskedLM`, whose head
  projects every position onto the vocabulary. masked head / stock = what computing the head only where
  it is needed gives, apart from the loop.

The collator's attention mask (all ones: packed blocks hold no padding) is dropped for both `Trainer`
runs, since the stage passes none either: all three run the same encoder computation.

Timing: each run is timed from the end of optimizer step `--warmup` to the end of the last step (wall
clock, after a CUDA synchronize at both ends), so set-up, loading, the first steps and saving are left
out; tokens/s = (steps - warmup) x batch x block_size / that time. The stage is timed through its on_log
hook (log_every = warmup, so both ends are logging steps), the Trainer through a callback at on_step_end.
The machine this runs on may be shared and its speed may drift, so the runs are interleaved: each of
`--reps` repetitions runs all three, the order rotated from one repetition to the next, and the table gives
min / median / max of each run's tokens/s and of the ratios within a repetition (the runs of one
repetition are neighbours in time, so their ratio is less exposed to drift than the ratio of medians).
Tokens per CPU second (this process's CPU time over the same window, all its threads, the stage's batch
thread included) are given beside them: on a CPU shared with other jobs they vary far less than wall-clock
figures, which lose whatever time the other jobs take (on a GPU they mean little).

No padding column: packed blocks hold no padding, so every run trains on 0% padding (the stage's own
`padding_fraction` is checked to be 0). With --mfu (GPU) the model FLOPs utilisation is added, counting
the same useful FLOPs per token for every run (PaLM-style, fwd+bwd = 3x fwd, vocabulary logits at the 15%
predicted positions only), so it is proportional to tokens/s: the stock head's extra work is not credited.

    python benchmarks/pretrain_throughput.py                       # tiny BERT on CPU, 3 repetitions
    python benchmarks/pretrain_throughput.py --size base --vocab 32000 --precision bf16 --micro-batch 64 \\
        --batch 128 --steps 60 --mfu                                # on a GPU
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from stages.corpus import CorpusConfig, tokenize_to_cache  # noqa: E402
from stages.pretrain import PackedBlocks, PretrainConfig, pretrain  # noqa: E402
from stages.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer  # noqa: E402

SIZES = {  # hidden, layers, heads, ffn
    "tiny": (64, 2, 2, 256),
    "small": (256, 4, 4, 1024),
    "base": (768, 12, 12, 3072),
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "V100": 125.0}
RUNS = ("stage", "trainer_masked", "trainer_stock")
LABELS = {"stage": "stage (`stages/pretrain.py`)", "trainer_masked": "`Trainer`, masked-only head",
          "trainer_stock": "`Trainer`, stock MLM (full head)"}
RATIOS = (("stage", "trainer_masked", "stage / masked-head `Trainer` (loop; target ≥ 1.0)"),
          ("stage", "trainer_stock", "stage / stock `Trainer`"),
          ("trainer_masked", "trainer_stock", "masked-head / stock `Trainer` (head)"))


# --- shared with benchmarks/finetune_throughput.py ---------------------------------------------------------

def flops_per_token(layers, d, ffn, seq, vocab, p=0.15) -> float:
    return 6 * layers * (4 * d * d + 2 * d * ffn) + 12 * layers * seq * d + 6 * p * (d * d + d * vocab)


def make_words(rng: random.Random, n: int = 3000) -> tuple[list[str], list[float]]:
    """Made-up words of 1-4 syllables and Zipfian weights for them."""
    syll = ["ka", "to", "ri", "ne", "sa", "mo", "lu", "pe", "di", "ga", "vo", "he", "ju", "ba", "fi", "co"]
    words = sorted({"".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(n)})
    return words, [1.0 / (i + 1) for i in range(len(words))]


def make_corpus(path: Path, n_lines: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words, weights = make_words(rng)
    with open(path, "w") as f:
        for _ in range(n_lines):
            f.write(" ".join(rng.choices(words, weights, k=rng.randint(8, 30))).capitalize() + ".\n")


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def rotated(names: tuple[str, ...], rep: int) -> list[str]:
    """The run order of repetition `rep`: rotated by one each time, so no run is always first or last."""
    k = rep % len(names)
    return list(names[k:] + names[:k])


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def quiet_trainer_logs() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


# --- the three runs ----------------------------------------------------------------------------------------

class MaskedHeadMLM(torch.nn.Module):
    """An MLM for `Trainer` whose forward computes vocabulary logits only where label != -100 (the head of
    `stages.pretrain.SparseMLM`, fed by the collator's labels instead of host-computed positions)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.head = model.cls

    def forward(self, input_ids, labels, attention_mask=None):
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        flat = labels.reshape(-1)
        where = flat.ne(-100).nonzero().squeeze(1)
        logits = self.head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, where))
        return {"loss": F.cross_entropy(logits.float(), flat.index_select(0, where))}


@dataclass
class Setup:
    work: Path
    model_dir: str
    corpus: CorpusConfig
    tokenizer: object
    blocks: list[dict]          # every packed block, as the Trainer runs get them
    vocab: int


def prepare(args) -> Setup:
    quiet_trainer_logs()
    from transformers import BertConfig, BertForMaskedLM

    work = Path(tempfile.mkdtemp(prefix="xlt-bench-"))
    make_corpus(work / "corpus.txt", args.lines)
    corpus = CorpusConfig(files=[str(work / "corpus.txt")])
    train_tokenizer(TokenizerConfig(corpus=corpus, output_dir=str(work / "model"), vocab_size=args.vocab,
                                    min_frequency=1))
    tok = load_tokenizer(str(work / "model"))
    d, layers, heads, ffn = SIZES[args.size]
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=d, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=512,
                               pad_token_id=tok.pad_token_id)).save_pretrained(str(work / "model"))
    cache = tokenize_to_cache(corpus, tok, work / "cache", log=lambda *_: None)
    data = PackedBlocks(cache, args.block_size, tok.cls_token_id, tok.sep_token_id, 0.0, 0, seed=0)
    if len(data.train_blocks) < args.batch:
        raise SystemExit(f"{len(data.train_blocks)} blocks cannot fill a batch of {args.batch}: raise --lines")
    blocks = [{"input_ids": row} for row in data.batch(data.train_blocks).tolist()]
    return Setup(work, str(work / "model"), corpus, tok, blocks, len(tok))


def clocks() -> tuple[float, float]:
    """Wall clock and this process's CPU time (all its threads)."""
    return time.perf_counter(), time.process_time()


def tokens_per_s(args, warm: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """Tokens per wall-clock second and per CPU second of the timed window."""
    tokens = (args.steps - args.warmup) * args.batch * args.block_size
    return tokens / (end[0] - warm[0]), tokens / (end[1] - warm[1])


def run_stage(s: Setup, args, rep: int) -> tuple[float, float]:
    stamps = {}

    def on_log(step, metrics):
        if step in (args.warmup, args.steps):
            synchronize()
            stamps[step] = clocks()

    out = s.work / f"stage-{rep}"
    res = pretrain(PretrainConfig(init_model=s.model_dir, corpus=s.corpus, output_dir=str(out),
                                  cache_dir=str(s.work / "cache"), batch_size=args.batch,
                                  per_device_batch_size=args.micro_batch, block_size=args.block_size,
                                  max_steps=args.steps, log_every=args.warmup, eval_every=10**9,
                                  checkpoint_every=10**9, eval_fraction=0.0, mixed_precision=args.precision,
                                  num_threads=args.threads), on_log=on_log, log=lambda *_: None)
    if res.padding_fraction != 0.0:
        raise RuntimeError(f"the stage trained on padding ({res.padding_fraction}); packed blocks hold none")
    shutil.rmtree(out, ignore_errors=True)
    return tokens_per_s(args, stamps[args.warmup], stamps[args.steps])


def run_trainer(s: Setup, args, masked_head: bool) -> tuple[float, float]:
    from transformers import (AutoModelForMaskedLM, DataCollatorForLanguageModeling, PrinterCallback, Trainer,
                              TrainerCallback, TrainingArguments)

    stamps = {}

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if state.global_step in (args.warmup, args.steps):
                synchronize()
                stamps[state.global_step] = clocks()

    mlm = DataCollatorForLanguageModeling(s.tokenizer, mlm_probability=0.15)

    def collate(examples):
        batch = mlm(examples)
        batch.pop("attention_mask", None)     # all ones (no padding); the stage passes none either
        return batch

    torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available()
    targs = TrainingArguments(output_dir=str(s.work / "trainer"), per_device_train_batch_size=args.micro_batch,
                              gradient_accumulation_steps=args.batch // args.micro_batch, learning_rate=5e-5,
                              weight_decay=0.0, max_grad_norm=1.0, max_steps=args.steps, lr_scheduler_type="linear",
                              optim="adamw_torch_fused" if gpu else "adamw_torch", logging_strategy="no",
                              save_strategy="no", report_to="none", bf16=args.precision == "bf16",
                              fp16=args.precision == "fp16", use_cpu=not gpu, dataloader_num_workers=0, seed=0,
                              disable_tqdm=True)
    model = AutoModelForMaskedLM.from_pretrained(s.model_dir, dtype=torch.float32)
    trainer = Trainer(model=MaskedHeadMLM(model) if masked_head else model, args=targs, train_dataset=s.blocks,
                      data_collator=collate, callbacks=[Timer()])
    trainer.remove_callback(PrinterCallback)   # it prints the final train_runtime line
    trainer.train()
    del trainer, model
    release()
    return tokens_per_s(args, stamps[args.warmup], stamps[args.steps])


# --- the benchmark -------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=SIZES, default="tiny")
    ap.add_argument("--vocab", type=int, default=1000, help="tokenizer vocabulary to train (at most)")
    ap.add_argument("--steps", type=int, default=150, help="optimizer steps per run")
    ap.add_argument("--warmup", type=int, default=10, help="steps before the timed window (at least 1)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions of the three runs")
    ap.add_argument("--batch", type=int, default=32, help="effective batch (sequences per optimizer step)")
    ap.add_argument("--micro-batch", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads of every run")
    ap.add_argument("--precision", default="no", choices=["no", "bf16", "fp16"])
    ap.add_argument("--lines", type=int, default=20000, help="lines of the generated corpus")
    ap.add_argument("--mfu", action="store_true", help="add model FLOPs utilisation (GPU)")
    ap.add_argument("--gpu-name", default=None, help="peak table key (H100, A100, ...); default: from the device")
    ap.add_argument("--json", default=None, help="also write every figure to this file")
    args = ap.parse_args(argv)
    if not 1 <= args.warmup < args.steps:
        ap.error("need 1 <= --warmup < --steps")
    if args.batch % args.micro_batch:
        ap.error("--batch must be a multiple of --micro-batch")
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    return args


def report(args, out: dict) -> str:
    d, layers, _, _ = SIZES[args.size]
    accum = args.batch // args.micro_batch
    head = (f"{args.size} BERT (hidden {d}, {layers} layers, {out['vocab']:,} vocab), precision {args.precision}, "
            f"{args.threads} thread(s), micro-batch {args.micro_batch} x accumulation {accum} = {args.batch} blocks "
            f"of {args.block_size} tokens, {args.steps} steps timed after {args.warmup}, {args.reps} interleaved "
            f"repetition(s), {out['device']}")
    mfu = "mfu" in out
    rows = []
    for run in RUNS:
        row = [LABELS[run], *(f"{v:,.0f}" for v in spread(out["tokens_per_s"][run])),
               f"{statistics.median(out['tokens_per_cpu_s'][run]):,.0f}"]
        if mfu:
            row.append(f"{out['mfu'][run]:.3f}" if out["mfu"].get(run) is not None else "n/a")
        rows.append(row)
    t1 = markdown_table(["run", "tokens/s min", "median", "max", "tokens per CPU-s (median)"]
                        + (["MFU (median)"] if mfu else []), rows)
    t2 = markdown_table(["ratio (per repetition)", "min", "median", "max", "per CPU-s: median"],
                        [[label, *(f"{v:.2f}" for v in spread(out["ratios"][f"{a}/{b}"])),
                          f"{statistics.median(out['cpu_ratios'][f'{a}/{b}']):.2f}"] for a, b, label in RATIOS])
    note = "No padding column: packed blocks hold no padding (the stage's padding_fraction is 0.0)."
    return f"{head}\n\n{t1}\n\n{t2}\n\n{note}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    s = prepare(args)
    runners = {"stage": lambda rep: run_stage(s, args, rep),
               "trainer_masked": lambda rep: run_trainer(s, args, masked_head=True),
               "trainer_stock": lambda rep: run_trainer(s, args, masked_head=False)}
    per_rep: list[dict[str, tuple[float, float]]] = []   # run -> (tokens per wall s, per CPU s)
    try:
        for rep in range(args.reps):
            figures = {}
            for run in rotated(RUNS, rep):
                figures[run] = runners[run](rep)
                print(f"[bench] repetition {rep + 1}/{args.reps} {run}: {figures[run][0]:,.0f} tokens/s, "
                      f"{figures[run][1]:,.0f} per CPU-s",
                      file=sys.stderr, flush=True)
            per_rep.append(figures)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(s.work)
    out = {"size": args.size, "vocab": s.vocab, "threads": args.threads, "precision": args.precision,
           "batch": args.batch, "micro_batch": args.micro_batch, "block_size": args.block_size, "steps": args.steps,
           "warmup": args.warmup, "reps": args.reps, "device": device_name(),
           "tokens_per_s": {run: [round(r[run][0], 1) for r in per_rep] for run in RUNS},
           "tokens_per_cpu_s": {run: [round(r[run][1], 1) for r in per_rep] for run in RUNS},
           "ratios": {f"{a}/{b}": [round(r[a][0] / r[b][0], 4) for r in per_rep] for a, b, _ in RATIOS},
           "cpu_ratios": {f"{a}/{b}": [round(r[a][1] / r[b][1], 4) for r in per_rep] for a, b, _ in RATIOS},
           "padding_fraction": 0.0}
    if args.mfu:
        d, layers, _, ffn = SIZES[args.size]
        fpt = flops_per_token(layers, d, ffn, args.block_size, s.vocab)
        name = args.gpu_name or next((k for k in PEAK_TFLOPS if k in out["device"]), None)
        out["gflop_per_token"] = round(fpt / 1e9, 4)
        out["mfu"] = {run: (statistics.median(out["tokens_per_s"][run]) * fpt / (PEAK_TFLOPS[name] * 1e12)
                            if name else None) for run in RUNS}
    out["table"] = report(args, out)
    print(out["table"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
