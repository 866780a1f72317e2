"""Run one node of the graph, without Ray: markers, stage dispatch, MLflow logging.

Every node writes into its own folder `<output_dir>/<node id>/`. Its state is told by three JSON markers, each
naming the settings hash it was written under, so no path can pair a result with settings it was not made
under:
- `DONE`, written last and atomically once the stage succeeded: the hash, a fresh `done_id`, the `done_id` of
  every parent it read, and the files it produced (path and size). It counts only while all of these still
  hold: same hash, its parents still DONE with the ids it read (a parent made again makes its children stale),
  its files still there.
- `FAILED`: the hash, the error and its traceback; also written for a node that was never run because a
  parent failed, and then beside (never over) an older `DONE` of other settings, which stays valid for those.
- `STARTED`: the hash, host, pid and boot id of the attempt (with no DONE or FAILED of the same hash, the
  attempt is running or was interrupted: `node_state` tells which).
A folder whose markers all carry other hashes is `stale`: a run with the current settings starts it over.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pydantic import model_validator

from orchestrator import compute
from stages import corpus as corpus_stage
from stages import features as features_stage
from stages import model_card
from stages import finetune as finetune_stage
from stages import pretrain as pretrain_stage
from stages import probe as probe_stage
from stages import reattach as reattach_stage
from stages import tokenizer as tokenizer_stage
from stages import transfer as transfer_stage
from stages import vectors as vectors_stage
from stages import wic as wic_stage
from stages import winogender as winogender_stage
from stages.common import Number, StageConfig, StageError, read_json, setting, write_json

if TYPE_CHECKING:
    from orchestrator.graph import Graph, Node

DONE, FAILED, STARTED, SETTINGS = "DONE", "FAILED", "STARTED", "settings.json"
MARKERS = (DONE, FAILED, STARTED)
# Not part of a node's produced files: its markers, and the resumable state it deletes once DONE.
_NOT_OUTPUTS = {*MARKERS, SETTINGS, "checkpoint", "checkpoint.prev", "checkpoint.tmp"}


def read_marker(path: Path) -> dict | None:
    """A marker's record, or None when it is absent or unreadable (a torn write: not a record at all)."""
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _marker_hash(node_dir: Path, name: str) -> str | None:
    record = read_marker(node_dir / name)
    if record is None:
        return None
    if "hash" in record:
        return record["hash"]
    # Folders written before markers carried their hash: settings.json said it for the whole folder.
    legacy = read_marker(node_dir / SETTINGS)
    return legacy.get("hash") if legacy else None


def _folder_hashes(node_dir: Path) -> set[str]:
    """The settings hashes of everything recorded in the folder (its markers and settings.json)."""
    hashes = {_marker_hash(node_dir, m) for m in MARKERS if (node_dir / m).exists()}
    settings = read_marker(node_dir / SETTINGS)
    if settings and settings.get("hash"):
        hashes.add(settings["hash"])
    return hashes - {None}


def done_problem(graph: Graph, node_id: str) -> str | None:
    """Why the node's DONE of its current settings no longer holds (None when it holds, or there is none):
    a parent no longer done or made again since, or a produced file missing or changed in size."""
    d = graph.node_dir(node_id)
    record = read_marker(d / DONE)
    if record is None:
        return "its DONE marker is unreadable (a torn write)" if (d / DONE).exists() else None
    if _marker_hash(d, DONE) != graph.nodes[node_id].hash:
        return None
    for parent in record.get("parents") or {}:
        if parent in graph.nodes and node_state(graph, parent) != "done":
            return f"its parent {parent} is no longer done"
    return _stale_reason(record, Path(graph.sweep.output_dir))


