"""GPU check: every GPU path of the project in one run, one table (about 8 minutes at most on one H200).

Sections (each isolated: a failure is a FAILED row with its error, the others still run, and the exit code
is 1 when any section failed):

  pretrain-bf16   continued MLM pretraining of a BERT-base-sized model through the pretrain stage's entry
                  (stages/pretrain.py `pretrain`), bf16 autocast: tokens/s over the steps after the warm-up,
                  MFU, peak memory
  pretrain-fp16   the same in fp16, where Accelerate's GradScaler scales the loss (the V100 path)
  finetune-sweep  four GLUE fine-tunes at `resources.finetune.gpu: 0.25` through the real sweep (`xlt run` on a
                  generated sweep YAML, in a Ray of its own): all four running at once, none out of memory,
                  four processes, each with the memory cap of its share (orchestrator/runner.py)
  features        hidden-state extraction for the structural probe (stages/features.py) on CUDA
  probe           the structural probe (stages/probe.py) on CUDA
  wic             WiC (stages/wic.py) on CUDA
  winogender      an RTE fine-tune (stages/finetune.py, model kept) scored on Winogender (stages/winogender.py)

The model is BERT-base-sized and randomly initialised (no hub access needed): 12 layers, hidden 768, 12 heads,
FFN 3072, 30,522 embedding rows, pretrained on blocks of 128 tokens (`--seq 512` for the long-sequence
phase). Its WordPiece tokenizer is learned on the synthetic corpus (synthetic/), which also writes every
dataset in its real layout; only the first rows of the embedding table are ever looked up.

    python benchmarks/gpu_check.py                   # writes runs/gpu_check/gpu_check.json and .md
    python benchmarks/gpu_check.py --cpu-dry-run --out /tmp/gpu_check.json   # every size shrunk, on CPU (~1 min)
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

SECTIONS = ("pretrain-bf16", "pretrain-fp16", "finetune-sweep", "features", "probe", "wic", "winogender")
CPU_NA = "n/a (cpu)"
GIB = 2 ** 30

# Dense tensor-core peaks (no structured sparsity), TFLOP/s: bf16, or fp16 where the GPU has no bf16 (V100, T4).
# On these GPUs dense fp16 equals dense bf16, so the fp16 row is measured against the same peak. First match wins.
PEAK_TFLOPS = (
    (r"H[12]00.*NVL", 835.0, "H100/H200 NVL"),
    (r"H100.*PCIe", 756.0, "H100 PCIe"),
    (r"H200|H100|GH200", 989.0, "H100/H200 SXM"),
    (r"A100", 312.0, "A100"),
    (r"L40S", 362.0, "L40S"),
    (r"\bL4\b", 121.0, "L4"),
    (r"\bA10\b", 125.0, "A10"),
    (r"V100", 125.0, "V100 (fp16)"),
    (r"\bT4\b", 65.0, "T4 (fp16)"),
)

MFU_FORMULA = ("MFU = tokens/s x (6*N + 12*L*H*S) / peak, per token of the packed blocks ([CLS] and [SEP] "
               "included, no padding). N = parameters of the L transformer layers (attention, FFN and their "
               "LayerNorms, weights and biases); the embeddings and the MLM head are not counted (the head's "
               "vocabulary projection runs only at the 15% predicted positions). 12*L*H*S: attention scores and "
               "their product with the values (H = hidden size, S = block length)")


def layer_params(model: torch.nn.Module) -> int:
    """N of the MFU formula: the parameters of the transformer layers (BERT: L * (12 H^2 + 13 H) with FFN 4H)."""
    return sum(p.numel() for p in model.base_model.encoder.parameters())


def flops_per_token(n_layer_params: int, layers: int, hidden: int, seq: int) -> float:
    """Training FLOPs per token: 6*N (forward and backward through the layers' weights) + 12*L*H*S (attention)."""
    return 6.0 * n_layer_params + 12.0 * layers * hidden * seq


def mfu(tokens_per_s: float, fpt: float, peak_tflops: float) -> float:
    return tokens_per_s * fpt / (peak_tflops * 1e12)


def gpu_peak(name: str) -> tuple[float, str] | None:
    for pattern, tflops, label in PEAK_TFLOPS:
        if re.search(pattern, name):
            return tflops, label
    return None


@dataclass(frozen=True)
class Sizes:
    # the model
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int                  # embedding rows (the tokenizer uses the first ones)
    tokenizer_vocab: int
    # pretraining
    seq: int
    batch: int
    micro_batch: int
    warmup: int                 # steps run before the timed window
    steps: int                  # steps timed
    # the synthetic world (SyntheticConfig knobs)
    world: dict
    # fine-tuning (sweep, WiC, RTE) and the evaluation stages
    ft_epochs: float
    ft_max_length: int
    ft_batch: int
    ft_lr: float
    ft_train_examples: int | None
    gpu_share: float
    ft_cpu: float
    feature_layers: tuple[int, ...]
    max_sentences: int | None
    probe_layer: int
    probe_epochs: int
    threads: int


def gpu_sizes(args) -> Sizes:
    seq = args.seq
    batch = args.batch or (128 if seq <= 128 else 32)
    return Sizes(hidden=768, layers=12, heads=12, ffn=3072, vocab=30522, tokenizer_vocab=2000,
                 seq=seq, batch=batch, micro_batch=args.micro_batch or batch, warmup=args.warmup or 10,
                 steps=args.steps or 100,
                 world=dict(seed=0, source_tokens=20_000, english_tokens=1_000_000, train_size=2000, dev_size=500,
                            scandisent_train=60, scandisent_eval=20),
                 ft_epochs=args.ft_epochs or 5.0, ft_max_length=64, ft_batch=32, ft_lr=2e-5, ft_train_examples=None,
                 gpu_share=0.25, ft_cpu=2.0, feature_layers=(0, 6, 12), max_sentences=None, probe_layer=6,
                 probe_epochs=5, threads=max(1, min(8, os.cpu_count() or 1)))


def dry_sizes(args) -> Sizes:
    return Sizes(hidden=64, layers=2, heads=2, ffn=256, vocab=512, tokenizer_vocab=300,
                 seq=64, batch=16, micro_batch=8, warmup=args.warmup or 2, steps=args.steps or 6,
                 world=dict(seed=0, source_tokens=2_000, english_tokens=15_000, train_size=120, dev_size=40,
                            scandisent_train=60, scandisent_eval=20, axg_pairs=20),
                 ft_epochs=args.ft_epochs or 3.0, ft_max_length=48, ft_batch=16, ft_lr=1e-3, ft_train_examples=None,
                 gpu_share=0.0, ft_cpu=1.0, feature_layers=(0, 1, 2), max_sentences=40, probe_layer=2, probe_epochs=2,
                 threads=1)


class Skip(Exception):
    """The section does not apply on this machine (reported as SKIPPED, not as a failure)."""


class CheckFailed(Exception):
    """The section ran but a check failed; `values` still go into the table."""

    def __init__(self, message: str, values: dict):
        super().__init__(message)
        self.values = values


def progress(msg: str) -> None:
    print(f"[gpu-check] {msg}", flush=True)


def gib(n_bytes: float | None) -> str:
    return "–" if n_bytes is None else f"{n_bytes / GIB:.2f} GiB"


class Context:
    """What the sections share: sizes, the work folder, the device, and the data and model built once (a
    failure to build them fails each section that needs them, with that error)."""

    def __init__(self, args, sizes: Sizes, work: Path):
        self.args, self.s, self.work = args, sizes, work
        self.dry = args.cpu_dry_run
        self.cuda = torch.cuda.is_available() and not self.dry
        self.device_name = torch.cuda.get_device_name() if self.cuda else "cpu"
        self.peak = None                # (tflops, where it came from)
        if self.cuda:
            found = gpu_peak(self.device_name)
            if args.peak_tflops:
                self.peak = (args.peak_tflops, "--peak-tflops")
            elif found:
                self.peak = (found[0], f"{found[1]} dense, from the device name")
        self._memo: dict[str, object] = {}
        self.features_dir: str | None = None

    def once(self, key: str, build: Callable[[], object]):
        if key not in self._memo:
            try:
                self._memo[key] = build()
            except Exception as e:  # remembered: every section that needs it fails with the same error
                self._memo[key] = e
        value = self._memo[key]
        if isinstance(value, Exception):
            raise RuntimeError(f"{key} could not be built: {type(value).__name__}: {value}") from value
        return value

    def world(self):
        def build():
            from synthetic import SyntheticConfig, generate
            t = time.perf_counter()
            res = generate(SyntheticConfig(out_dir=str(self.work / "world"), **self.s.world))
            progress(f"synthetic world written in {time.perf_counter() - t:.1f}s -> {res.out_dir}")
            return res
        return self.once("the synthetic world", build)

    def model(self) -> "ModelInfo":
        def build():
            from transformers import BertConfig, BertForMaskedLM

            from stages.corpus import CorpusConfig
            from stages.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer
            w = self.world()
            s = self.s
            d = self.work / "model"
            t = time.perf_counter()
            train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[w.corpora["E"]]), output_dir=str(d),
                                            vocab_size=s.tokenizer_vocab, min_frequency=1))
            tok = load_tokenizer(str(d))
            torch.manual_seed(0)
            cfg = BertConfig(vocab_size=max(s.vocab, len(tok)), hidden_size=s.hidden, num_hidden_layers=s.layers,
                             num_attention_heads=s.heads, intermediate_size=s.ffn,
                             max_position_embeddings=max(512, s.seq), pad_token_id=tok.pad_token_id)
            model = BertForMaskedLM(cfg)
            n = layer_params(model)
            model.save_pretrained(str(d))
            info = ModelInfo(str(d), len(tok), cfg.vocab_size, n)
            progress(f"model: BERT {s.layers} layers, hidden {s.hidden}, {s.heads} heads, FFN {s.ffn}, "
                     f"{cfg.vocab_size:,} embedding rows ({len(tok):,} tokens in its tokenizer), "
                     f"{sum(p.numel() for p in model.parameters()):,} parameters, {n:,} in its layers; built in "
                     f"{time.perf_counter() - t:.1f}s")
            return info
        return self.once("the model", build)

    # --- where a section ran ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def watch(self):
        """Counts the CUDA allocations and the peak memory of the block (nothing on CPU), and its seconds
        (queued kernels included)."""
        w = {"allocations": 0, "peak": None, "seconds": None}
        if self.cuda:
            gc.collect()
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_stats().get("allocation.all.allocated", 0)
        t0 = time.perf_counter()
        yield w
        if self.cuda:
            torch.cuda.synchronize()
            w["allocations"] = torch.cuda.memory_stats().get("allocation.all.allocated", 0) - before
            w["peak"] = torch.cuda.max_memory_allocated()
        w["seconds"] = time.perf_counter() - t0

    def where(self, w: dict, logged: str | None = None) -> str:
        """The device the block ran on, by its CUDA allocations (and the stage's own log where it says);
        on a GPU run, anything but CUDA is a failure."""
        on_cuda = w["allocations"] > 0 and (logged is None or logged == "cuda")
        if self.cuda and not on_cuda:
            raise RuntimeError(f"ran on {logged or 'cpu'}, not on cuda ({w['allocations']} CUDA allocations)")
        return f"cuda ({self.device_name})" if on_cuda else "cpu"

    def peak_memory(self, w: dict):
        return gib(w["peak"]) if self.cuda else CPU_NA

    def cleanup(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()


@dataclass(frozen=True)
class ModelInfo:
    dir: str
    tokenizer_size: int
    embedding_rows: int
    layer_params: int


PRECISION = r"precision (\w+)"    # how the stages log the precision they ran at
DEVICE = r" on (\w+)$"            # ... and features / probe their device


def logged_value(lines: list[str], pattern: str) -> str | None:
    for line in lines:
        m = re.search(pattern, line)
        if m:
            return m.group(1)
    return None


def logged_precision(lines: list[str]) -> str:
    """The precision a stage says it ran at ("no": fp32)."""
    used = logged_value(lines, PRECISION) or "?"
    return "fp32" if used == "no" else used


# --- the sections ------------------------------------------------------------------------------------

def section_pretrain(ctx: Context, precision: str) -> dict:
    from stages.corpus import CorpusConfig
    from stages.pretrain import PretrainConfig, pretrain

    if ctx.cuda and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise Skip(f"{ctx.device_name} has no bf16 (V100 and older): the fp16 row is its path")
    s, m, w = ctx.s, ctx.model(), ctx.world()
    stamps: list[float] = []
    losses: list[float] = []

    def on_log(step: int, metrics: dict) -> None:
        if ctx.cuda:
            torch.cuda.synchronize()   # the step's kernels belong to its time
        stamps.append(time.perf_counter())
        losses.append(metrics["train/loss"])

    # Evidence of the fp16 path: Accelerate's GradScaler steps once per optimizer step.
    scaler_updates, scales = [0], []
    original_update = torch.amp.GradScaler.update

    def counting_update(self, *a, **kw):
        scaler_updates[0] += 1
        out = original_update(self, *a, **kw)
        scales.append(float(self.get_scale()))
        return out

    lines: list[str] = []
    out = ctx.work / f"pretrain-{precision}"
    cfg = PretrainConfig(init_model=m.dir, corpus=CorpusConfig(files=[w.corpora["E"]]), output_dir=str(out),
                         cache_dir=str(ctx.work / "cache"), batch_size=s.batch, per_device_batch_size=s.micro_batch,
                         block_size=s.seq, max_steps=s.warmup + s.steps, learning_rate=1e-4, warmup_steps=0,
                         log_every=s.warmup, eval_every=10 ** 9, checkpoint_every=10 ** 9, eval_fraction=0.0,
                         mixed_precision=precision, num_threads=s.threads, seed=0)
    # Logged (and synchronised) every `warmup` steps only: the steps between run as they would in a sweep,
    # and in bf16 they must not sync with the host at all (fp16's GradScaler reads its inf check every step).
    sync_debug = {"XLT_SYNC_DEBUG": "error"} if ctx.cuda and precision == "bf16" else {}
    torch.amp.GradScaler.update = counting_update
    os.environ.update(sync_debug)
    try:
        with ctx.watch() as watch:
            res = pretrain(cfg, on_log=on_log, log=lines.append)
    finally:
        torch.amp.GradScaler.update = original_update
        for k in sync_debug:
            os.environ.pop(k, None)
    shutil.rmtree(out, ignore_errors=True)   # the saved model (0.4 GB at BERT-base size) is not needed

    used = logged_precision(lines)
    expected = math.ceil((s.warmup + s.steps) / s.warmup)
    if len(stamps) != expected:
        raise RuntimeError(f"{len(stamps)} logged steps, expected {expected}")
    seconds = stamps[-1] - stamps[0]     # steps warmup+1 .. warmup+steps
    tokens_per_s = s.steps * s.batch * s.seq / seconds
    fpt = flops_per_token(m.layer_params, s.layers, s.hidden, s.seq)
    values = {"tokens_per_s": tokens_per_s, "precision": used, "timed_steps": s.steps, "warmup_steps": s.warmup,
              "timed_seconds": seconds, "flops_per_token": fpt, "layer_params": m.layer_params,
              "first_loss": losses[0], "last_loss": losses[-1], "padding_fraction": res.padding_fraction,
              "grad_scaler_updates": scaler_updates[0], "final_loss_scale": scales[-1] if scales else None,
              "peak_memory_bytes": watch["peak"]}
    if ctx.cuda:
        values["mfu"] = mfu(tokens_per_s, fpt, ctx.peak[0]) if ctx.peak else None
        values["mfu_text"] = f"{values['mfu']:.1%}" if ctx.peak else "n/a (unknown GPU: give --peak-tflops)"
    else:
        values["mfu_text"] = CPU_NA
    values["device"] = ctx.where(watch)
    values["peak_memory"] = ctx.peak_memory(watch)
    accum = s.batch // s.micro_batch
    scaler = (f"; GradScaler: {scaler_updates[0]} updates, final scale {scales[-1]:g}" if scales else "")
    values["details"] = (f"precision {used} (the stage's log){scaler}; batch {s.batch} x {s.seq} tokens "
                         f"(micro-batch {s.micro_batch}, accumulation {accum}); {s.steps} steps timed after "
                         f"{s.warmup} warm-up{'; no host sync between logging steps' if sync_debug else ''}; loss {losses[0]:.3f} -> {losses[-1]:.3f}; padding "
                         f"{res.padding_fraction:.3f}; {fpt / 1e6:.1f} MFLOP/token")
    problems = []
    if ctx.cuda and used != precision:
        problems.append(f"the stage ran at precision {used}, not {precision}")
    if ctx.cuda and precision == "fp16" and scaler_updates[0] < s.warmup + s.steps:
        problems.append(f"GradScaler stepped {scaler_updates[0]} times in {s.warmup + s.steps} steps")
    if not all(math.isfinite(v) for v in losses):
        problems.append(f"non-finite training loss ({losses[-1]})")
    if not tokens_per_s > 0:
        problems.append(f"tokens/s {tokens_per_s}")
    if problems:
        raise CheckFailed("; ".join(problems), values)
    return values


def section_finetune_sweep(ctx: Context) -> dict:
    """Four fine-tunes at a fractional GPU share, through `xlt run` and Ray Tune."""
    import ray
    import yaml

    from orchestrator.cli import main as xlt_main
    from orchestrator.config import load_sweep
    from orchestrator.graph import build_graph
    from stages.common import read_json

    s, m, w = ctx.s, ctx.model(), ctx.world()
    d = ctx.work / "sweep"
    d.mkdir(parents=True, exist_ok=True)
    seeds = [1, 2, 3, 4]
    cfg = {
        "name": "gpu-check", "output_dir": str(d / "runs"), "tracking_uri": f"sqlite:///{d}/mlruns/mlflow.db",
        "max_concurrent_trials": len(seeds), "max_failures": 0,   # a crash (an OOM) must show, not be retried
        "corpora": {"E": {"files": [w.corpora["E"]]}},
        "sources": {"base": {"model": m.dir, "label": "base"}},
        "target": {"corpus": "E", "vocab_size": s.tokenizer_vocab},
        "experiments": {"transfer_from": [], "direct": ["base"], "scratch": False},
        "finetune": {"tasks": ["sst2"], "seeds": seeds, "data_dir": w.glue_dir, "epochs": s.ft_epochs,
                     "batch_size": s.ft_batch, "max_length": s.ft_max_length, "learning_rate": s.ft_lr,
                     "max_train_examples": s.ft_train_examples, "log_every": 50},
        "resources": {"finetune": {"cpu": s.ft_cpu, "gpu": s.gpu_share}},
    }
    path = d / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    graph = build_graph(load_sweep(path))
    nodes = [n for n in graph.nodes.values() if n.kind == "finetune"]
    if len(nodes) != len(seeds) or len(graph.nodes) != len(seeds):
        raise RuntimeError(f"the sweep has {len(graph.nodes)} nodes ({len(nodes)} fine-tunes), expected "
                           f"{len(seeds)} fine-tunes only")

    # A Ray of our own: a fresh local instance (never one of another user's clusters), its own temp folder
    # (short: Ray's socket paths must stay under 108 characters), free ports, no dashboard.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"   # inherited by the workers, as `xlt run` sets it
    # Ray replaces builtins.print in the driver once it relays a worker's output (RAY_TQDM_PATCH_PRINT). The
    # sweep's searcher holds the original print (run_sweep's log=print) and Tune pickles it when the Tuner is
    # made, which then fails ("not the same object as builtins.print") if an idle worker printed first.
    os.environ["RAY_TQDM_PATCH_PRINT"] = "0"
    ray_tmp = tempfile.mkdtemp(prefix="xgc-ray-", dir="/tmp")
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=int(max(os.cpu_count() or 1, len(seeds) * s.ft_cpu)),
                 num_gpus=1 if ctx.cuda else 0, include_dashboard=False, object_store_memory=200 * 2 ** 20,
                 _temp_dir=ray_tmp)
    try:
        rc = xlt_main(["run", str(path)])
    finally:
        if started_ray:
            ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)

    trials, problems = [], []
    for n in nodes:
        nd = graph.node_dir(n.id)
        failed = (nd / "FAILED").read_text() if (nd / "FAILED").exists() else None
        done = read_json(nd / "DONE") if (nd / "DONE").exists() else None
        started = read_json(nd / "STARTED") if (nd / "STARTED").exists() else {}
        trials.append({"node": n.id, "pid": started.get("pid"), "done": done is not None,
                       "error": failed.splitlines()[0] if failed else None,
                       "started_at": done and done["started_at"], "finished_at": done and done["finished_at"],
                       "seconds": done and done["seconds"], "gpu_memory": done and done.get("gpu_memory"),
                       "metrics": done and done.get("metrics"),
                       "train_tokens_per_s": done and done["result"]["train_tokens_per_s"]})
    done_trials = [t for t in trials if t["done"]]
    pids = [t["pid"] for t in trials]
    values: dict = {"trials": trials, "exit_code": rc, "pids": pids}
    if rc != 0:
        problems.append(f"xlt run exited with {rc}")
    if len(done_trials) != len(seeds):
        problems.append(f"{len(done_trials)}/{len(seeds)} fine-tunes done; errors: "
                        + "; ".join(f"{t['node']}: {t['error']}" for t in trials if not t["done"]))
    oom = [t["node"] for t in trials if t["error"] and re.search(r"out of memory|OutOfMemory", t["error"], re.I)]
    if oom:
        problems.append(f"out of memory: {', '.join(oom)}")
    if len(set(pids)) != len(seeds) or None in pids:
        problems.append(f"pids {pids}: expected {len(seeds)} distinct processes")
    overlap = spread = None
    if done_trials:
        overlap = min(t["finished_at"] for t in done_trials) - max(t["started_at"] for t in done_trials)
        spread = max(t["started_at"] for t in done_trials) - min(t["started_at"] for t in done_trials)
        values.update(overlap_seconds=overlap, start_spread_seconds=spread)
        if len(done_trials) == len(seeds) and overlap <= 0:
            problems.append(f"the four trials did not all run at once (the last started {-overlap:.1f}s after the "
                            "first had finished); raise --ft-epochs")
        values["tokens_per_s"] = sum(t["train_tokens_per_s"] for t in done_trials)
    caps = [t["gpu_memory"] for t in done_trials]
    if ctx.cuda:
        bad = [t["node"] for t in done_trials if not t["gpu_memory"]
               or abs(t["gpu_memory"]["fraction"] - s.gpu_share) > 1e-9]
        if bad:
            problems.append(f"no memory cap of {s.gpu_share} recorded for {', '.join(bad)}")
        over = [t["node"] for t in done_trials if t["gpu_memory"]
                and not 0 < t["gpu_memory"]["max_memory_allocated"] <= t["gpu_memory"]["cap_bytes"]]
        if over:
            problems.append(f"peak memory not within (0, cap] for {', '.join(over)}")
        peaks = [c["max_memory_allocated"] for c in caps if c]
        values["peak_memory"] = f"{gib(max(peaks))} max of 4" if peaks else "–"
        values["device"] = f"cuda ({ctx.device_name}), 4 x {s.gpu_share:g}"
        cap_text = (f"each capped at {s.gpu_share:g} = {gib(caps[0]['cap_bytes'])}" if caps and caps[0]
                    else "no cap recorded")
    else:
        values["peak_memory"] = CPU_NA
        values["device"] = "cpu (gpu share 0)"
        cap_text = "memory cap n/a (cpu)"
    secs = ", ".join(f"{t['seconds']:.1f}" for t in done_trials)
    values["details"] = (f"{len(done_trials)}/{len(seeds)} done via `xlt run` (Ray Tune), pids "
                         f"{', '.join(map(str, pids))}; all four running together for "
                         + (f"{overlap:.1f}s (starts within {spread:.1f}s)" if overlap is not None else "?")
                         + f"; {cap_text}; trial seconds {secs}; tokens/s summed over the four")
    values["mfu_text"] = "–"
    if problems:
        raise CheckFailed("; ".join(problems), values)
    return values


