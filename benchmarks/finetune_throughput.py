"""Throughput of the fine-tune stage against `transformers.Trainer`, with and without length grouping.

Three runs fine-tune the same model (a BERT built from a config and saved once, as
benchmarks/pretrain_throughput.py builds it; the classifier starts fresh from seed 0) on the same GLUE-like
task, with the same batch, epochs, max length (128, longest-first truncation of pairs), AdamW (lr 2e-5, linear
decay, no warm-up, no weight decay, clipping at 1.0), precision and torch thread count, and all pad each
batch to its own longest example (dynamic padding):

- **stage**: `stages.finetune.finetune` with `group_by_length: true` (`stages.common.LengthGroupedBatches`);
- **Trainer, grouped**: `Trainer` with `train_sampling_strategy="group_by_length"` (`LengthGroupedSampler`;
  `group_by_length=True` in transformers 4) and `DataCollatorWithPadding`;
- **Trainer, random**: `Trainer` with its default random batches and `DataCollatorWithPadding`.

The data is generated (seeded) in the official GLUE TSV layout: an SST-2-like task of single sentences
(lengths log-normal, median 7 words, long tail to 56, like SST-2's phrases and sentences) and an RTE-like
task of pairs (premise median 36 words, tail to 250; hypothesis median 8), read by the stage from
`data_dir` and by the `Trainer` runs from the same files through `stages.glue.load_split`, tokenized
with the same call the stage makes.

Timing: training time only. The stage's `seconds` includes loading, tokenizing and a dev evaluation after
each epoch, so its training time is taken from its `train_tokens_per_s` (real tokens over the time of its
epoch loops, the evaluation left out): time = epochs x real tokens of the train split / train_tokens_per_s;
the real-token count is checked against the stage's own `padding_fraction` (it must equal the padding of
`LengthGroupedBatches` over these lengths). The `Trainer` runs are timed the same way, over their epoch
loops: a callback sums on_epoch_begin -> on_epoch_end (evaluation and saving are off). Both windows include
the first step. examples/s = epochs x train examples / time; tokens/s counts real (non-pad) tokens, the same
count for every run, so its ratios equal those of examples/s.

Padding fraction: the share of the token slots of the training batches that were padding. The stage
reports its own; for a `Trainer` run its train dataloader (`get_train_dataloader()`) is iterated once
after training and its pad slots counted (attention_mask == 0).

The machine may be shared and its speed may drift, so the three runs are interleaved: each of `--reps`
repetitions runs all three (order rotated from one repetition to the next) for each task, and the tables give
min / median / max of examples/s and of the ratios within a repetition.

    python benchmarks/finetune_throughput.py                                     # tiny BERT, SST-2 and RTE
    python benchmarks/finetune_throughput.py --size small --threads 2
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from pretrain_throughput import (SIZES, device_name, make_words, markdown_table, quiet_trainer_logs,  # noqa: E402
                                 release, rotated, spread, synchronize)
from stages.common import LengthGroupedBatches, padding_fraction, set_seed  # noqa: E402
from stages.corpus import CorpusConfig  # noqa: E402
from stages.finetune import FinetuneConfig, finetune  # noqa: E402
from stages.glue import get_task, load_split  # noqa: E402
from stages.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer  # noqa: E402

RUNS = ("stage", "trainer_grouped", "trainer_random")
LABELS = {"stage": "stage (`group_by_length: true`)", "trainer_grouped": "`Trainer`, group_by_length",
          "trainer_random": "`Trainer`, random batches"}
RATIOS = (("stage", "trainer_grouped", "stage / grouped `Trainer`", 1.0),
          ("stage", "trainer_random", "stage / random-batch `Trainer`", 1.8),
          ("trainer_grouped", "trainer_random", "grouped / random-batch `Trainer`", None))
TITLES = {"sst2": "SST-2-like", "rte": "RTE-like"}


# --- a GLUE-like root ----------------------------------------------------------------------------------------

def _length(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, round(median * math.exp(rng.gauss(0.0, sigma)))))


def make_glue(root: Path, n_train: dict[str, int], n_dev: int, seed: int = 0) -> list[str]:
    """SST-2/ and RTE/ with train.tsv and dev.tsv in the official layout; returns every train text (for the
    tokenizer). SST-2: `sentence<TAB>label`, a cue word decides the label; RTE: `index<TAB>sentence1<TAB>
    sentence2<TAB>label`, an entailed hypothesis is drawn from its premise's words."""
    rng = random.Random(seed)
    words, weights = make_words(rng)
    pos, neg = words[len(words) // 3], words[len(words) // 2]
    texts: list[str] = []

    def words_of(n: int) -> list[str]:
        return rng.choices(words, weights, k=n)

    def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join("\t".join(r) for r in [header] + rows) + "\n")

    def sst2(n: int) -> list[list[str]]:
        rows = []
        for _ in range(n):
            label = rng.random() < 0.55
            w = words_of(_length(rng, 7, 0.75, 1, 56) - 1)
            w.insert(rng.randint(0, len(w)), pos if label else neg)
            rows.append([" ".join(w) + " .", str(int(label))])
        return rows

    def rte(n: int) -> list[list[str]]:
        rows = []
        for i in range(n):
            premise = words_of(_length(rng, 36, 0.6, 4, 250))
            k = _length(rng, 8, 0.35, 3, 30)
            entailed = rng.random() < 0.5
            hyp = rng.sample(premise, min(k, len(premise))) if entailed else words_of(k)
            rows.append([str(i), " ".join(premise).capitalize() + ".", " ".join(hyp).capitalize() + ".",
                         "entailment" if entailed else "not_entailment"])
        return rows

    for split, n_sst2, n_rte in (("train", n_train["sst2"], n_train["rte"]), ("dev", n_dev, n_dev)):
        a, b = sst2(n_sst2), rte(n_rte)
        write(root / "SST-2" / f"{split}.tsv", ["sentence", "label"], a)
        write(root / "RTE" / f"{split}.tsv", ["index", "sentence1", "sentence2", "label"], b)
        if split == "train":
            texts += [r[0] for r in a] + [t for r in b for t in r[1:3]]
    return texts