def node_state(graph: Graph, node_id: str) -> str:
    """done | failed | running | started | interrupted | pending | stale, for the node's current settings.
    stale: the folder holds work of other settings, or a DONE of these settings that no longer holds
    (`done_problem`). An attempt without DONE or FAILED is `running` while the process that wrote STARTED is
    alive on this machine, `interrupted` once it is gone, and `started` when it ran on another machine (whose
    processes this one cannot see). A recycled pid can make a dead attempt look running."""
    d = graph.node_dir(node_id)
    if not d.exists() or not any(d.iterdir()):
        return "pending"
    h = graph.nodes[node_id].hash
    if _marker_hash(d, DONE) == h:
        return "stale" if done_problem(graph, node_id) else "done"
    if _marker_hash(d, FAILED) == h:
        return "failed"
    if _marker_hash(d, STARTED) == h:
        return _attempt_state(d / STARTED)
    if (d / STARTED).exists() and read_marker(d / STARTED) is None:
        return "interrupted"           # a STARTED torn by a crash while it was written
    hashes = _folder_hashes(d)
    return "stale" if hashes - {h} else "pending"


def _boot_id() -> str | None:
    """Changes at every boot (Linux): after a reboot, a recorded pid may belong to an unrelated process."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _attempt_state(started: Path) -> str:
    try:
        info = read_json(started)
        if info["host"] != os.uname().nodename:
            return "started"
        if info.get("boot") and info["boot"] != _boot_id():
            return "interrupted"       # the machine rebooted since: that process is gone, whatever has its pid
        os.kill(int(info["pid"]), 0)   # signal 0: only asks whether the process exists
        if _zombie(int(info["pid"])):
            return "interrupted"       # killed, not yet reaped by its parent: gone all the same
    except ProcessLookupError:
        return "interrupted"
    except PermissionError:
        return "running"               # alive, owned by another user
    except (OSError, ValueError, KeyError, TypeError):
        return "interrupted"           # unreadable marker: a crash while writing it
    return "running"


def _zombie(pid: int) -> bool:
    """A dead process its parent has not reaped yet (Linux /proc; elsewhere assumed alive)."""
    try:
        # the state is the field after the parenthesised command name, which may itself hold spaces
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def done_nodes(graph: Graph) -> set[str]:
    return {n for n in graph.nodes if node_state(graph, n) == "done"}


def read_done(graph: Graph, node_id: str) -> dict | None:
    """The node's summary, only if it was finished with the current settings."""
    return read_json(graph.node_dir(node_id) / DONE) if node_state(graph, node_id) == "done" else None


def failure_message(node_dir: Path) -> str | None:
    """The first line of the error in the folder's FAILED marker (None without one)."""
    record = read_marker(node_dir / FAILED)
    if record is not None:
        return str(record.get("error", "")).splitlines()[0] if record.get("error") else ""
    if (node_dir / FAILED).exists():   # written before FAILED was JSON: the error was its first line
        return next(iter((node_dir / FAILED).read_text(errors="replace").splitlines()), "")
    return None


def _write_failed(node_dir: Path, node_hash: str, error: str, trace: str = "") -> None:
    write_json(node_dir / FAILED, {"hash": node_hash, "error": error, "traceback": trace, "time": time.time()})


def mark_failed(graph: Graph, node_id: str, message: str) -> None:
    """Record that the node failed (or was not run because a parent failed) under its current settings. Only
    FAILED is written: an older DONE of other settings stays as it is, valid for those settings."""
    d = graph.node_dir(node_id)
    d.mkdir(parents=True, exist_ok=True)
    _write_failed(d, graph.nodes[node_id].hash, message)


def _outputs(node: Node, d: Path, root: Path, summary: dict) -> dict[str, int]:
    """The files the node produced, by path relative to the sweep's output root, with their sizes: its folder
    (markers and checkpoints apart) and the shared token cache a `tokenize` node writes outside it."""
    files = [f for f in d.rglob("*") if f.is_file() and f.relative_to(d).parts[0] not in _NOT_OUTPUTS]
    for key in ("cache", "counts"):
        if node.kind == "tokenize" and summary.get(key):
            files += [Path(summary[key])]
    out = {}
    for f in sorted(files):
        try:
            out[f.resolve().relative_to(root.resolve()).as_posix()] = f.stat().st_size
        except ValueError:
            continue                   # outside the output root (e.g. a cache set elsewhere): not tracked
    return out