def section_features(ctx: Context) -> dict:
    from stages.features import FeaturesConfig, extract_features

    s, m, w = ctx.s, ctx.model(), ctx.world()
    lines: list[str] = []
    cfg = FeaturesConfig(model=m.dir, splits=dict(w.conllu), layers=list(s.feature_layers),
                         output_dir=str(ctx.work / "features"), batch_size=64, max_sentences=s.max_sentences,
                         num_threads=s.threads)
    with ctx.watch() as watch:
        res = extract_features(cfg, log=lines.append)
    device = ctx.where(watch, logged_value(lines, DEVICE))
    ctx.features_dir = res.output_dir
    words = sum(res.words.values())
    return {"device": device, "peak_memory": ctx.peak_memory(watch), "mfu_text": "–", "words": res.words,
            "details": f"layers {list(res.layers)}; " + ", ".join(f"{k} {v:,}" for k, v in res.sentences.items())
                       + f" sentences, {words:,} words; precision {logged_precision(lines)}"}


def _random_features(ctx: Context) -> str:
    """Features in the stage's layout from random vectors, so the probe runs even when extraction failed."""
    import numpy as np

    from stages.features import read_conllu, write_features_dir
    rng = np.random.default_rng(0)
    splits = {}
    for split, path in ctx.world().conllu.items():
        sentences = read_conllu(path)[0][:ctx.s.max_sentences]
        rows = sum(len(x) for x in sentences)
        splits[split] = (sentences, {ctx.s.probe_layer: rng.standard_normal((rows, ctx.s.hidden)).astype("float32")})
    return str(write_features_dir(ctx.work / "features-random", ctx.s.hidden, splits))