# --- the three runs ------------------------------------------------------------------------------------------

@dataclass
class Task:
    name: str
    examples: list[dict]        # as the Trainer runs get them
    lengths: list[int]          # tokens per train example (what the stage's _encode makes of it)


@dataclass
class Figures:
    examples_per_s: float
    tokens_per_s: float
    padding_fraction: float


@dataclass
class Setup:
    work: Path
    root: Path
    model_dir: str
    tokenizer: object
    tasks: dict[str, Task]


def encode(tok, task: str, root: Path, max_length: int) -> Task:
    spec = get_task(task)
    examples = load_split(task, "train", str(root))
    a = [e.text_a for e in examples]
    enc = (tok(a, [e.text_b or "" for e in examples], truncation=True, max_length=max_length)
           if examples[0].text_b is not None else tok(a, truncation=True, max_length=max_length))
    rows = [{**{k: enc[k][i] for k in enc.keys()}, "labels": e.label} for i, e in enumerate(examples)]
    assert spec.num_labels == 2
    return Task(task, rows, [len(ids) for ids in enc["input_ids"]])


def prepare(args) -> Setup:
    quiet_trainer_logs()
    from transformers import BertConfig, BertForMaskedLM

    work = Path(tempfile.mkdtemp(prefix="xlt-ft-bench-"))
    root = work / "glue"
    texts = make_glue(root, {"sst2": args.sst2_examples, "rte": args.rte_examples}, args.dev_examples)
    (work / "corpus.txt").write_text("\n".join(texts) + "\n")
    train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(work / "corpus.txt")]),
                                    output_dir=str(work / "model"), vocab_size=args.vocab, min_frequency=1))
    tok = load_tokenizer(str(work / "model"))
    d, layers, heads, ffn = SIZES[args.size]
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=d, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=512,
                               pad_token_id=tok.pad_token_id)).save_pretrained(str(work / "model"))
    tasks = {t: encode(tok, t, root, args.max_length) for t in args.tasks}
    return Setup(work, root, str(work / "model"), tok, tasks)