def _parents_done(node: Node, root: Path) -> dict[str, str]:
    """The done_id of each parent, read where the parent wrote it. A parent this process cannot see is almost
    always a cluster whose output_dir is not on storage shared by every machine: say that, not 'no file'."""
    ids = {}
    for parent in node.parents:
        record = read_marker(root / parent / DONE)
        if record is None:
            raise StageError(
                f"{node.id} needs the output of its parent {parent}, but {root / parent / DONE} is not visible "
                f"on this machine ({os.uname().nodename}). On a cluster, output_dir ({root}) must be on storage "
                "shared by every machine (NFS or similar, mounted at the same path): set output_dir to such a "
                "folder and rerun.")
        ids[parent] = record.get("done_id", "")
    return ids


@dataclass
class Trial:
    """What a node's handler works with: the node, its folder, the sweep's output root and the sinks."""
    node: Node
    dir: Path
    root: Path
    on_log: Callable[[int, dict[str, float]], None]
    threads: int = 1
    tracker: object | None = None
    run_id: str | None = None
    log: Callable[[str], None] = print
    log_model_artifacts: bool = False

    def config(self):
        """The node's stage config, validated again by its type (the graph wrote it as JSON), with the CPU
        threads this trial was granted."""
        cls = KINDS[self.node.kind].config
        threads = {"num_threads": self.threads} if "num_threads" in cls.model_fields else {}
        return cls.model_validate({**self.node.params["config"], **threads})

    def artifact(self, path: Path, where: str) -> None:
        if self.tracker and self.run_id:
            self.tracker.log_artifact(self.run_id, path, where)

    def tags(self, tags: dict) -> None:
        if self.tracker and self.run_id:
            self.tracker.set_tags(self.run_id, tags)


def run_node(node: Node, root: str | Path, tracker=None, run_id: str | None = None,
             report: Callable[[dict], None] | None = None, threads: int = 1, log: Callable[[str], None] = print,
             log_model_artifacts: bool = False, keep_checkpoints: bool = False,
             cpu_kernels: str = "native", gpu_share: float | None = None) -> dict:
    """Execute `node`, whose folder is `<root>/<node id>`; returns its summary (also written to DONE). Raises
    on failure after recording it. Needs nothing but the node: its params hold its resolved stage config.
    `cpu_kernels` pins the float kernels of this process (stages.common.CPU_KERNELS) before any torch work.
    `gpu_share` is what the trial was granted (default: the node's resources), for the DONE's `compute` record."""
    from stages.common import pin_cpu_kernels, quiet_transformers

    cpu = pin_cpu_kernels(cpu_kernels)   # first: the kernels are fixed by the first torch operation
    quiet_transformers()
    root = Path(root)
    d = root / node.id
    if d.exists():
        _start_over_if_needed(node, d, root, log)
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / SETTINGS, {"hash": node.hash, "params": node.params, "parents": list(node.parents)})
    write_json(d / STARTED, {"hash": node.hash, "time": time.time(), "host": os.uname().nodename,
                             "pid": os.getpid(), "boot": _boot_id()})
    (d / FAILED).unlink(missing_ok=True)
    if tracker and run_id:
        tracker.start(run_id)

    def on_log(step: int, metrics: dict[str, float]) -> None:
        if tracker and run_id:
            tracker.log_metrics(run_id, step, metrics)
        if report:
            report({**metrics, "step": step})

    trial = Trial(node, d, root, on_log, threads, tracker, run_id, log, log_model_artifacts)
    t0 = time.time()
    log(f"[{node.kind}] {node.id}: start")
    share = float(node.resources.get("gpu") or 0) if gpu_share is None else float(gpu_share)
    with _free_gpu_memory_after():
        return _run(node, trial, d, root, tracker, run_id, log, keep_checkpoints, t0, cpu, share)


@contextlib.contextmanager
def _free_gpu_memory_after():
    """Ray reuses a worker process for the next trial of the same resources: the CUDA memory this trial's
    models left in PyTorch's cache would otherwise stay reserved, out of reach of the GPU's other trials."""
    try:
        yield
    finally:
        import torch

        if torch.cuda.is_available():
            gc.collect()
            torch.cuda.empty_cache()