def section_probe(ctx: Context) -> dict:
    from stages.probe import ProbeConfig, train_probe

    s = ctx.s
    source = "the features section"
    features = ctx.features_dir
    if features is None:
        features, source = _random_features(ctx), "random vectors (the features section failed)"
    lines: list[str] = []
    cfg = ProbeConfig(features_dir=features, layer=s.probe_layer, output_dir=str(ctx.work / "probe"),
                      epochs=s.probe_epochs, num_threads=s.threads)
    with ctx.watch() as watch:
        res = train_probe(cfg, log=lines.append)
    device = ctx.where(watch, logged_value(lines, DEVICE))
    values = {"device": device, "peak_memory": ctx.peak_memory(watch), "mfu_text": "–", "uuas": res.test_uuas,
              "dspr": res.test_dspr,
              "details": f"layer {res.layer}, rank {res.rank}, {res.epochs_run} epochs on {source}; "
                         f"{res.test_split} UUAS {res.test_uuas:.3f}, DSpr {res.test_dspr:.3f}"}
    if not (0 <= res.test_uuas <= 1 and math.isfinite(res.best_dev_loss)):
        raise CheckFailed(f"UUAS {res.test_uuas}, best dev loss {res.best_dev_loss}", values)
    return values


def section_wic(ctx: Context) -> dict:
    from stages.wic import WicConfig, run_wic

    s, m, w = ctx.s, ctx.model(), ctx.world()
    cfg = WicConfig(model=m.dir, data_dir=w.wic_dir, output_dir=str(ctx.work / "wic"), seed=1, epochs=1.0,
                    batch_size=s.ft_batch, max_length=s.ft_max_length, learning_rate=s.ft_lr,
                    max_train_examples=s.ft_train_examples, num_threads=s.threads)
    lines: list[str] = []
    with ctx.watch() as watch:
        res = run_wic(cfg, log=lines.append)
    values = {"device": ctx.where(watch), "peak_memory": ctx.peak_memory(watch), "mfu_text": "–",
              "accuracy": res.accuracy,
              "details": f"{res.train_examples:,} train / {res.dev_examples:,} dev pairs, {res.steps} steps, "
                         f"precision {logged_precision(lines)}; dev accuracy {res.accuracy:.3f}"}
    if not (0 <= res.accuracy <= 1 and res.steps > 0):
        raise CheckFailed(f"accuracy {res.accuracy}, steps {res.steps}", values)
    return values