def run_stage(s: Setup, task: Task, args, rep: int) -> Figures:
    out = s.work / f"stage-{task.name}-{rep}"
    res = finetune(FinetuneConfig(model=s.model_dir, task=task.name, data_dir=str(s.root), output_dir=str(out),
                                  seed=0, num_threads=args.threads, batch_size=args.batch, epochs=args.epochs,
                                  max_length=args.max_length, mixed_precision=args.precision, group_by_length=True,
                                  learning_rate=2e-5, warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=1.0,
                                  log_every=10**6), log=lambda *_: None)
    shutil.rmtree(out, ignore_errors=True)
    # The real-token count behind train_tokens_per_s: the stage's padding must be what LengthGroupedBatches
    # gives over these lengths, or the stage tokenized other examples than the count below assumes.
    batches = LengthGroupedBatches(task.lengths, args.batch, seed=0)
    expected = padding_fraction(task.lengths, [b for e in range(args.epochs) for b in batches.batches(e)])
    if abs(res.padding_fraction - expected) > 1e-6:
        raise RuntimeError(f"{task.name}: the stage's padding {res.padding_fraction} is not {expected}")
    tokens = args.epochs * sum(task.lengths)
    seconds = tokens / res.train_tokens_per_s
    return Figures(args.epochs * len(task.lengths) / seconds, res.train_tokens_per_s, res.padding_fraction)


def run_trainer(s: Setup, task: Task, args, grouped: bool) -> Figures:
    from transformers import (AutoModelForSequenceClassification, DataCollatorWithPadding, PrinterCallback, Trainer,
                              TrainerCallback, TrainingArguments)

    seconds = [0.0]

    class EpochTimer(TrainerCallback):
        def on_epoch_begin(self, a, state, control, **kw):
            synchronize()
            seconds.append(time.perf_counter())

        def on_epoch_end(self, a, state, control, **kw):
            synchronize()
            seconds[0] += time.perf_counter() - seconds.pop()

    torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available()
    targs = TrainingArguments(output_dir=str(s.work / "trainer"), per_device_train_batch_size=args.batch,
                              num_train_epochs=args.epochs, learning_rate=2e-5, weight_decay=0.0, max_grad_norm=1.0,
                              lr_scheduler_type="linear", warmup_steps=0, optim="adamw_torch",
                              train_sampling_strategy="group_by_length" if grouped else "random",
                              eval_strategy="no", logging_strategy="no", save_strategy="no", report_to="none",
                              bf16=args.precision == "bf16", fp16=args.precision == "fp16", use_cpu=not gpu,
                              dataloader_num_workers=0, seed=0, disable_tqdm=True)
    set_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(s.model_dir, num_labels=2, dtype=torch.float32)
    trainer = Trainer(model=model, args=targs, train_dataset=task.examples,
                      data_collator=DataCollatorWithPadding(s.tokenizer), callbacks=[EpochTimer()])
    trainer.remove_callback(PrinterCallback)   # it prints the final train_runtime line
    trainer.train()
    pad = slots = 0
    for batch in trainer.get_train_dataloader():
        mask = batch["attention_mask"]
        pad, slots = pad + int(mask.eq(0).sum()), slots + mask.numel()
    del trainer, model
    release()
    n = args.epochs * len(task.lengths)
    return Figures(n / seconds[0], args.epochs * sum(task.lengths) / seconds[0], pad / max(1, slots))


