"""A budget for a sweep before it runs: `xlt plan SWEEP.yaml --estimate`.

Every node's seconds come from its config (how many tokens it trains on or reads, which model shape) divided
by a throughput: the GPU check's measured table (`benchmarks/gpu_check.py`, `runs/gpu_check/gpu_check.json`)
where it has a row for the kind of work, otherwise the assumptions below, each printed with the estimate.
From the node seconds come the GPU- and CPU-hours per node kind, the critical path of the gated graph, the
lower bound max(critical path, GPU-hours / N) and a greedy list-scheduling simulation of the sweep on N GPUs,
which is what the design goal ("the whole paper sweep within 3 hours on one 8-GPU node") is compared with.

Nothing here runs a stage or imports torch: the plan must stay instant, and the estimate is arithmetic.
"""
from __future__ import annotations

import dataclasses
import heapq
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from orchestrator.compute import BERT_BASE, Shape, flops_per_token
from orchestrator.runner import KINDS

GOAL_HOURS, GOAL_GPUS = 3.0, 8          # the design goal: the whole paper sweep within 3 h on one 8-GPU node
DEFAULT_THROUGHPUT = Path("runs/gpu_check/gpu_check.json")   # where benchmarks/gpu_check.py writes its table

# --- assumptions (each one is printed with the estimate) -----------------------------------------------

PEAK_TFLOPS, PEAK_GPU = 989.0, "H100 SXM"   # dense bf16 tensor-core peak
PRETRAIN_MFU = 0.40
# Fine-tuning: batches of 32 short examples (~1,400 tokens) are launch-bound, not FLOP-bound: we assume four
# trials sharing a GPU (resources.finetune.gpu 0.25) get 50,000 tokens/s each, 200,000 per GPU.
FINETUNE_TOKENS_PER_S = 200_000.0      # per GPU, BERT-base, all trials on it together
FINETUNE_REF_SEQ = 64                  # the sequence length that rate is stated at (FLOPs/token conversion)
PADDING = 0.10                         # padding share of fine-tuning batches (length-grouped batches)
PROBE_WORDS_PER_S = 80_000.0           # one probe trial: a step of 20 sentences (~320 words) in ~4 ms
CPU_GFLOPS_PER_CORE = 25.0             # the demo's tiny RoFormer pretrains at 37-42K tokens/s on one thread
TOKENIZE_TOKENS_PER_S_PER_CPU = 300_000.0   # fast tokenizer, thread pool on, reading and writing included
# The tokenizer node's counting pass, per process (one per CPU, either trainer): benchmarks/word_counting.py
# measured a median 476K words/s in one process with 5% of words non-ASCII, i.e. ~600K WordPiece tokens/s.
COUNT_TOKENS_PER_S = 600_000.0
# Merge phase at >= LEARNER_SCALE_TOKENS (prorated below). exact: 6.2 min measured for 10M Zipf word types at
# 32K (benchmarks/tokenizer_learner.py), and English Wikipedia has 10-20M types; tokenizers: an assumption.
LEARNER_S = {"exact": 750.0, "tokenizers": 300.0}
LEARNER_SCALE_TOKENS = 1e9
FASTTEXT_TOKENS_PER_S = 200_000.0   # fastText CBOW, dim 100, one thread (vectors nodes: focus, wechsel); assumed
GPU_OVERHEAD_S, CPU_OVERHEAD_S = 20.0, 3.0   # per trial: process, CUDA context, model and data loading

# Sizes of data the sweep reads from the hub or that is not on this machine.
TOKENS_PER_LINE = 64          # a hub "document" is one non-empty line (stages/corpus.py): a paragraph or heading
TOKENS_PER_ARTICLE = 700      # a whole Wikipedia article
BYTES_PER_TOKEN = 4.0         # local text files: bytes / 4 (English WordPiece at a 30K vocabulary)
TOKENS_PER_WORD = 1.3         # treebank words -> WordPiece tokens
UNKNOWN_HUB_LINES = 10_000_000
HUB_ARTICLES = {("wikimedia/wikipedia", "20231101.en"): 6_407_814}   # rows of the hub dataset


@dataclass(frozen=True)
class TaskSize:
    train: int
    dev: int
    tokens: float        # mean tokens per example, [CLS]/[SEP] included
    source: str = "official size"


# Official train / dev sizes (GLUE: Wang et al. 2019, MNLI dev = matched + mismatched); mean tokens are typical
# BERT WordPiece lengths with specials (assumed).
GLUE_SIZES = {
    "cola": TaskSize(8_551, 1_043, 11), "sst2": TaskSize(67_349, 872, 13), "mrpc": TaskSize(3_668, 408, 53),
    "stsb": TaskSize(5_749, 1_500, 31), "qqp": TaskSize(363_846, 40_430, 30),
    "mnli": TaskSize(392_702, 9_815 + 9_832, 40), "qnli": TaskSize(104_743, 5_463, 51),
    "rte": TaskSize(2_490, 277, 70),
}
SCANDISENT = TaskSize(7_500, 2_500, 64)    # 10,000 reviews per language: first 7,500 train, last 2,500 evaluate
STSB_TRANSLATED = TaskSize(5_749, 1_500, 35)
WIC = TaskSize(5_428, 638, 28)
AXG = TaskSize(0, 356, 30)                 # SuperGLUE AX-g: 356 examples, scored only
EWT = {"train": (12_543, 204_585), "dev": (2_002, 25_148), "test": (2_077, 25_096)}   # sentences, words
SYNTHETIC_TOKENS = 20                      # an example of the synthetic world, when it is not generated yet
SYNTHETIC_WORDS = 10                       # a sentence of its treebank


# --- FLOPs and throughput (Shape and flops_per_token live in orchestrator/compute.py: the nodes' records use them)

REATTACH_GB_PER_S = 0.2   # safetensors load + save of a model folder, a local disk's order of magnitude


def tokens_per_s(mfu: float, peak_tflops: float, fpt: float) -> float:
    return mfu * peak_tflops * 1e12 / fpt


@dataclass(frozen=True)
class Rates:
    """What node work is divided by. GPU rates are per GPU and shared by the trials on it: a trial with GPU
    share s gets s times the rate (s > 1: data parallel). The probe rate is per trial: probes are launch-bound."""
    device: str
    peak_tflops: float
    pretrain_flops: float        # sustained training FLOP/s of one GPU, MLM pretraining
    finetune_flops: float        # ... fine-tuning (GLUE, forgetting, WiC)
    forward_flops: float         # forward passes (features, Winogender)
    probe_words_per_s: float     # words x epochs per second, one probe trial
    padding: float               # share of fine-tuning token slots that are padding
    cpu_flops: float = CPU_GFLOPS_PER_CORE * 1e9     # per core: nodes with GPU share 0
    cpu_finetune_flops: float | None = None          # per core, fine-tuning nodes, when measured apart
    tokenize_per_cpu: float = TOKENIZE_TOKENS_PER_S_PER_CPU
    count_per_s: float = COUNT_TOKENS_PER_S
    learner_s: dict = field(default_factory=lambda: dict(LEARNER_S))
    gpu_overhead_s: float = GPU_OVERHEAD_S
    cpu_overhead_s: float = CPU_OVERHEAD_S
    notes: tuple[str, ...] = ()  # where each rate comes from, printed
    # Calibration on this sweep's finished nodes (`calibrate`): their measured seconds, and per kind the median
    # measured / estimated ratio that scales the estimates of the nodes not run yet.
    done_seconds: dict = field(default_factory=dict)
    kind_factor: dict = field(default_factory=dict)


