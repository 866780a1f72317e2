"""Throughput of the pretrain stage against a plain `transformers.Trainer` MLM run, in one process.

Both train the same model (same init), on the same packed 128-token blocks, with the same micro-batch,
gradient accumulation, optimizer and torch thread count; both are timed over the optimizer steps after a
warm-up, excluding set-up and saving. Reported: real (non-pad) tokens/s of each, their ratio (target >= 0.95),
the padding fraction of the stage's batches (target ~0), and with --mfu the model FLOPs utilisation
(PaLM-style count, fwd+bwd = 3x fwd, only masked positions get logits).

    python benchmarks/pretrain_throughput.py                       # tiny BERT on CPU (README figures)
    python benchmarks/pretrain_throughput.py --size base --steps 60 --micro-batch 64 --precision bf16 --mfu
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from stages.corpus import CorpusConfig, load_token_cache, tokenize_to_cache  # noqa: E402
from stages.pretrain import PretrainConfig, pretrain  # noqa: E402
from stages.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer  # noqa: E402

SIZES = {  # hidden, layers, heads, ffn
    "tiny": (64, 2, 2, 256),
    "small": (256, 4, 4, 1024),
    "base": (768, 12, 12, 3072),
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "V100": 125.0}


def flops_per_token(layers, d, ffn, seq, vocab, p=0.15) -> float:
    return 6 * layers * (4 * d * d + 2 * d * ffn) + 12 * layers * seq * d + 6 * p * (d * d + d * vocab)


def make_corpus(path: Path, n_lines: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    syll = ["ka", "to", "ri", "ne", "sa", "mo", "lu", "pe", "di", "ga", "vo", "he", "ju", "ba", "fi", "co"]
    words = sorted({"".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(3000)})
    weights = [1.0 / (i + 1) for i in range(len(words))]  # Zipfian
    with open(path, "w") as f:
        for _ in range(n_lines):
            f.write(" ".join(rng.choices(words, weights, k=rng.randint(8, 30))).capitalize() + ".\n")


def trainer_run(model_dir, cache, tok, args, accum) -> float:
    """Plain HF Trainer MLM on the same packed blocks; returns tokens/s over steps after warm-up."""
    from transformers import (AutoModelForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainerCallback,
                              TrainingArguments)

    ids = load_token_cache(cache)
    body = args.block_size - 2
    n = ids.shape[0] // body
    blocks = [{"input_ids": [tok.cls_token_id, *map(int, ids[b * body:(b + 1) * body]), tok.sep_token_id]}
              for b in range(n)]
    times = []

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    targs = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.micro_batch,
                              gradient_accumulation_steps=accum, learning_rate=5e-5, max_steps=args.steps,
                              lr_scheduler_type="linear", logging_strategy="no", save_strategy="no", report_to=[],
                              bf16=args.precision == "bf16", fp16=args.precision == "fp16",
                              use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, seed=0,
                              disable_tqdm=True)
    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    trainer = Trainer(model=model, args=targs, train_dataset=blocks,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=0.15),
                      callbacks=[Timer()])
    trainer.train()
    w = args.warmup
    return (len(times) - 1 - w) * args.batch * args.block_size / (times[-1] - times[w])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=SIZES, default="tiny")
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32, help="effective batch (sequences per optimizer step)")
    ap.add_argument("--micro-batch", type=int, default=32)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--precision", default="no", choices=["no", "bf16", "fp16"])
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--mfu", action="store_true")
    ap.add_argument("--gpu-name", default=None, help="peak table key (H100, A100, ...); default: from the device")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import BertConfig, BertForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="xlt-bench-"))
    make_corpus(work / "corpus.txt", args.lines)
    train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(work / "corpus.txt")]), output_dir=str(work / "model"),
                                    vocab_size=args.vocab, min_frequency=1))
    tok = load_tokenizer(str(work / "model"))
    d, layers, heads, ffn = SIZES[args.size]
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                               intermediate_size=ffn, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
                    ).save_pretrained(str(work / "model"))
    corpus = CorpusConfig(files=[str(work / "corpus.txt")])
    cache = tokenize_to_cache(corpus, tok, work / "cache", log=lambda *_: None)
    accum = args.batch // args.micro_batch

    # The stage: time the same window of steps through its on_log hook (log every step).
    stamps = []

    def on_log(step, m):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    res = pretrain(PretrainConfig(init_model=str(work / "model"), corpus=corpus, output_dir=str(work / "ours"),
                                  cache_dir=str(work / "cache"), batch_size=args.batch, per_device_batch_size=args.micro_batch,
                                  block_size=args.block_size, max_steps=args.steps, log_every=1, eval_every=10**9,
                                  checkpoint_every=10**9, eval_fraction=0.0, mixed_precision=args.precision,
                                  num_threads=args.threads), on_log=on_log, log=lambda *_: None)
    w = args.warmup
    ours = (len(stamps) - 1 - w) * args.batch * args.block_size / (stamps[-1] - stamps[w])
    theirs = trainer_run(str(work / "model"), cache, tok, args, accum)
    out = {"size": args.size, "threads": args.threads, "precision": args.precision, "batch": args.batch,
           "micro_batch": args.micro_batch, "block_size": args.block_size, "steps": args.steps,
           "stage_tokens_per_s": round(ours), "trainer_tokens_per_s": round(theirs), "ratio": round(ours / theirs, 3),
           "padding_fraction": res.padding_fraction,
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    if args.mfu:
        fpt = flops_per_token(layers, d, ffn, args.block_size, len(tok))
        name = args.gpu_name or next((k for k in PEAK_TFLOPS if k in out["device"]), None)
        out["gflop_per_token"] = round(fpt / 1e9, 4)
        if name:
            out["mfu_stage"] = round(ours * fpt / (PEAK_TFLOPS[name] * 1e12), 4)
            out["mfu_trainer"] = round(theirs * fpt / (PEAK_TFLOPS[name] * 1e12), 4)
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