# --- the benchmark -------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=SIZES, default="tiny")
    ap.add_argument("--vocab", type=int, default=2000, help="tokenizer vocabulary to train (at most)")
    ap.add_argument("--tasks", default="sst2,rte", help="comma-separated: sst2, rte")
    ap.add_argument("--sst2-examples", type=int, default=8000, help="SST-2-like train examples")
    ap.add_argument("--rte-examples", type=int, default=2490, help="RTE-like train examples (RTE has 2,490)")
    ap.add_argument("--dev-examples", type=int, default=64, help="dev examples per task (the stage evaluates them)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions of the three runs")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads of every run")
    ap.add_argument("--precision", default="no", choices=["no", "bf16", "fp16"])
    ap.add_argument("--json", default=None, help="also write every figure to this file")
    args = ap.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not args.tasks or set(args.tasks) - set(TITLES):
        ap.error(f"--tasks: choose from {', '.join(TITLES)}")
    if min(args.reps, args.epochs, args.batch, args.sst2_examples, args.rte_examples, args.dev_examples) < 1:
        ap.error("--reps, --epochs, --batch and the example counts must be at least 1")
    return args


def report(args, s: Setup, out: dict) -> str:
    d, layers, _, _ = SIZES[args.size]
    head = (f"{args.size} BERT (hidden {d}, {layers} layers, {len(s.tokenizer):,} vocab), precision {args.precision}, "
            f"{args.threads} thread(s), batch {args.batch}, {args.epochs} epoch(s), max length {args.max_length}, "
            f"{args.reps} interleaved repetition(s), {out['device']}; train examples: "
            + ", ".join(f"{TITLES[t]} {len(s.tasks[t].lengths):,} (mean {statistics.mean(s.tasks[t].lengths):.1f} "
                        f"tokens)" for t in args.tasks))
    rows, ratio_rows = [], []
    for t in args.tasks:
        fig = out["tasks"][t]
        for run in RUNS:
            eps = spread(fig["examples_per_s"][run])
            rows.append([TITLES[t], LABELS[run], *(f"{v:,.0f}" for v in eps),
                         f"{statistics.median(fig['tokens_per_s'][run]):,.0f}",
                         f"{statistics.median(fig['padding_fraction'][run]):.3f}"])
        for a, b, label, target in RATIOS:
            ratio_rows.append([TITLES[t], label, *(f"{v:.2f}" for v in spread(fig["ratios"][f"{a}/{b}"])),
                               f"≥ {target:.1f}" if target else "—"])
    t1 = markdown_table(["task", "run", "examples/s min", "median", "max", "tokens/s (median)", "padding fraction"],
                        rows)
    t2 = markdown_table(["task", "ratio of examples/s (per repetition)", "min", "median", "max", "target"],
                        ratio_rows)
    return f"{head}\n\n{t1}\n\n{t2}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    s = prepare(args)
    per_rep: dict[str, list[dict[str, Figures]]] = {t: [] for t in args.tasks}
    try:
        for rep in range(args.reps):
            for t in args.tasks:
                task, figures = s.tasks[t], {}
                for run in rotated(RUNS, rep):
                    figures[run] = (run_stage(s, task, args, rep) if run == "stage" else
                                    run_trainer(s, task, args, grouped=run == "trainer_grouped"))
                    print(f"[bench] repetition {rep + 1}/{args.reps} {t} {run}: "
                          f"{figures[run].examples_per_s:,.0f} examples/s, padding "
                          f"{figures[run].padding_fraction:.3f}", file=sys.stderr, flush=True)
                per_rep[t].append(figures)
        out = {"size": args.size, "threads": args.threads, "precision": args.precision, "batch": args.batch,
               "epochs": args.epochs, "max_length": args.max_length, "reps": args.reps, "device": device_name(),
               "tasks": {t: {"train_examples": len(s.tasks[t].lengths), "real_tokens": sum(s.tasks[t].lengths),
                             **{key: {run: [round(getattr(r[run], key), 4) for r in per_rep[t]] for run in RUNS}
                                for key in ("examples_per_s", "tokens_per_s", "padding_fraction")},
                             "ratios": {f"{a}/{b}": [round(r[a].examples_per_s / r[b].examples_per_s, 4)
                                                     for r in per_rep[t]] for a, b, _, _ in RATIOS}}
                         for t in args.tasks}}
        out["table"] = report(args, s, out)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(s.work)
    print(out["table"])
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