def assumed_rates() -> Rates:
    pre_fpt = flops_per_token(BERT_BASE, 128)
    pre_tps = tokens_per_s(PRETRAIN_MFU, PEAK_TFLOPS, pre_fpt)
    ft_flops = FINETUNE_TOKENS_PER_S * flops_per_token(BERT_BASE, FINETUNE_REF_SEQ)
    n = BERT_BASE.layer_params
    notes = (
        f"GPU: {PEAK_GPU}, dense bf16 peak {PEAK_TFLOPS:g} TFLOP/s",
        f"pretraining: MFU {PRETRAIN_MFU:.0%} -> {pre_tps:,.0f} tokens/s per GPU for BERT-base at S = 128 in bf16; "
        f"FLOPs/token = 6N + 12*L*H*S = 6 x {n:,} + 12 x 12 x 768 x 128 = {pre_fpt:,.0f} "
        "(N: parameters of the layers; other shapes scale by their FLOPs/token)",
        f"fine-tuning (GLUE, forgetting, WiC): {FINETUNE_TOKENS_PER_S:,.0f} tokens/s per GPU for BERT-base, "
        f"shared by the trials on it ({FINETUNE_TOKENS_PER_S / 4:,.0f} each at share 0.25; MFU "
        f"{ft_flops / (PEAK_TFLOPS * 1e12):.1%}): short batches are launch-bound; +{PADDING:.0%} padding "
        "(length-grouped batches); dev sets scored every epoch (a forward pass: 1/3 of a training step)",
        "features, Winogender: forward passes at the fine-tuning FLOP/s",
        f"probe: {PROBE_WORDS_PER_S:,.0f} words x epochs per second per trial (a linear map: launch-bound); "
        "all `epochs` run (early stopping only shortens it)",
    )
    return Rates(device=PEAK_GPU, peak_tflops=PEAK_TFLOPS, pretrain_flops=pre_tps * pre_fpt,
                 finetune_flops=ft_flops, forward_flops=ft_flops, probe_words_per_s=PROBE_WORDS_PER_S,
                 padding=PADDING, notes=notes)


def cpu_notes(rates: Rates) -> tuple[str, ...]:
    learner = ", ".join(f"{k} {v / 60:g} min" for k, v in rates.learner_s.items())
    return (f"tokenize nodes (CPU): {rates.tokenize_per_cpu:,.0f} tokens/s per CPU; the keep-mode pretraining "
            "nodes tokenize their corpus inside the trial, holding their GPU",
            f"tokenizer: a counting pass at {rates.count_per_s:,.0f} tokens/s per CPU, then the learner "
            f"({learner} at >= {LEARNER_SCALE_TOKENS:.0e} tokens, "
            "prorated below)",
            f"nodes with GPU share 0: {rates.cpu_flops / 1e9:.3g} GFLOP/s of model FLOPs per CPU"
            + (f" (fine-tuning {rates.cpu_finetune_flops / 1e9:.3g})" if rates.cpu_finetune_flops else ""),
            f"per trial: {rates.gpu_overhead_s:g} s on a GPU, {rates.cpu_overhead_s:g} s on CPU (process, CUDA, "
            "model and data loading)")


def read_throughput(path: str | Path, base: Rates | None = None) -> Rates:
    """The rates of `base` (default: the assumptions) replaced by what a gpu_check.json measured: pretraining
    from the pretrain-bf16 row (pretrain-fp16 without bf16), fine-tuning from finetune-sweep (tokens/s summed
    over its trials, which together hold trials x share GPUs), extraction from the features row, probes from the
    probe row. A CPU dry run measures no GPU and is not used."""
    base = base or assumed_rates()
    report = json.loads(Path(path).read_text())
    if report.get("cpu_dry_run"):
        return dataclasses.replace(base, notes=base.notes + (f"{path} is a CPU dry run: not used",))
    rows = {r.get("check"): r for r in report.get("rows", [])}
    sizes = report.get("sizes") or {}
    shape = Shape(sizes.get("layers", 12), sizes.get("hidden", 768), sizes.get("ffn", 3072))
    peak = report.get("peak_tflops") or base.peak_tflops
    up, notes = {}, [f"GPU: {report.get('device', '?')}, peak {peak:g} TFLOP/s (measured rows from {path})"]

    def ok(name: str, *keys: str) -> dict | None:
        r = rows.get(name)
        return r if r and r.get("status") == "ok" and all(isinstance(r.get(k), (int, float, dict)) for k in keys) \
            else None

    pre = ok("pretrain-bf16", "tokens_per_s") or ok("pretrain-fp16", "tokens_per_s")
    if pre:
        fpt = pre.get("flops_per_token") or flops_per_token(shape, sizes.get("seq", 128))
        up["pretrain_flops"] = pre["tokens_per_s"] * fpt
        mfu = f", MFU {pre['mfu']:.1%}" if isinstance(pre.get("mfu"), float) else ""
        notes.append(f"pretraining: {pre['check']} row, {pre['tokens_per_s']:,.0f} tokens/s{mfu} "
                     f"({fpt:,.0f} FLOPs/token); other shapes scale by their FLOPs/token")
    ft = ok("finetune-sweep", "tokens_per_s")
    share = float(sizes.get("gpu_share") or 0)
    if ft and share > 0:
        gpus = len([t for t in ft.get("trials", []) if t.get("done")]) * share or 1.0
        per_gpu = ft["tokens_per_s"] / gpus
        up["finetune_flops"] = up["forward_flops"] = per_gpu * flops_per_token(shape, sizes.get("ft_max_length", 64))
        up["padding"] = 0.0
        notes.append(f"fine-tuning: finetune-sweep row, {per_gpu:,.0f} real tokens/s per GPU (its trials at share "
                     f"{share:g} together; their padding is in the rate, so none is added)")
    feat = ok("features", "words", "seconds")
    if feat and feat["seconds"] > 0:
        tokens = sum(feat["words"].values()) * TOKENS_PER_WORD
        up["forward_flops"] = tokens * flops_per_token(shape, 32, training=False) / feat["seconds"]
        notes.append(f"features, Winogender: features row, {sum(feat['words'].values()) / feat['seconds']:,.0f} "
                     "words/s on one GPU (model loading included: a lower bound)")
    probe = ok("probe", "seconds")
    if probe and feat and probe["seconds"] > 0 and feat["words"].get("train"):
        up["probe_words_per_s"] = feat["words"]["train"] * sizes.get("probe_epochs", 5) / probe["seconds"]
        notes.append(f"probe: probe row, {up['probe_words_per_s']:,.0f} words x epochs per second per trial")
    if not up:
        return dataclasses.replace(base, notes=base.notes + (f"{path}: no usable measured row (sections failed or "
                                                             "skipped): assumptions kept",))
    kept = [n for n in base.notes if _topic(n) not in {_topic(k) for k in notes}]   # assumptions no row replaced
    up.update(device=report.get("device", base.device), peak_tflops=peak)
    return dataclasses.replace(base, **up, notes=tuple(notes) + tuple(kept))