def _run(node: Node, trial: Trial, d: Path, root: Path, tracker, run_id, log, keep_checkpoints: bool,
         t0: float, cpu: dict, gpu_share: float) -> dict:
    """The attempt itself: the stage, then DONE (or FAILED, or nothing when it was stopped from outside)."""
    try:
        parents_done = _parents_done(node, root)
        gpu_memory = _cap_gpu_memory(node, log)   # before the stage builds any model
        summary = KINDS[node.kind].run(trial)
    except (KeyboardInterrupt, SystemExit) as e:
        # Stopped, not failed: Tune ends a stopped trial (Ctrl-C of the driver) with sys.exit(0) at its next
        # report. No FAILED: STARTED alone makes the node `interrupted`, and a rerun resumes it.
        if tracker and run_id:
            tracker.finish(run_id, ok=False, killed=True)
        log(f"[{node.kind}] {node.id}: interrupted ({type(e).__name__})")
        raise
    except BaseException as e:
        msg = f"{type(e).__name__}: {e}"
        _write_failed(d, node.hash, msg, traceback.format_exc())
        if tracker and run_id:
            tracker.finish(run_id, ok=False, error=msg)
        log(f"[{node.kind}] {node.id}: FAILED: {msg}")
        raise
    summary = {"node": node.id, "kind": node.kind, "started_at": t0, "finished_at": time.time(),
               "seconds": time.time() - t0, **summary, "cpu": cpu}
    summary["compute"] = _compute(node, summary, trial.threads, gpu_share)
    if gpu_memory is not None:
        import torch

        summary["gpu_memory"] = {**gpu_memory, "max_memory_allocated": torch.cuda.max_memory_allocated()}
    summary.update(hash=node.hash, done_id=uuid.uuid4().hex, parents=parents_done,
                   outputs=_outputs(node, d, root, summary))
    write_json(d / DONE, summary)             # last, atomically: from here on the node is finished
    if tracker and run_id:                    # at once: a kill after DONE must not leave the run RUNNING
        # the cost beside the curves: MLflow compares runs by GPU-seconds, tokens seen or MFU
        tracker.log_metrics(run_id, 0, {f"compute/{k}": v for k, v in summary["compute"].items()
                                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        tracker.log_artifact(run_id, d / DONE, "node")
        tracker.finish(run_id, ok=True)
    if not keep_checkpoints and not node.params["config"].get("stop_at_fraction"):
        _drop_checkpoints(d)    # a learning-curve segment keeps its last: the next segment starts from it
    log(f"[{node.kind}] {node.id}: done in {summary['seconds']:.1f}s")
    return summary


def _compute(node: Node, summary: dict, cpus: int, gpu_share: float) -> dict:
    """The DONE's cost record (orchestrator/compute.py): a GPU share counts only where CUDA is visible (a
    CPU-only cluster runs GPU-asking nodes at share 0), MFU only with the model's shape at hand."""
    import torch

    on_gpu = gpu_share > 0 and torch.cuda.is_available()
    name = torch.cuda.get_device_name() if on_gpu else None
    return compute.node_compute(node.kind, summary, node.params, summary["seconds"], float(cpus),
                                gpu_share if on_gpu else 0.0, name, _trained_shape(node, summary))


def _trained_shape(node: Node, summary: dict) -> compute.Shape | None:
    """The layers' shape of the model a training node trained: its config.json (pretraining: the exported
    model; fine-tuning: the model it started from, a local folder or a hub id already in the local cache)."""
    if node.kind == "pretrain":
        where = summary.get("model_dir")
    elif node.kind in ("finetune", "curve", "forget", "wic"):
        where = node.params["config"].get("model")
    else:
        return None
    if not where:
        return None
    if (Path(where) / "config.json").is_file():
        return compute.Shape.of(read_json(Path(where) / "config.json"))
    try:   # a hub id: the stage loaded it, so its config is in the cache; never a download here
        from transformers import AutoConfig

        return compute.Shape.of(AutoConfig.from_pretrained(where, local_files_only=True).to_dict())
    except (OSError, ValueError):
        return None


def _start_over_if_needed(node: Node, d: Path, root: Path, log: Callable[[str], None]) -> None:
    """Empty the folder when what it holds must not be resumed: work of other settings (a resumed optimizer
    of another learning rate, a cached init), or a DONE of these settings that no longer holds. An unreadable
    DONE is only dropped: the attempt's checkpoints are still this node's, so the rerun resumes from them."""
    if (d / DONE).exists() and read_marker(d / DONE) is None:
        log(f"[{node.kind}] {node.id}: its DONE marker is unreadable (a torn write); running the node again "
            "from its last checkpoint")
        (d / DONE).unlink()
    other = _folder_hashes(d) - {node.hash}
    stale_done = None
    if not other and _marker_hash(d, DONE) == node.hash:
        record = read_marker(d / DONE) or {}
        stale_done = _stale_reason(record, root)
    if other or stale_done:
        # Its MLflow run stays, under the old hash.
        why = stale_done or "settings changed since the last run"
        log(f"[{node.kind}] {node.id}: {why}; starting this node over")
        shutil.rmtree(d)


def _stale_reason(record: dict, root: Path) -> str | None:
    """What in a DONE record no longer holds, read from the folders alone (a worker has no graph): a parent
    whose DONE now has another done_id (it was made again), or a produced file missing or of another size."""
    for parent, done_id in (record.get("parents") or {}).items():
        now = read_marker(root / parent / DONE)
        if now is None or now.get("done_id") != done_id:
            return f"its parent {parent} was made again since it read it"
    for rel, size in (record.get("outputs") or {}).items():
        f = root / rel
        if not f.is_file() or f.stat().st_size != size:
            return f"its output {rel} is missing or changed"
    return None


def _drop_checkpoints(d: Path) -> None:
    """Resumable training state is only needed until the result is DONE (at paper scale it is a copy of model
    and optimizer per pretraining node: hundreds of GB over a study). `keep_checkpoints: true` keeps it."""
    for name in ("checkpoint", "checkpoint.prev", "checkpoint.tmp"):
        if (d / name).is_dir():
            shutil.rmtree(d / name)


def _cap_gpu_memory(node: Node, log: Callable[[str], None]) -> dict | None:
    """A trial granted a fraction of a GPU (`resources.<kind>.gpu` < 1, e.g. 0.25: four fine-tunes per GPU) may
    allocate at most that share of the GPU's memory. Ray packs such trials onto one GPU but does not divide
    its memory; with the cap, a trial that outgrows its share fails with its own out-of-memory error instead
    of making its neighbours fail. Ray makes the granted GPU the process's only visible one (the current
    device). Only when CUDA is available and 0 < share < 1; returns what was set (None otherwise)."""
    import torch

    share = float(node.resources.get("gpu") or 0)
    if not torch.cuda.is_available():
        return None
    if not 0 < share < 1:
        if share >= 1:   # a reused worker may have been capped by a fractional trial before: lift that
            torch.cuda.set_per_process_memory_fraction(1.0, torch.cuda.current_device())
        return None
    device = torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(share, device)
    torch.cuda.reset_peak_memory_stats(device)
    total = torch.cuda.get_device_properties(device).total_memory
    name = torch.cuda.get_device_name(device)
    log(f"[{node.kind}] {node.id}: GPU share {share:g}: CUDA memory of this process capped at "
        f"{share * total / 2**30:.1f} of {total / 2**30:.1f} GiB (cuda:{device}, {name}, pid {os.getpid()})")
    return {"fraction": share, "device": name, "cap_bytes": int(share * total)}


# --- one handler per kind: build nothing, run the stage on the node's config, log what it returns ----------

def _tokenizer(t: Trial) -> dict:
    cfg = t.config()
    # Either learner counts words in parallel only with the pool on: the Rust trainer's threads, and the exact
    # learner's counting processes (count_words reads RAYON_NUM_THREADS).
    with _tokenizers_threads(t.threads):
        res = tokenizer_stage.train_tokenizer(cfg)
    t.on_log(0, {"vocab_size": res.vocab_size, "unk_rate": res.unk_rate, "documents": res.documents})
    return {"result": dataclasses.asdict(res)}


@contextlib.contextmanager
def _tokenizers_threads(threads: int):
    """The sweep turns tokenizers' thread pool off for every trial (it is unsafe in a process that forks after
    using it, and trials share machines). Trials that only tokenize fork nothing and own their CPUs, so they
    turn it on for their work and restore the environment after."""
    saved = {k: os.environ.get(k) for k in ("TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS")}
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    os.environ["RAYON_NUM_THREADS"] = str(max(1, threads))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tokenize(t: Trial) -> dict:
    """The token cache of (corpus, tokenizer) the pretraining nodes below read, and its token counts, which
    frequency-mapped nodes rank by instead of counting the same cache again."""
    with _tokenizers_threads(t.threads):
        res = corpus_stage.tokenize_corpus(t.config(), log=t.log)
    t.on_log(0, {k: v for k, v in res.meta.items() if isinstance(v, (int, float))})
    return {"cache": res.cache, "counts": res.counts, "meta": res.meta}


def _vectors(t: Trial) -> dict:
    """fastText vectors an init reads (focus: target tokens; wechsel: words of each language), trained once on one
    thread and shared by every pretraining node that needs them."""
    res = vectors_stage.train_vectors(t.config(), log=t.log)
    t.on_log(0, {"words": res.words, "tokens": res.tokens})
    return {"result": dataclasses.asdict(res)}


def _pretrain(t: Trial) -> dict:
    """The model pretraining starts from (`transfer`: a vocabulary surgery, a scratch or a built model), written
    once into `init/`, then continued MLM pretraining."""
    transfer_cfg = transfer_stage.TransferConfig.model_validate(t.node.params["transfer"])
    init = Path(transfer_cfg.output_dir)
    if not (init / ".complete").exists():
        res = transfer_stage.transfer(transfer_cfg, log=t.log)
        t.log(f"[transfer] {t.node.id}: {res.mode}, vocab {res.vocab_size}, {res.identity_count} ordinary tokens "
              "keep their own source row (special tokens are matched by role, apart)")
        write_json(init / ".complete", {})
    report = read_json(init / "mapping_report.json")
    t.artifact(init / "mapping_report.json", "transfer")
    t.tags({"xlt.identity_count": report.get("identity_count", "-")})
    diag = report.get("diagnostics") or {}
    metrics = {f"init/{k}": v for k, v in diag.get("rows", {}).items()}
    metrics.update({f"init/{k}": v for k, v in diag.items() if isinstance(v, (int, float))})
    if metrics:   # the init's diagnostics beside the training curves (stages/inits.py `diagnostics`)
        t.on_log(0, metrics)
    cfg = t.config()
    res = pretrain_stage.pretrain(cfg, on_log=t.on_log, log=t.log)
    moved = _movement(init, Path(res.model_dir))
    if moved:   # how far continued pretraining took the embeddings and each layer from where the init put them
        write_json(t.dir / "movement.json", moved)
        t.on_log(res.steps, {f"movement/{k}": v for k, v in moved.items()})
    _pretrain_card(t, cfg, transfer_cfg, report, res)
    t.tags({"xlt.model_dir": res.model_dir})
    if t.log_model_artifacts:
        t.artifact(Path(res.model_dir), "model")
    t.artifact(t.dir / "pretrain_result.json", "node")
    return {"result": dataclasses.asdict(res), "model_dir": res.model_dir}


def _movement(init: Path, final: Path) -> dict[str, float]:
    """Relative Frobenius distance of the final weights from the init's (stages/inits.py `movement`); {} when
    either folder has no safetensors file (a hub model pretrained elsewhere)."""
    from safetensors.torch import load_file

    from stages.inits import movement

    a, b = sorted(init.glob("*.safetensors")), sorted(final.glob("*.safetensors"))
    if not a or not b:
        return {}
    start = {k: v for f in a for k, v in load_file(str(f)).items()}
    end = {k: v for f in b for k, v in load_file(str(f)).items()}
    return movement(start, end)


def _shown(path: str | None, root: Path) -> str | None:
    """A path as a model card shows it: a folder of this sweep by its node-relative path (the card must not
    change when the output folder moves), anything else (a hub id) as it is."""
    if path and path.startswith("/") and root.resolve() in Path(path).resolve().parents:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    return path


def _pretrain_card(t: Trial, cfg, transfer_cfg, report: dict, res) -> None:
    """The hub-ready README.md of the exported model folder (stages/model_card.py)."""
    lang = t.node.row[0].split("→")[-1] if t.node.row else "en"   # "sv→en" is English; a built source its own
    hyper = ("learning_rate", "batch_size", "block_size", "mlm_probability", "max_steps", "epochs", "warmup_steps",
             "weight_decay", "mixed_precision")
    model_card.write_pretrain_card(
        res.model_dir, model_key=t.node.model or t.node.id, source_model=_shown(transfer_cfg.source, t.root),
        language=lang, init_method=transfer_cfg.mode, mapping_summary=model_card.mapping_summary(report),
        corpus_files=cfg.corpus.files or [cfg.corpus.hub_dataset], tokens_seen=res.tokens_seen, steps=res.steps,
        eval_loss=res.eval_loss, eval_accuracy=res.eval_accuracy, seed=cfg.seed,
        hyperparameters={k: getattr(cfg, k) for k in hyper})


def _finetune(t: Trial) -> dict:
    cfg = t.config()
    res = finetune_stage.finetune(cfg, on_log=t.on_log)
    if cfg.save_model:
        # forgetting tasks are named <task>-<lang> (scandisent-sv); GLUE is English
        lang = cfg.task.rsplit("-", 1)[1] if t.node.kind == "forget" and "-" in cfg.task else "en"
        model_card.write_finetune_card(
            t.dir / "model", model_key=f"{t.node.model}-{cfg.task}-seed{cfg.seed}",
            base_model=_shown(cfg.model, t.root), task=cfg.task, seed=cfg.seed, metrics=res.metrics,
            language=lang, hyperparameters={k: getattr(cfg, k) for k in ("learning_rate", "batch_size", "epochs",
                                                                          "max_length", "warmup_ratio")
                                            if hasattr(cfg, k)})
    t.on_log(res.steps, {f"final/{k}": v for k, v in res.metrics.items()})
    t.artifact(t.dir / "eval_results.json", "eval")
    # NaN metrics are not logged to MLflow (an undefined correlation is no point on a curve): tags say so.
    t.tags({"xlt.degenerate": ",".join(res.degenerate) or "-",
            "xlt.dropped_rows": sum(d["count"] for d in res.dropped_rows.values())})
    t.log(f"[finetune] {t.node.id}: " + ", ".join(f"{k} {v:.4f}" for k, v in res.metrics.items()))
    return {"result": dataclasses.asdict(res), "metrics": res.metrics, "task": cfg.task, "seed": cfg.seed,
            "model": t.node.model}


# --- the evaluation suite ---------------------------------------------------------------------------

def _reattach(t: Trial) -> dict:
    """The trained body with the source's own vocabulary and word embeddings back (forgetting.reattach)."""
    res = reattach_stage.reattach(t.config(), log=t.log)
    t.on_log(0, {"vocab_size": res.vocab_size, "trained_vocab_size": res.trained_vocab_size})
    return {"result": dataclasses.asdict(res), "model_dir": res.model_dir}


def _features(t: Trial) -> dict:
    res = features_stage.extract_features(t.config(), log=t.log)
    t.on_log(0, {f"sentences/{k}": v for k, v in res.sentences.items()})
    return {"result": dataclasses.asdict(res)}


def _probe(t: Trial) -> dict:
    cfg = t.config()
    res = probe_stage.train_probe(cfg, on_log=t.on_log, log=t.log)
    # uuas / dspr: the test split (or dev, when no test split is given: res.test_split says which)
    metrics = {"uuas": res.test_uuas, "dspr": res.test_dspr, "dspr_nopunct": res.test_dspr_nopunct,
               "dev_uuas": res.dev_uuas, "dev_dspr": res.dev_dspr, "dev_dspr_nopunct": res.dev_dspr_nopunct}
    t.on_log(res.epochs_run, {f"final/{k}": v for k, v in metrics.items()})
    t.artifact(t.dir / "probe_result.json", "eval")
    t.log(f"[probe] {t.node.id}: {res.test_split} UUAS {res.test_uuas:.4f}, DSpr {res.test_dspr:.4f}")
    return {"result": dataclasses.asdict(res), "metrics": metrics, "layer": cfg.layer, "model": t.node.model}


def _wic(t: Trial) -> dict:
    cfg = t.config()
    res = wic_stage.run_wic(cfg, on_log=t.on_log, log=t.log)
    t.on_log(res.steps, {"final/accuracy": res.accuracy})
    t.artifact(t.dir / "eval_results.json", "eval")
    t.log(f"[wic] {t.node.id}: accuracy {res.accuracy:.4f}")
    return {"result": dataclasses.asdict(res), "metrics": {"accuracy": res.accuracy}, "seed": cfg.seed,
            "model": t.node.model}


def _winogender(t: Trial) -> dict:
    cfg = t.config()
    res = winogender_stage.evaluate_winogender(cfg, log=t.log)
    metrics = {"accuracy": res.accuracy, "gender_parity": res.gender_parity}
    t.on_log(0, {f"final/{k}": v for k, v in metrics.items()})
    t.artifact(t.dir / "eval_results.json", "eval")
    t.log(f"[winogender] {t.node.id}: accuracy {res.accuracy:.4f}, gender parity {res.gender_parity:.4f}")
    return {"result": dataclasses.asdict(res), "metrics": metrics, "seed": t.node.params["seed"],
            "model": t.node.model}


# --- the table of node kinds: the only list of them ---------------------------------------------------

class Resources(StageConfig):
    """What one trial of a kind asks Ray for; `gpu` may be fractional (e.g. 0.25: four fine-tunes per GPU)."""
    cpu: Number = setting(1.0, "CPUs (also the trial's torch threads)", gt=0)
    gpu: Number = setting(0.0, "GPUs: a fraction <= 1 or a whole number", ge=0)

    @model_validator(mode="after")
    def _whole_or_fraction(self):
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise ValueError(f"gpu {self.gpu}: use a fraction <= 1 or a whole number")
        return self


@dataclass(frozen=True)
class Kind:
    config: type[StageConfig]     # the stage config in the node's params["config"]
    run: Callable[[Trial], dict]  # its handler
    resources: Resources          # default of resources.<kind> in the sweep YAML
    order: int                    # earlier kinds gate the others: Gate.next_ready starts the lowest first
    upstream: bool = False        # a few nodes that gate many: `xlt plan` lists each one


KINDS: dict[str, Kind] = {
    "tokenizer": Kind(tokenizer_stage.TokenizerConfig, _tokenizer, Resources(cpu=1, gpu=0), 0, upstream=True),
    "tokenize": Kind(corpus_stage.TokenizeConfig, _tokenize, Resources(cpu=1, gpu=0), 1, upstream=True),
    "vectors": Kind(vectors_stage.VectorsConfig, _vectors, Resources(cpu=1, gpu=0), 1, upstream=True),
    "pretrain": Kind(pretrain_stage.PretrainConfig, _pretrain, Resources(cpu=4, gpu=1), 2, upstream=True),
    "features": Kind(features_stage.FeaturesConfig, _features, Resources(cpu=2, gpu=0.25), 3),
    "reattach": Kind(reattach_stage.ReattachConfig, _reattach, Resources(cpu=1, gpu=0), 3),
    "finetune": Kind(finetune_stage.FinetuneConfig, _finetune, Resources(cpu=2, gpu=0.25), 4),
    # GLUE fine-tunes from a learning-curve segment (learning_curve): kept apart from Table 2's `finetune`.
    "curve": Kind(finetune_stage.FinetuneConfig, _finetune, Resources(cpu=2, gpu=0.25), 4),
    "probe": Kind(probe_stage.ProbeConfig, _probe, Resources(cpu=1, gpu=0.1), 5),
    "wic": Kind(wic_stage.WicConfig, _wic, Resources(cpu=2, gpu=0.25), 5),
    "forget": Kind(finetune_stage.FinetuneConfig, _finetune, Resources(cpu=2, gpu=0.25), 5),
    "winogender": Kind(winogender_stage.WinogenderConfig, _winogender, Resources(cpu=1, gpu=0.1), 6),
}