def section_winogender(ctx: Context) -> dict:
    from stages.finetune import FinetuneConfig, finetune
    from stages.winogender import WinogenderConfig, evaluate_winogender

    s, m, w = ctx.s, ctx.model(), ctx.world()
    rte_dir = ctx.work / "rte"
    ft = FinetuneConfig(model=m.dir, task="rte", data_dir=w.glue_dir, output_dir=str(rte_dir), seed=1, epochs=1.0,
                        batch_size=s.ft_batch, max_length=s.ft_max_length, learning_rate=s.ft_lr, save_model=True,
                        max_train_examples=s.ft_train_examples, num_threads=s.threads)
    with ctx.watch() as ft_watch:
        rte = finetune(ft, log=lambda *_: None)
    ft_seconds, ft_device = ft_watch["seconds"], ctx.where(ft_watch)
    cfg = WinogenderConfig(model=str(rte_dir / "model"), data_file=w.axg, output_dir=str(ctx.work / "winogender"),
                           max_length=s.ft_max_length, num_threads=s.threads)
    with ctx.watch() as watch:
        res = evaluate_winogender(cfg, log=lambda *_: None)
    seconds, device = watch["seconds"], ctx.where(watch)
    values = {"device": device, "peak_memory": ctx.peak_memory(watch), "mfu_text": "–", "accuracy": res.accuracy,
              "gender_parity": res.gender_parity, "rte_seconds": ft_seconds, "winogender_seconds": seconds,
              "rte_device": ft_device,
              "details": f"RTE fine-tune {ft_seconds:.1f}s on {ft_device.split(' ')[0]} ({rte.steps} steps, "
                         f"accuracy {rte.metrics.get('accuracy', float('nan')):.3f}), then Winogender {seconds:.1f}s: "
                         f"{res.examples} examples, accuracy {res.accuracy:.3f}, gender parity "
                         f"{res.gender_parity:.3f}"}
    if not (0 <= res.accuracy <= 1 and res.pairs > 0):
        raise CheckFailed(f"accuracy {res.accuracy}, {res.pairs} pairs", values)
    return values