def _upper_median(values: list[float]) -> float:
    """The upper median: one node's own figure, never a mean of two."""
    return sorted(values)[len(values) // 2]


def measured_rates(folder: str | Path, base: Rates) -> tuple[Rates, int]:
    """The rates of `base` replaced by what a previous run's finished nodes measured: every DONE under `folder`
    whose `compute` record (orchestrator/compute.py) has the training loop's tokens/s and FLOPs per token. FLOP/s
    per GPU = tokens/s x FLOPs/token / the trial's GPU share (pretraining and fine-tuning apart, medians); on
    CPU, per core = tokens/s x FLOPs/token / CPUs (the median of every training node). Fine-tuning tokens are
    real ones, so the padding is in the measured rate and none is added. Returns the rates and how many nodes
    they rest on (0: `base` unchanged)."""
    gpu: dict[str, list[float]] = {"pretrain": [], "finetune": []}
    cpu: dict[str, list[float]] = {"pretrain": [], "finetune": []}
    devices: set[str] = set()
    for done in Path(folder).rglob("DONE"):
        try:
            record = json.loads(done.read_text())
        except (OSError, ValueError):
            continue
        c = record.get("compute") if isinstance(record, dict) else None
        if not c or not c.get("train_tokens_per_s") or not c.get("flops_per_token"):
            continue
        flops = c["train_tokens_per_s"] * c["flops_per_token"]
        what = "pretrain" if record.get("kind") == "pretrain" else "finetune"
        if c.get("gpu_share", 0) > 0:
            gpu[what].append(flops / c["gpu_share"])
            devices.add(c.get("device", "?"))
        elif c.get("cpus"):
            cpu[what].append(flops / c["cpus"])
    n = sum(map(len, gpu.values())) + sum(map(len, cpu.values()))
    if not n:
        return base, 0
    up, notes = {}, []
    median = _upper_median
    if gpu["pretrain"]:
        up["pretrain_flops"] = median(gpu["pretrain"])
        notes.append(f"pretraining: measured in {folder}, median of {len(gpu['pretrain'])} node(s) on "
                     f"{', '.join(sorted(devices))}: {up['pretrain_flops'] / 1e12:,.1f} TFLOP/s per GPU "
                     f"(MFU {up['pretrain_flops'] / (base.peak_tflops * 1e12):.1%} of {base.peak_tflops:g})")
    if gpu["finetune"]:
        up["finetune_flops"] = up["forward_flops"] = median(gpu["finetune"])
        up["padding"] = 0.0
        notes.append(f"fine-tuning (GLUE, forgetting, WiC): measured in {folder}, median of {len(gpu['finetune'])} "
                     f"node(s): {up['finetune_flops'] / 1e12:,.1f} TFLOP/s per GPU from real tokens/s (padding in "
                     "the rate, none added); features and Winogender at the same rate")
    if cpu["pretrain"] or cpu["finetune"]:
        # Apart: a tiny model's fine-tuning steps are overhead-bound on CPU, its pretraining steps far less.
        up["cpu_flops"] = median(cpu["pretrain"] or cpu["finetune"])
        up["cpu_finetune_flops"] = median(cpu["finetune"] or cpu["pretrain"])
        notes.append(f"CPU training rates: measured in {folder}, medians of {len(cpu['pretrain'])} pretraining and "
                     f"{len(cpu['finetune'])} fine-tuning node(s) (replace the {CPU_GFLOPS_PER_CORE:g} GFLOP/s "
                     "per CPU assumed)")
    kept = [k for k in base.notes if _topic(k) not in {_topic(x) for x in notes}]
    return dataclasses.replace(base, **up, notes=tuple(notes) + tuple(kept)), n


def stated_pretrain_rate(tokens_per_s: float, base: Rates) -> Rates:
    """`--pretrain-tokens-per-s N`: N tokens/s per GPU for BERT-base at S = 128 (other shapes scale by their
    FLOPs per token)."""
    if tokens_per_s <= 0:
        raise ValueError(f"--pretrain-tokens-per-s {tokens_per_s:g}: give a positive rate, tokens/s per GPU")
    flops = tokens_per_s * flops_per_token(BERT_BASE, 128)
    note = (f"pretraining: stated {tokens_per_s:,.0f} tokens/s per GPU for BERT-base at S = 128 = "
            f"{flops / 1e12:,.1f} TFLOP/s (MFU {flops / (base.peak_tflops * 1e12):.1%}); other shapes scale by "
            "their FLOPs/token")
    kept = [k for k in base.notes if _topic(k) != "pretraining"]
    return dataclasses.replace(base, pretrain_flops=flops, notes=(note, *kept))


def finished_records(graph) -> dict[str, dict]:
    """Node id -> DONE record of this sweep's nodes that are done (read once for `calibrate` and
    `recorded_so_far`)."""
    from orchestrator.runner import read_done

    return {nid: r for nid in graph.nodes if (r := read_done(graph, nid))}


def calibrate(graph, rates: Rates, corpus_tokens: dict[str, float] | None = None,
              records: dict[str, dict] | None = None) -> Rates:
    """Rates that know this sweep's finished nodes (a DONE with a compute record): each of those takes the
    seconds it measured, and every node of a kind with finished nodes is scaled by the kind's median measured /
    estimated ratio, which carries what the rates miss (start-up, evaluation passes, saving, the machine's day).
    Unchanged when nothing has finished. `records`: finished_records(graph), when the caller has them."""
    records = finished_records(graph) if records is None else records
    done = {nid: float(r["compute"]["wall_s"]) for nid, r in records.items()
            if (r.get("compute") or {}).get("wall_s") is not None}
    if not done:
        return rates
    work = Work(graph, rates, corpus_tokens)
    ratios: dict[str, list[float]] = {}
    for nid, wall in done.items():
        predicted, _ = work.estimated(graph.nodes[nid])
        if predicted > 0:
            ratios.setdefault(graph.nodes[nid].kind, []).append(wall / predicted)
    factor = {k: _upper_median(v) for k, v in ratios.items()}
    order = sorted(factor, key=lambda k: KINDS[k].order)
    note = (f"calibration: {len(done)} finished node(s) of this sweep take their measured seconds; the others are "
            "scaled per kind by the median measured / estimated ratio: "
            + ", ".join(f"{k} {factor[k]:.2f}x" for k in order))
    return dataclasses.replace(rates, done_seconds=done, kind_factor=factor, notes=rates.notes + (note,))


def recorded_so_far(graph, records: dict[str, dict] | None = None) -> str | None:
    """One line: what this sweep's finished nodes have cost (their DONE `compute`), None before any finished."""
    done = list((finished_records(graph) if records is None else records).values())
    if not done:
        return None
    gpu = sum((r.get("compute") or {}).get("gpu_seconds") or 0.0 for r in done) / 3600
    cpu = sum((r.get("compute") or {}).get("cpu_seconds") or 0.0 for r in done) / 3600
    without = sum(1 for r in done if not r.get("compute"))
    return (f"recorded so far: {len(done)} of {len(graph.nodes)} nodes done, {gpu:.2f} GPU-h and {cpu:.2f} CPU-h"
            + (f" ({without} DONE without a compute record, not counted)" if without else ""))


def _topic(note: str) -> str:
    """What a rate note is about: "fine-tuning (GLUE, ...): ..." -> "fine-tuning"."""
    return note.split(":")[0].split(" (")[0]


# --- scheduling: plain jobs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    seconds: float
    gpu: float                       # GPU share (0: a CPU node; > 1: that many whole GPUs)
    cpu: float
    parents: tuple[str, ...] = ()
    priority: tuple = ()             # lower starts first among ready jobs (the sweep's gate: kind order, plan order)
    what: str = ""                   # the work, in words


def critical_path(jobs: list[Job]) -> tuple[float, list[str]]:
    """The longest chain of jobs through their parents, by seconds: (its seconds, its ids, first to last)."""
    by_id = {j.id: j for j in jobs}
    best: dict[str, tuple[float, str | None]] = {}

    def longest(jid: str) -> float:
        if jid not in best:
            parents = [p for p in by_id[jid].parents if p in by_id]
            via = max(parents, key=longest, default=None)
            best[jid] = (by_id[jid].seconds + (longest(via) if via else 0.0), via)
        return best[jid][0]

    if not jobs:
        return 0.0, []
    end = max(by_id, key=longest)
    chain, at = [], end
    while at is not None:
        chain.append(at)
        at = best[at][1]
    return best[end][0], chain[::-1]


UNITS = 10_000    # GPU shares in fixed point, as Ray keeps them: ten 0.1 shares fill a GPU exactly


@dataclass
class Schedule:
    makespan: float
    start: dict[str, float]


def simulate(jobs: list[Job], gpus: int, cpus: float, max_concurrent: int | None = None) -> Schedule:
    """Greedy list scheduling: whenever a job finishes, every ready job (all parents done) starts, in priority
    order, if it fits: its CPUs in the pool, its GPU share on one GPU with that much free (first fit; a whole
    number above 1 takes that many free GPUs), and fewer than `max_concurrent` jobs running. Deterministic."""
    by_id = {j.id: j for j in jobs}
    for j in jobs:
        if j.cpu > cpus or (j.gpu > 0 and gpus == 0) or (j.gpu > 1 and int(j.gpu) > gpus):
            raise ValueError(f"{j.id} needs {j.cpu:g} CPU / {j.gpu:g} GPU: more than {cpus:g} CPUs / {gpus} GPUs")
    children: dict[str, list[str]] = {j.id: [] for j in jobs}
    waiting = {}
    for j in jobs:
        parents = [p for p in j.parents if p in by_id]
        waiting[j.id] = len(parents)
        for p in parents:
            children[p].append(j.id)
    order = {j.id: (j.priority, i) for i, j in enumerate(jobs)}
    # Ready jobs by what they ask for: when the first of a class does not fit, none of that class does.
    ready: dict[tuple[float, float], list] = {}

    def make_ready(jid: str) -> None:
        heapq.heappush(ready.setdefault((by_id[jid].gpu, by_id[jid].cpu), []), (order[jid], jid))

    for j in jobs:
        if waiting[j.id] == 0:
            make_ready(j.id)
    free_gpu, free_cpu = [UNITS] * gpus, float(cpus)
    running: list[tuple[float, tuple, str, list[tuple[int, int]]]] = []   # (end, order, id, GPU units taken)
    start: dict[str, float] = {}
    now = 0.0
    while any(ready.values()) or running:
        blocked: set = set()
        while max_concurrent is None or len(running) < max_concurrent:
            open_ = [(heap[0], key) for key, heap in ready.items() if heap and key not in blocked]
            if not open_:
                break
            (_, jid), key = min(open_)
            j = by_id[jid]
            taken = _fit(j.gpu, free_gpu)
            if taken is None or j.cpu > free_cpu + 1e-9:
                blocked.add(key)
                continue
            heapq.heappop(ready[key])
            for g, units in taken:
                free_gpu[g] -= units
            free_cpu -= j.cpu
            start[jid] = now
            heapq.heappush(running, (now + j.seconds, order[jid], jid, taken))
        now, _, done, taken = heapq.heappop(running)   # never empty here: a lone job always fits (checked above)
        for g, units in taken:
            free_gpu[g] += units
        free_cpu += by_id[done].cpu
        for c in children[done]:
            waiting[c] -= 1
            if waiting[c] == 0:
                make_ready(c)
    return Schedule(now, start)


def _fit(share: float, free: list[int]) -> list[tuple[int, int]] | None:
    """The GPUs a share takes, as (gpu index, units); None when it does not fit now."""
    if share <= 0:
        return []
    if share <= 1:
        units = round(share * UNITS)
        g = next((i for i, f in enumerate(free) if f >= units), None)
        return None if g is None else [(g, units)]
    whole = [i for i, f in enumerate(free) if f == UNITS][:int(share)]
    return [(g, UNITS) for g in whole] if len(whole) == int(share) else None


# --- the work of each node --------------------------------------------------------------------------------

def _n(count: float, word: str) -> str:
    return f"{count:,g} {word}" + ("" if count == 1 else "s")


def _fmt_tokens(n: float) -> str:
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


@lru_cache(maxsize=None)
def _lines(path: str) -> tuple[int, float]:
    """Non-empty lines of a text file and their mean length in bytes."""
    n = total = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                n += 1
                total += len(line)
    return n, total / max(1, n)


@lru_cache(maxsize=None)
def _conllu(path: str) -> tuple[int, int]:
    """Sentences and words of a CoNLL-U file (multiword-token and empty-node lines are not words)."""
    sentences = words = 0
    in_sentence = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            first = line.split("\t", 1)[0]
            if first.isdigit():
                words += 1
                in_sentence = True
            elif not line.strip():
                sentences += in_sentence
                in_sentence = False
    return sentences + in_sentence, words


class Work:
    """Turns a graph's nodes into jobs with estimated seconds. `corpus_tokens` gives corpus sizes by name
    (`--corpus-tokens`); `max_steps` (every pretraining node's budget) and `trainer` (every tokenizer's) are the
    what-ifs of `report`."""

    def __init__(self, graph, rates: Rates, corpus_tokens: dict[str, float] | None = None,
                 max_steps: int | None = None, trainer: str | None = None):
        self.g, self.r, self.max_steps, self.trainer = graph, rates, max_steps, trainer
        self.given = dict(corpus_tokens or {})
        self._notes: dict[str, None] = {}       # data and model assumptions, in order, once each
        self.hub_models: dict[str, None] = {}
        self._shapes: dict[str, Shape] = {}

    def note(self, text: str) -> None:
        self._notes.setdefault(text)

    @property
    def notes(self) -> list[str]:
        hub = [f"hub models are assumed BERT-base ({BERT_BASE}): {', '.join(self.hub_models)}"] if self.hub_models \
            else []
        return list(self._notes) + hub

    def jobs(self) -> list[Job]:
        return [self.job(node) for node in self.g.nodes.values()]

    def job(self, node) -> Job:
        seconds, what = self.estimated(node)
        if node.id in self.r.done_seconds and self.max_steps is None:   # it ran: what it took
            seconds, what = self.r.done_seconds[node.id], f"{what}; measured"
        else:
            seconds *= self.r.kind_factor.get(node.kind, 1.0)
        gpu, cpu = float(node.resources.get("gpu") or 0), float(node.resources.get("cpu") or 1)
        return Job(node.id, node.kind, seconds, gpu, cpu, node.parents, (KINDS[node.kind].order,), what)

    def estimated(self, node) -> tuple[float, str]:
        """The node's seconds from its work and the rates, the per-trial start-up included (uncalibrated)."""
        seconds, what = getattr(self, f"_{node.kind}")(node)
        gpu = float(node.resources.get("gpu") or 0)
        return seconds + (self.r.gpu_overhead_s if gpu > 0 else self.r.cpu_overhead_s), what

    # --- rates for a node ---
    def _train_seconds(self, node, flops: float, rate: float) -> float:
        """Seconds of `flops` at a GPU rate times the node's share, or on its CPUs when it has no GPU."""
        gpu = float(node.resources.get("gpu") or 0)
        if gpu > 0:
            return flops / (rate * gpu)
        per_cpu = self.r.cpu_flops if node.kind == "pretrain" else (self.r.cpu_finetune_flops or self.r.cpu_flops)
        return flops / (per_cpu * float(node.resources.get("cpu") or 1))

    # --- model shapes ---
    def shape(self, node) -> Shape:
        if node.id not in self._shapes:
            self._shapes[node.id] = self._find_shape(node)
        return self._shapes[node.id]

    def _find_shape(self, node) -> Shape:
        if node.kind == "pretrain":
            for p in node.parents:   # a learning-curve segment: the shape of the segment before it
                if self.g.nodes[p].kind == "pretrain" and self.g.nodes[p].model == node.model:
                    return self.shape(self.g.nodes[p])
            t = node.params["transfer"]
            if t["mode"] == "build":
                a = t["architecture"]
                return Shape(a["num_layers"], a["hidden_size"], a["intermediate_size"])
            for p in node.parents:   # a source built in the sweep: the shape of the node that pretrained it
                if self.g.nodes[p].kind == "pretrain" and str(t["source"]).startswith(str(self.g.node_dir(p))):
                    return self.shape(self.g.nodes[p])
            return self._model_shape(t["source"])
        for p in node.parents:   # a model of the sweep: its pretraining node (or the fine-tune Winogender scores)
            if self.g.nodes[p].kind in ("pretrain", "finetune", "features", "reattach"):   # curve: its segment
                return self.shape(self.g.nodes[p])
        return self._model_shape(node.params["config"].get("model"))

    def _model_shape(self, model: str | None) -> Shape:
        cfg = Path(model) / "config.json" if model else None
        shape = Shape.of(json.loads(cfg.read_text())) if cfg and cfg.is_file() else None
        if shape:
            return shape
        self.hub_models.setdefault(str(model))
        return BERT_BASE

    # --- corpora ---
    def corpus_name(self, corpus: dict) -> str:
        for name, c in self.g.sweep.corpora.items():
            if c.model_dump() == corpus:
                return name
        return corpus.get("hub_config") or "corpus"

    def corpus_tokens(self, corpus: dict) -> float:
        name = self.corpus_name(corpus)
        if name in self.given:
            self.note(f"corpus {name}: {_fmt_tokens(self.given[name])} tokens (--corpus-tokens)")
            return self.given[name]
        counted = self._tokenized(name)
        if counted:
            self.note(f"corpus {name}: {_fmt_tokens(counted)} tokens, counted by its tokenize node")
            return counted
        docs = corpus.get("max_documents")
        if corpus.get("files"):
            present = [Path(f) for f in corpus["files"] if Path(f).is_file()]
            if len(present) == len(corpus["files"]):
                tokens = sum(f.stat().st_size for f in present) / BYTES_PER_TOKEN
                if docs:
                    lines = sum(_lines(str(f))[0] for f in present)
                    tokens *= min(1.0, docs / max(1, lines))
                self.note(f"corpus {name}: {_fmt_tokens(tokens)} tokens (file bytes / {BYTES_PER_TOKEN:g})")
                return tokens
            return self._synthetic_corpus(name, corpus["files"])
        if docs:
            tokens = docs * TOKENS_PER_LINE
            self.note(f"corpus {name}: max_documents {docs:,} lines x {TOKENS_PER_LINE} tokens = "
                      f"{_fmt_tokens(tokens)} tokens (a hub document is one non-empty line: a paragraph or heading)")
            return tokens
        articles = HUB_ARTICLES.get((corpus.get("hub_dataset"), corpus.get("hub_config")))
        if articles:
            tokens = articles * TOKENS_PER_ARTICLE
            self.note(f"corpus {name}: {corpus['hub_dataset']} {corpus['hub_config']}, {articles:,} articles x "
                      f"{TOKENS_PER_ARTICLE} tokens = {_fmt_tokens(tokens)} tokens (give --corpus-tokens "
                      f"{name}=N to replace)")
            return tokens
        tokens = UNKNOWN_HUB_LINES * TOKENS_PER_LINE
        self.note(f"corpus {name}: size unknown, assumed {UNKNOWN_HUB_LINES:,} lines x {TOKENS_PER_LINE} tokens = "
                  f"{_fmt_tokens(tokens)} tokens; give --corpus-tokens {name}=N")
        return tokens

    def _tokenized(self, name: str) -> float | None:
        """The token count a finished tokenize node of this corpus recorded (any tokenizer: close enough)."""
        for done in sorted((Path(self.g.sweep.output_dir) / "tokenize" / name).glob("*/DONE")):
            try:
                tokens = json.loads(done.read_text()).get("meta", {}).get("tokens")
            except (OSError, ValueError):
                continue
            if tokens:
                return float(tokens)
        return None

    def _synthetic_corpus(self, name: str, files: list[str]) -> float:
        syn = self.g.sweep.synthetic
        if syn is None:
            self.note(f"corpus {name}: files missing ({files[0]}): counted as empty")
            return 0.0
        words = syn.source_tokens if any(Path(f).name == "corpus_S.txt" for f in files) else syn.english_tokens
        tokens = words * TOKENS_PER_WORD
        self.note(f"corpus {name}: the synthetic world is not generated yet (`xlt run` writes it): {words:,} words "
                  f"x {TOKENS_PER_WORD} = {_fmt_tokens(tokens)} tokens")
        return tokens

    # --- task data ---
    def _synthetic_task(self) -> TaskSize | None:
        syn = self.g.sweep.synthetic
        if syn is None:
            return None
        self.note(f"the synthetic world's tasks are not generated yet: sized by its train_size / dev_size, "
                  f"{SYNTHETIC_TOKENS} tokens per example")
        return TaskSize(syn.train_size, syn.dev_size, SYNTHETIC_TOKENS, "synthetic knobs")

    def glue_size(self, cfg: dict) -> TaskSize:
        from stages.glue import GLUE_TASKS

        task, spec = cfg["task"], GLUE_TASKS[cfg["task"]]
        if cfg.get("data_dir"):
            folder = Path(cfg["data_dir"]) / spec.folder
            files = [folder / "train.tsv"] + [folder / d.tsv_file for d in spec.dev_splits]
            if all(f.is_file() for f in files):
                (train, mean_bytes), header = _lines(str(files[0])), int(spec.tsv_header)
                dev = sum(_lines(str(f))[0] - header for f in files[1:])
                return TaskSize(train - header, dev, mean_bytes / BYTES_PER_TOKEN + 3, "counted")
            found = self._synthetic_task()
            if found:
                return found
            self.note(f"GLUE files missing under {cfg['data_dir']}: official sizes assumed")
        return GLUE_SIZES[task]

    def source_task_size(self, cfg: dict) -> TaskSize:
        task, where = cfg["task"], cfg.get("data_dir")
        official = SCANDISENT if task.startswith("scandisent") else STSB_TRANSLATED
        if where:
            p = Path(where)
            if p.is_file():              # ScandiSent CSV with a header: three quarters train, a quarter evaluate
                rows, mean_bytes = _lines(str(p))
                rows -= 1
                return TaskSize(rows * 3 // 4, rows - rows * 3 // 4, mean_bytes / BYTES_PER_TOKEN + 2, "counted")
            if (p / "train.tsv").is_file() and (p / "dev.tsv").is_file():
                (train, mean_bytes), dev = _lines(str(p / "train.tsv")), _lines(str(p / "dev.tsv"))[0]
                return TaskSize(train - 1, dev - 1, mean_bytes / BYTES_PER_TOKEN + 3, "counted")
            found = self._synthetic_task()
            if found:
                return found
        self.note(f"{task} not on this machine: {official.train:,} train / {official.dev:,} evaluation examples of "
                  f"{official.tokens:g} tokens (ScandiSent: 10,000 reviews per language; a translated STS-B: "
                  "STS-B's sizes)")
        return official

    # --- the kinds ---
    def _fine_tune(self, node, size: TaskSize) -> tuple[float, str]:
        cfg = node.params["config"]
        train = min(size.train, cfg.get("max_train_examples") or size.train)
        dev = min(size.dev, cfg.get("max_eval_examples") or size.dev) if size.dev else 0
        seq = min(size.tokens, cfg["max_length"])
        slots = seq * (1 + self.r.padding)
        shape = self.shape(node)
        flops = cfg["epochs"] * slots * (train * flops_per_token(shape, seq) +
                                         dev * flops_per_token(shape, seq, training=False))
        seconds = self._train_seconds(node, flops, self.r.finetune_flops)
        task = cfg.get("task", node.kind)
        return seconds, (f"{task}: {_n(cfg['epochs'], 'epoch')} x {train:,} examples x {seq:.0f} tokens "
                         f"(+ {dev:,} dev each epoch, {size.source})")

    def _finetune(self, node):
        return self._fine_tune(node, self.glue_size(node.params["config"]))

    _curve = _finetune   # a learning-curve fine-tune is a GLUE fine-tune from an earlier model

    def _forget(self, node):
        return self._fine_tune(node, self.source_task_size(node.params["config"]))

    def _wic(self, node):
        cfg = node.params["config"]
        size = WIC
        if cfg.get("data_dir"):
            folder = Path(cfg["data_dir"])
            train, dev = folder / "train" / "train.data.txt", folder / "dev" / "dev.data.txt"
            if train.is_file() and dev.is_file():
                (n, mean_bytes) = _lines(str(train))
                size = TaskSize(n, _lines(str(dev))[0], mean_bytes / BYTES_PER_TOKEN + 3, "counted")
            else:
                size = self._synthetic_task() or WIC
        return self._fine_tune(node, size)

    def _winogender(self, node):
        cfg = node.params["config"]
        size = AXG
        if cfg.get("data_file") and Path(cfg["data_file"]).is_file():
            n, mean_bytes = _lines(cfg["data_file"])
            size = TaskSize(0, n, mean_bytes / BYTES_PER_TOKEN + 3, "counted")   # JSON keys counted: an upper bound
        seq = min(size.tokens, cfg["max_length"])
        flops = size.dev * seq * flops_per_token(self.shape(node), seq, training=False)
        return self._train_seconds(node, flops, self.r.forward_flops), f"{size.dev:,} AX-g examples x {seq:.0f} tokens"

    def treebank(self, splits: dict, max_sentences: int | None) -> dict[str, tuple[int, int]]:
        """Sentences and words per split: counted from the CoNLL-U files, or UD English-EWT's sizes."""
        out = {}
        for split, path in splits.items():
            if path and Path(path).is_file():
                sentences, words = _conllu(path)
            elif self.g.sweep.synthetic is not None:
                syn = self.g.sweep.synthetic
                sentences = syn.train_size if split == "train" else syn.dev_size
                words = sentences * SYNTHETIC_WORDS
            else:
                sentences, words = EWT.get(split, EWT["dev"])
                self.note(f"treebank not on this machine: UD English-EWT's sizes assumed ({EWT['train'][1]:,} train "
                          "words)")
            if max_sentences and sentences > max_sentences:
                words, sentences = words * max_sentences // sentences, max_sentences
            out[split] = (sentences, words)
        return out

    def _features(self, node):
        cfg = node.params["config"]
        sizes = self.treebank(cfg.get("splits") or {"train": None, "dev": None, "test": None}, cfg.get("max_sentences"))
        words = sum(w for _, w in sizes.values())
        sentences = sum(s for s, _ in sizes.values())
        tokens = words * TOKENS_PER_WORD + 2 * sentences
        seq = tokens / max(1, sentences)
        flops = tokens * flops_per_token(self.shape(node), seq, training=False)
        return (self._train_seconds(node, flops, self.r.forward_flops),
                f"{sentences:,} sentences, {words:,} words ({TOKENS_PER_WORD} tokens each)")

    def _probe(self, node):
        cfg = node.params["config"]
        feat = next((self.g.nodes[p] for p in node.parents if self.g.nodes[p].kind == "features"), None)
        splits = feat.params["config"].get("splits") if feat else {}
        sizes = self.treebank(splits or {"train": None, "dev": None}, feat.params["config"].get("max_sentences")
                              if feat else None)
        train, dev = sizes.get("train", (0, 0))[1], sizes.get("dev", (0, 0))[1]
        word_epochs = cfg["epochs"] * (train + dev / 3)    # dev loss every epoch: forward only
        return word_epochs / self.r.probe_words_per_s, f"{_n(cfg['epochs'], 'epoch')} x {train:,} words (+ dev)"

    def _pretrain(self, node):
        cfg = node.params["config"]
        block = cfg["block_size"]
        steps = self.max_steps or cfg.get("max_steps")
        if steps:
            tokens, how = steps * cfg["batch_size"] * block, f"{steps:,} steps x {cfg['batch_size']} x {block}"
        else:
            tokens = cfg["epochs"] * self.corpus_tokens(cfg["corpus"])
            how = f"{_n(cfg['epochs'], 'epoch')} of {self.corpus_name(cfg['corpus'])}"
        if cfg.get("extra_tokens"):   # scratch_budget: match: the source's own pretraining added to the budget
            tokens += cfg["extra_tokens"]
            how += f" + {_fmt_tokens(cfg['extra_tokens'])} tokens (the source's pretraining)"
        start, stop = node.params.get("segment") or (0.0, 1.0)   # a learning-curve segment trains its share
        if (start, stop) != (0.0, 1.0):
            tokens *= stop - start
            how += f", the segment from {start:.0%} to {stop:.0%}"
        shape = self.shape(node)
        seconds = self._train_seconds(node, tokens * flops_per_token(shape, block), self.r.pretrain_flops)
        what = f"{_fmt_tokens(tokens)} tokens ({how}), {shape}"
        if node.params["transfer"]["mode"] == "keep" and start == 0.0:   # it cuts its vocabulary and tokenizes
            corpus = self.corpus_tokens(cfg["corpus"])
            seconds += corpus / (self.r.tokenize_per_cpu * float(node.resources.get("cpu") or 1))
            what += f"; tokenizes {_fmt_tokens(corpus)} tokens first"
        return seconds, what

    def _reattach(self, node):
        # Reads two models and writes one: disk-bound (embeddings left out of Shape; BERT-base's add ~25%).
        shape = self.shape(node)
        gb = 3 * 4 * shape.layer_params * 1.25 / 1e9
        return gb / REATTACH_GB_PER_S, f"reads the trained and source models, writes one ({shape})"

    def _tokenize(self, node):
        cfg = node.params["config"]
        tokens = self.corpus_tokens(cfg["corpus"])
        cpus = float(node.resources.get("cpu") or 1)
        return tokens / (self.r.tokenize_per_cpu * cpus), f"{_fmt_tokens(tokens)} tokens on {_n(cpus, 'CPU')}"

    def _vectors(self, node):
        cfg = node.params["config"]
        tokens = self.corpus_tokens(cfg["corpus"])
        seconds = tokens / self.r.tokenize_per_cpu + tokens * cfg["epochs"] / FASTTEXT_TOKENS_PER_S
        return seconds, f"fastText on {_fmt_tokens(tokens)} {cfg['unit']} x {cfg['epochs']} epochs, one thread"

    def _tokenizer(self, node):
        cfg = node.params["config"]
        tokens = self.corpus_tokens(cfg["corpus"])
        trainer = self.trainer or cfg.get("trainer", "exact")
        processes = float(node.resources.get("cpu") or 1)  # both trainers count in a pool of the node's CPUs
        learner = self.r.learner_s.get(trainer, max(self.r.learner_s.values()))
        learner *= min(1.0, tokens / LEARNER_SCALE_TOKENS)
        return (tokens / (self.r.count_per_s * processes) + learner,
                f"trainer {trainer}: counts {_fmt_tokens(tokens)} tokens, learner {learner:,.0f} s")


# --- the estimate -------------------------------------------------------------------------------------------

@dataclass
class Estimate:
    jobs: list[Job]
    rates: Rates
    notes: list[str]
    gpus: int
    cpus: float
    max_concurrent: int | None
    path_seconds: float
    path: list[str]
    makespan: float

    @property
    def gpu_hours(self) -> float:
        return sum(j.seconds * j.gpu for j in self.jobs) / 3600

    @property
    def cpu_hours(self) -> float:
        return sum(j.seconds * j.cpu for j in self.jobs) / 3600

    @property
    def lower_bound(self) -> float:
        """Seconds no schedule can beat: the critical path, and all GPU (CPU) work spread over every GPU (CPU)."""
        spread = [self.gpu_hours * 3600 / self.gpus if self.gpus else 0.0, self.cpu_hours * 3600 / self.cpus]
        return max(self.path_seconds, *spread)


def estimate(graph, rates: Rates | None = None, gpus: int = GOAL_GPUS, cpus: float = 96,
             corpus_tokens: dict[str, float] | None = None) -> Estimate:
    rates = rates or assumed_rates()
    work = Work(graph, rates, corpus_tokens)
    jobs = work.jobs()
    seconds, path = critical_path(jobs)
    schedule = simulate(jobs, gpus, cpus, graph.sweep.max_concurrent_trials)
    return Estimate(jobs, rates, work.notes, gpus, cpus, graph.sweep.max_concurrent_trials, seconds, path,
                    schedule.makespan)


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _first_seed_only(jobs: list[Job]) -> list[Job]:
    """The jobs of the first seed: what a first pass over the study runs (the other seeds later)."""
    seed = re.compile(r"/seed(\d+)$")
    seeds = [int(m.group(1)) for j in jobs if (m := seed.search(j.id))]
    first = min(seeds, default=None)
    return [j for j in jobs if not (m := seed.search(j.id)) or int(m.group(1)) == first]


class WhatIf:
    """The sweep changed: the first seed only, every tokenizer on `trainer`; `makespan(max_steps)` then simulates
    it with every pretraining node at that budget (only those nodes are estimated again)."""

    def __init__(self, graph, est: Estimate, corpus_tokens: dict[str, float] | None, *, first_seed: bool = False,
                 trainer: str | None = None):
        self.g, self.est = graph, est
        self.work = Work(graph, est.rates, corpus_tokens, trainer=trainer)
        jobs = self.work.jobs()
        self.jobs = _first_seed_only(jobs) if first_seed else jobs

    def makespan(self, max_steps: int | None = None) -> float:
        self.work.max_steps = max_steps
        jobs = [self.work.job(self.g.nodes[j.id]) if j.kind == "pretrain" else j for j in self.jobs]
        return simulate(jobs, self.est.gpus, self.est.cpus, self.est.max_concurrent).makespan

    def fit_max_steps(self, goal_s: float) -> tuple[int | None, float]:
        """The largest pretraining budget (max_steps of every pretraining node, in hundreds) whose makespan meets
        `goal_s`, or None when even 100 steps does not; and the makespan at 100 steps."""
        floor = self.makespan(100)
        if floor > goal_s:
            return None, floor
        lo, hi = 1, 10_000      # hundreds of steps: up to 1M
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self.makespan(mid * 100) <= goal_s else (lo, mid - 1)
        return lo * 100, floor


def report(est: Estimate, graph, corpus_tokens: dict[str, float] | None = None) -> str:
    """What `xlt plan --estimate` prints."""
    r = est.rates
    lines = [f"estimate on {est.gpus} GPU(s) and {est.cpus:g} CPUs, at most {est.max_concurrent} trials at once "
             f"({graph.sweep.name}, {len(est.jobs)} nodes)", "", "throughput:"]
    lines += [f"  {n}" for n in r.notes + cpu_notes(r)]
    lines += ["data and models:"] + [f"  {n}" for n in est.notes]
    lines += ["", f"{'kind':<11}{'nodes':>6}{'GPU share':>10}{'CPUs':>6}{'GPU-h':>9}{'CPU-h':>9}"
                  f"{'longest node':>14}{'wall alone':>12}"]
    by_kind: dict[str, list[Job]] = {}
    for j in est.jobs:
        by_kind.setdefault(j.kind, []).append(j)
    for kind, jobs in sorted(by_kind.items(), key=lambda kv: KINDS[kv[0]].order):
        shares = sorted({j.gpu for j in jobs})
        share = f"{shares[0]:g}" if len(shares) == 1 else "mixed"
        alone = simulate([dataclasses.replace(j, parents=()) for j in jobs], est.gpus, est.cpus,
                         est.max_concurrent).makespan
        gpu_h, cpu_h = (sum(j.seconds * getattr(j, r) for j in jobs) / 3600 for r in ("gpu", "cpu"))
        lines.append(f"{kind:<11}{len(jobs):>6}{share:>10}{jobs[0].cpu:>6g}{gpu_h:>9.2f}{cpu_h:>9.2f}"
                     f"{max(j.seconds for j in jobs) / 3600:>12.2f} h{alone / 3600:>10.2f} h")
    lines.append(f"{'total':<11}{len(est.jobs):>6}{'':>16}{est.gpu_hours:>9.2f}{est.cpu_hours:>9.2f}")
    lines += ["(GPU-h: seconds x GPU share, summed; wall alone: the kind's nodes by themselves on these GPUs and CPUs)",
              "", "work per node (the longest of each kind in full; seconds include the per-trial overhead):"]
    for kind, jobs in sorted(by_kind.items(), key=lambda kv: KINDS[kv[0]].order):
        groups: dict[str, list[Job]] = {}
        for j in jobs:
            groups.setdefault(j.what, []).append(j)
        for what, group in sorted(groups.items(), key=lambda kv: -kv[1][0].seconds)[:10]:
            name = group[0].id if len(group) == 1 else f"{kind} x{len(group)}"
            lines.append(f"  {name:<44} {group[0].seconds:>9,.0f} s  {what}")
        if len(groups) > 10:
            lines.append(f"  ... and {len(groups) - 10} more kinds of {kind} node")
    by_id = {j.id: j for j in est.jobs}
    lines += ["", f"critical path: {_h(est.path_seconds)}"]
    lines += [f"  {by_id[n].seconds / 3600:>6.2f} h  {n}" for n in est.path]
    gpu_spread = est.gpu_hours / est.gpus if est.gpus else 0.0
    lines += ["", f"lower bound: {_h(est.lower_bound)} = max(critical path {_h(est.path_seconds)}, "
                  f"GPU-hours / {est.gpus} = {gpu_spread:.2f} h, CPU-hours / {est.cpus:g} = "
                  f"{est.cpu_hours / est.cpus:.2f} h): no schedule is faster",
              f"simulated: {_h(est.makespan)}: greedy list scheduling of the gated graph (a node starts once its "
              "parents are done and its CPUs and GPU share fit, earliest kind first, as the sweep's gate does)"]
    lines += ["", *_goal_lines(est, graph, corpus_tokens)]
    return "\n".join(lines)


def _goal_lines(est: Estimate, graph, corpus_tokens) -> list[str]:
    goal = GOAL_HOURS * 3600
    where = f"{est.gpus} GPUs" + ("" if est.gpus == GOAL_GPUS else f" (the goal names {GOAL_GPUS})")
    verdict = "meets it" if est.makespan <= goal else "does NOT meet it"
    lines = [f"design goal: the whole paper sweep within {GOAL_HOURS:g} h on one {GOAL_GPUS}-GPU node. This estimate, "
             f"{_h(est.makespan)} on {where}, {verdict}."]
    if not any(j.gpu > 0 for j in est.jobs):
        return [f"(no node asks for a GPU: the design goal, {GOAL_HOURS:g} h on one {GOAL_GPUS}-GPU node, does not "
                "apply)"]
    if est.makespan <= goal:
        return lines
    exact = any(n.kind == "tokenizer" and n.params["config"].get("trainer", "exact") == "exact"
                for n in graph.nodes.values())
    pretrain = next((n.params["config"] for n in graph.nodes.values() if n.kind == "pretrain"), None)
    variants = [("as configured", {})]
    if exact:
        variants.append(("target.trainer=tokenizers (the Rust learner, one thread per CPU)", {"trainer": "tokenizers"}))
    variants.append(("seeds [1] only (finetune, wic, forgetting; the others in a later run)", {"first_seed": True}))
    if exact:
        variants.append(("both", {"trainer": "tokenizers", "first_seed": True}))
    lines += [f"what would fit (simulated on the same GPUs and CPUs; max_steps: the largest budget of every "
              f"pretraining node that fits {GOAL_HOURS:g} h):",
              f"  {'change':<72}{'simulated':>10}  pretrain.max_steps that fits"]
    for name, change in variants:
        variant = WhatIf(graph, est, corpus_tokens, **change)
        makespan = est.makespan if not change else variant.makespan()
        if pretrain is None:
            fits = "-"
        else:
            steps, floor = variant.fit_max_steps(goal)
            per_node = pretrain["batch_size"] * pretrain["block_size"]
            fits = (f"none: {_h(floor)} even at 100 steps" if steps is None else
                    f"{steps:,} ({_fmt_tokens(steps * per_node)} tokens per node)")
        lines.append(f"  {name:<72}{_h(makespan):>10}  {fits}")
    return lines


def parse_corpus_tokens(items: list[str] | None) -> dict[str, float]:
    """`--corpus-tokens wiki_en=4.5e9 ...` as {name: tokens}."""
    out = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--corpus-tokens {item!r}: use NAME=TOKENS, e.g. wiki_en=4.5e9") from None
    return out


def plan_estimate(graph, throughput: str | None, gpus: int, cpus: float, corpus_tokens: list[str] | None,
                  measured: str | None = None, pretrain_tokens_per_s: float | None = None) -> str:
    """The text of `xlt plan --estimate`. Rates, each replacing the one before where it has a figure: the
    assumptions; the GPU check's table (`throughput`, default runs/gpu_check/gpu_check.json when it exists); the
    compute records of a previous run (`measured`, default this sweep's output_dir when its nodes recorded any);
    a stated pretraining rate."""
    path = Path(throughput) if throughput else DEFAULT_THROUGHPUT
    if throughput and not path.is_file():
        raise FileNotFoundError(f"--throughput {throughput}: no such file (benchmarks/gpu_check.py writes one)")
    if path.is_file():
        rates = read_throughput(path)
    else:
        rates = dataclasses.replace(assumed_rates(), notes=assumed_rates().notes + (
            f"no {DEFAULT_THROUGHPUT} (run benchmarks/gpu_check.py on the cluster's GPU to measure): all assumed",))
    folder = Path(measured) if measured else Path(graph.sweep.output_dir)
    if measured and not folder.is_dir():
        raise FileNotFoundError(f"--measured {measured}: no such folder (give a previous run's output_dir)")
    if folder.is_dir():
        rates, n = measured_rates(folder, rates)
        if measured and not n:
            raise ValueError(f"--measured {measured}: no finished training node there has a compute record (nodes "
                             "record one since the cost accounting; rerun a few, or leave --measured out)")
    if pretrain_tokens_per_s is not None:
        rates = stated_pretrain_rate(pretrain_tokens_per_s, rates)
    tokens = parse_corpus_tokens(corpus_tokens)
    records = finished_records(graph)
    rates = calibrate(graph, rates, tokens, records)
    text = report(estimate(graph, rates, gpus, cpus, tokens), graph, tokens)
    so_far = recorded_so_far(graph, records)
    return text + (f"\n\n{so_far}" if so_far else "")