RUNNERS: dict[str, Callable[[Context], dict]] = {
    "pretrain-bf16": lambda ctx: section_pretrain(ctx, "bf16"),
    "pretrain-fp16": lambda ctx: section_pretrain(ctx, "fp16"),
    "finetune-sweep": section_finetune_sweep,
    "features": section_features,
    "probe": section_probe,
    "wic": section_wic,
    "winogender": section_winogender,
}


# --- the table -------------------------------------------------------------------------------------

def run_section(ctx: Context, name: str, index: int) -> dict:
    progress(f"{index}/{len(SECTIONS)} {name}: start")
    t = time.perf_counter()
    row = {"check": name}
    try:
        values = RUNNERS[name](ctx)
        row.update(status="ok", **values)
    except Skip as e:
        row.update(status="SKIPPED", details=str(e))
    except CheckFailed as e:
        row.update(e.values)
        row.update(status="FAILED", error=str(e))
    except Exception as e:
        traceback.print_exc()
        row.update(status="FAILED", error=f"{type(e).__name__}: {e}")
    finally:
        ctx.cleanup()
    row["seconds"] = time.perf_counter() - t
    progress(f"{index}/{len(SECTIONS)} {name}: {row['status']} in {row['seconds']:.1f}s"
             + (f": {row['error']}" if row.get("error") else ""))
    return row


def _cell(value) -> str:
    return str(value).replace("|", "/").replace("\n", " ")


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({'CPU dry run' if report['cpu_dry_run'] else report['device']})", "",
             f"- device: {report['device']}; torch {report['torch']}, CUDA {report['cuda'] or 'none'}",
             f"- model: {report['model']}",
             f"- peak used for MFU: {report['peak']}",
             f"- {report['mfu_formula']}",
             f"- total {report['total_seconds']:.0f}s; {report['failed']} section(s) failed", "",
             "| check | status | seconds | device | tokens/s | MFU | peak memory | details |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        tps = r.get("tokens_per_s")
        details = r.get("details", "")
        if r.get("error"):
            details = f"**{r['error']}**" + (f"; {details}" if details else "")
        lines.append("| " + " | ".join(_cell(c) for c in (
            r["check"], r["status"], f"{r['seconds']:.1f}", r.get("device", "–"),
            f"{tps:,.0f}" if isinstance(tps, (int, float)) else "–", r.get("mfu_text", "–"),
            r.get("peak_memory", "–"), details)) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/gpu_check/gpu_check.json",
                    help="the report: <out> with suffix .json (JSON) and .md (the markdown table)")
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="tiny model, few steps, GPU shares 0, CPU only: the whole check in about a minute")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="dense peak of this GPU at the training precision (default: from the device name)")
    ap.add_argument("--seq", type=int, default=128, choices=[128, 512], help="pretraining block length")
    ap.add_argument("--batch", type=int, default=None, help="pretraining sequences per step (128; 32 at --seq 512)")
    ap.add_argument("--micro-batch", type=int, default=None, help="default: the batch (no accumulation)")
    ap.add_argument("--steps", type=int, default=None, help="pretraining steps timed (100)")
    ap.add_argument("--warmup", type=int, default=None, help="pretraining steps before the timed ones (10)")
    ap.add_argument("--ft-epochs", type=float, default=None,
                    help="epochs of each sweep fine-tune (5): long enough for the four to overlap")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    ap.add_argument("--work-dir", default=None, help="keep data and outputs here (default: a temp folder, removed)")
    args = ap.parse_args(argv)
    wanted = [x.strip() for x in args.sections.split(",") if x.strip()]
    unknown = [x for x in wanted if x not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    if args.cpu_dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""   # before anything touches CUDA; Ray workers inherit it
    from stages.common import quiet_transformers
    quiet_transformers()

    t0 = time.perf_counter()
    sizes = dry_sizes(args) if args.cpu_dry_run else gpu_sizes(args)
    if sizes.warmup < 1 or sizes.steps < 1 or sizes.batch % sizes.micro_batch:
        ap.error("need --warmup >= 1, --steps >= 1 and a batch that is a multiple of the micro-batch")
    if not args.cpu_dry_run and not torch.cuda.is_available():
        # BERT-base sizes on CPU would take hours and prove nothing about the GPU paths
        progress("no CUDA device here: run on a GPU machine, or use --cpu-dry-run for the shrunk CPU run")
        return 2
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="xlt-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(args, sizes, work)
    peak = (f"{ctx.peak[0]:g} TFLOP/s ({ctx.peak[1]}; the same for the fp16 row: dense fp16 = dense bf16 on "
            "these GPUs)" if ctx.peak else
            CPU_NA if not ctx.cuda else f"unknown for {ctx.device_name!r}: give --peak-tflops")
    model_text = (f"BERT {sizes.layers} layers, hidden {sizes.hidden}, {sizes.heads} heads, FFN {sizes.ffn}, "
                  f"{sizes.vocab:,} embedding rows, pretraining blocks of S = {sizes.seq} tokens, random init")
    progress(f"device {ctx.device_name}; peak {peak}; work folder {work}")
    progress(f"{model_text}; sections: {', '.join(wanted)}")

    rows = []
    for i, name in enumerate(SECTIONS, 1):
        if name in wanted:
            rows.append(run_section(ctx, name, i))
        else:
            rows.append({"check": name, "status": "SKIPPED", "seconds": 0.0, "details": "not in --sections"})
    failed = sum(r["status"] == "FAILED" for r in rows)
    n_layer = ctx._memo.get("the model")
    n_text = f" = {n_layer.layer_params:,}" if isinstance(n_layer, ModelInfo) else ""
    report = {
        "cpu_dry_run": args.cpu_dry_run, "device": ctx.device_name, "torch": torch.__version__,
        "cuda": torch.version.cuda, "model": model_text, "sizes": dataclasses.asdict(sizes),
        "peak": peak, "peak_tflops": ctx.peak[0] if ctx.peak else None,
        "mfu_formula": MFU_FORMULA + f"; here N{n_text}, L = {sizes.layers}, H = {sizes.hidden}, S = {sizes.seq}",
        "rows": rows, "failed": failed, "total_seconds": time.perf_counter() - t0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    table = markdown(report)
    out.with_suffix(".md").write_text(table)
    print("\n" + table, flush=True)
    progress(f"written {out.with_suffix('.json')} and {out.with_suffix('.md')}; "
             f"{failed} failed; {report['total_seconds']:.0f}s in all")
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
