"""Run one node of the graph, without Ray: markers, stage dispatch, MLflow logging.

Every node writes into its own folder. `DONE` (JSON summary) is written last, only after the stage
succeeded, so a folder with `DONE` is finished work a rerun may skip; `FAILED` holds the last error;
`STARTED` says an attempt began, on which host and in which process (with neither of the others, the attempt
is still running or was interrupted: `node_state` tells which).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from orchestrator.graph import Graph, Node
from stages.common import read_json, write_json

DONE, FAILED, STARTED, SETTINGS = "DONE", "FAILED", "STARTED", "settings.json"


def _folder_hash(node_dir: Path) -> str | None:
    p = node_dir / SETTINGS
    return read_json(p).get("hash") if p.exists() else None


def node_state(graph: Graph, node_id: str) -> str:
    """done | failed | running | started | interrupted | pending, or stale: the folder holds work made with
    other settings. An attempt without DONE or FAILED is `running` while the process that wrote STARTED is
    alive on this machine, `interrupted` once it is gone, and `started` when it ran on another machine (whose
    processes this one cannot see). A recycled pid can make a dead attempt look running."""
    d = graph.node_dir(node_id)
    if not d.exists() or not any(d.iterdir()):
        return "pending"
    if _folder_hash(d) != graph.nodes[node_id].hash:
        return "stale"
    if (d / DONE).exists():
        return "done"
    if (d / FAILED).exists():
        return "failed"
    if (d / STARTED).exists():
        return _attempt_state(d / STARTED)
    return "pending"


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
    except ProcessLookupError:
        return "interrupted"
    except PermissionError:
        return "running"               # alive, owned by another user
    except (OSError, ValueError, KeyError, TypeError):
        return "interrupted"           # unreadable marker: a crash while writing it
    return "running"


def done_nodes(graph: Graph) -> set[str]:
    return {n for n in graph.nodes if node_state(graph, n) == "done"}


def read_done(graph: Graph, node_id: str) -> dict | None:
    """The node's summary, only if it was finished with the current settings."""
    return read_json(graph.node_dir(node_id) / DONE) if node_state(graph, node_id) == "done" else None


def mark_failed(graph: Graph, node_id: str, message: str) -> None:
    d = graph.node_dir(node_id)
    d.mkdir(parents=True, exist_ok=True)
    if _folder_hash(d) != graph.nodes[node_id].hash:
        write_json(d / SETTINGS, {"hash": graph.nodes[node_id].hash})
    (d / FAILED).write_text(message + "\n")


def run_node(graph: Graph, node: Node, tracker=None, run_id: str | None = None,
             report: Callable[[dict], None] | None = None, threads: int = 1, log: Callable[[str], None] = print) -> dict:
    """Execute `node`; returns its summary (also written to DONE). Raises on failure after recording it."""
    from stages.common import quiet_transformers

    quiet_transformers()
    d = graph.node_dir(node.id)
    if d.exists() and _folder_hash(d) != node.hash:
        # Checkpoints and results of other settings must not leak into this run (a resumed optimizer,
        # a cached init): start over. Their MLflow run stays, under the old hash.
        log(f"[{node.kind}] {node.id}: settings changed since the last run; starting this node over")
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / SETTINGS, {"hash": node.hash, "params": node.params, "parents": list(node.parents)})
    (d / FAILED).unlink(missing_ok=True)
    write_json(d / STARTED, {"time": time.time(), "host": os.uname().nodename, "pid": os.getpid(),
                             "boot": _boot_id()})
    if tracker and run_id:
        tracker.start(run_id)

    def on_log(step: int, metrics: dict[str, float]) -> None:
        if tracker and run_id:
            tracker.log_metrics(run_id, step, metrics)
        if report:
            report({**metrics, "step": step})

    t0 = time.time()
    log(f"[{node.kind}] {node.id}: start")
    try:
        fn = {"tokenizer": _tokenizer, "tokenize": _tokenize, "pretrain": _pretrain, "finetune": _finetune,
              "forget": _finetune, "features": _features, "probe": _probe, "wic": _wic,
              "winogender": _winogender}[node.kind]
        summary = fn(graph, node, d, on_log, threads, tracker, run_id, log)
    except BaseException as e:
        msg = f"{type(e).__name__}: {e}"
        mark_failed(graph, node.id, msg + "\n\n" + traceback.format_exc())
        if tracker and run_id:
            tracker.finish(run_id, ok=False, error=msg)
        log(f"[{node.kind}] {node.id}: FAILED: {msg}")
        raise
    summary = {"node": node.id, "kind": node.kind, "started_at": t0, "finished_at": time.time(),
               "seconds": time.time() - t0, **summary}
    write_json(d / DONE, summary)
    if tracker and run_id:
        tracker.log_artifact(run_id, d / DONE, "node")
        tracker.finish(run_id, ok=True)
    log(f"[{node.kind}] {node.id}: done in {summary['seconds']:.1f}s")
    return summary


def _tokenizer(graph, node, d, on_log, threads, tracker, run_id, log) -> dict:
    from stages.corpus import CorpusConfig
    from stages.tokenizer import TokenizerConfig, train_tokenizer

    p = node.params
    cfg = TokenizerConfig(corpus=CorpusConfig(**p["corpus"]), output_dir=str(d / "tokenizer"),
                          vocab_size=p["vocab_size"], lowercase=p["lowercase"], min_frequency=p["min_frequency"],
                          limit_alphabet=p["limit_alphabet"], trainer=p["trainer"])
    # the Rust trainer is multi-threaded only with the pool on
    with _tokenizers_threads(threads) if cfg.trainer == "tokenizers" else contextlib.nullcontext():
        res = train_tokenizer(cfg)
    on_log(0, {"vocab_size": res.vocab_size, "unk_rate": res.unk_rate, "documents": res.documents})
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


def _tokenize(graph, node, d, on_log, threads, tracker, run_id, log) -> dict:
    """Build the token cache of (corpus, tokenizer) that the pretraining nodes below read, with tokenizers'
    thread pool on, and its token counts (`token_counts.npy`), which every frequency-mapped node reads
    instead of counting the same cache again."""
    from stages.corpus import CorpusConfig, token_counts, tokenize_to_cache
    from stages.tokenizer import load_tokenizer

    p = node.params
    with _tokenizers_threads(threads):
        tok = load_tokenizer(_tokenizer_dir(graph, p["tokenizer_node"]))
        cache = tokenize_to_cache(CorpusConfig(**p["corpus"]), tok, Path(graph.sweep.output_dir) / "cache",
                                  p["corpus_name"], log=log)
    np.save(d / "token_counts.npy", token_counts(cache, len(tok)))
    meta = read_json(cache.with_suffix(".json"))
    on_log(0, {k: v for k, v in meta.items() if isinstance(v, (int, float))})
    return {"cache": str(cache), "meta": meta}


def _model_dir(graph: Graph, model: str | None, model_node: str | None) -> str:
    return model if model else str(graph.node_dir(model_node) / "model")


def _tokenizer_dir(graph: Graph, node_id: str) -> str:
    return str(graph.node_dir(node_id) / "tokenizer")


def _prepare_init(graph: Graph, node: Node, d: Path, cache_dir: Path, log) -> dict:
    """Write the model pretraining starts from into `d/init` (once: `.complete` marks it finished)."""
    from stages.common import set_seed
    from stages.corpus import CorpusConfig, token_counts, tokenize_to_cache
    from stages.tokenizer import load_tokenizer
    from stages.transfer import TransferConfig, transfer

    p, init = node.params, d / "init"
    if (init / ".complete").exists():
        return read_json(init / "mapping_report.json") if (init / "mapping_report.json").exists() else {}
    if p["mode"] == "build":
        import shutil

        from transformers import AutoConfig, AutoModelForMaskedLM

        tok = load_tokenizer(_tokenizer_dir(graph, p["tokenizer_node"]))
        a = p["architecture"]
        config = AutoConfig.for_model(a["model_type"], vocab_size=len(tok), hidden_size=a["hidden_size"],
                                      num_hidden_layers=a["num_layers"], num_attention_heads=a["num_heads"],
                                      intermediate_size=a["intermediate_size"],
                                      max_position_embeddings=a["max_position_embeddings"], pad_token_id=tok.pad_token_id)
        set_seed(p["seed"])
        if init.exists():
            shutil.rmtree(init)
        AutoModelForMaskedLM.from_config(config).save_pretrained(str(init))
        tok.save_pretrained(str(init))
        report = {"mode": "build", "vocab_size": len(tok), "architecture": a}
        write_json(init / "mapping_report.json", report)
    else:
        source = _model_dir(graph, p["source_model"], p["source_node"])
        tok_dir = _tokenizer_dir(graph, p["tokenizer_node"]) if p["tokenizer_node"] else None
        target_counts = source_counts = None
        if p["mode"] in ("frequency", "random-map"):
            # English counts from the tokenize node this node waits for (graph.py gives it one)
            tokenized = next(q for q in node.parents if graph.nodes[q].kind == "tokenize")
            target_counts = str(graph.node_dir(tokenized) / "token_counts.npy")
            if p.get("source_corpus"):
                src_tok = load_tokenizer(source)
                cache = tokenize_to_cache(CorpusConfig(**p["source_corpus"]), src_tok, cache_dir, "source corpus", log=log)
                source_counts = str(d / "source_counts.npy")
                np.save(source_counts, token_counts(cache, len(src_tok)))
        res = transfer(TransferConfig(source=source, mode=p["mode"], output_dir=str(init), target_tokenizer=tok_dir,
                                      target_counts=target_counts, source_counts=source_counts,
                                      keep_vocab_size=p.get("keep_vocab_size"), seed=p["seed"],
                                      grow_embeddings=p.get("grow_embeddings", False)))
        report = read_json(res.report_path)
        log(f"[transfer] {node.id}: {res.mode}, vocab {res.vocab_size}, {res.identity_count} strings map to themselves")
    (init / ".complete").write_text("")
    return report


def _pretrain(graph, node, d, on_log, threads, tracker, run_id, log) -> dict:
    from stages.corpus import CorpusConfig
    from stages.pretrain import PretrainConfig, pretrain

    p = node.params
    cache_dir = Path(graph.sweep.output_dir) / "cache"
    report = _prepare_init(graph, node, d, cache_dir, log)
    if tracker and run_id:
        tracker.log_artifact(run_id, d / "init" / "mapping_report.json", "transfer")
        tracker.set_tags(run_id, {"xlt.identity_count": report.get("identity_count", "-")})
    res = pretrain(PretrainConfig(init_model=str(d / "init"), corpus=CorpusConfig(**p["corpus"]), output_dir=str(d),
                                  cache_dir=str(cache_dir), seed=p["seed"], num_threads=threads, **p["settings"]),
                   on_log=on_log, log=log)
    if tracker and run_id:
        tracker.set_tags(run_id, {"xlt.model_dir": res.model_dir})
        if graph.sweep.log_model_artifacts:
            tracker.log_artifact(run_id, res.model_dir, "model")
        tracker.log_artifact(run_id, d / "pretrain_result.json", "node")
    return {"result": dataclasses.asdict(res), "model_dir": res.model_dir}


def _finetune(graph, node, d, on_log, threads, tracker, run_id, log) -> dict:
    from stages.finetune import FinetuneConfig, finetune

    p = node.params
    model = _model_dir(graph, p["model"], p["model_node"])
    res = finetune(FinetuneConfig(model=model, task=p["task"], output_dir=str(d), seed=p["seed"], num_threads=threads,
                                  **p["settings"]), on_log=on_log)
    on_log(res.steps, {f"final/{k}": v for k, v in res.metrics.items()})
    if tracker and run_id:
        tracker.log_artifact(run_id, d / "eval_results.json", "eval")
    log(f"[finetune] {node.id}: " + ", ".join(f"{k} {v:.4f}" for k, v in res.metrics.items()))
    return {"result": dataclasses.asdict(res), "metrics": res.metrics, "task": p["task"], "seed": p["seed"],
            "model": node.model}


# --- the evaluation suite ---------------------------------------------------------------------------

def _features(graph, node, d, on_log, threads, tracker, run_id, log) -> dict:
    from stages.features import FeaturesConfig, extract_features

    p, st = node.params, node.params["settings"]
    res = extract_features(FeaturesConfig(
        model=_model_dir(graph, p["model"], p["model_node"]), output_dir=str(d / "features"), splits=p["splits"],
        hub_dataset=st["hub_dataset"], hub_config=st["hub_config"], layers=tuple(st["layers"]), pooling=st["pooling"],
        max_length=st["max_length"], max_sentences=st["max_sentences"], num_threads=threads), log=log)
    on_log(0, {f"sentences/{k}": v for k, v in res.sentences.items()})
    return {"result": dataclasses.asdict(res)}


def _probe(graph, node, d, on_log, threads, tracker, run_id, log) -> dict:
    from stages.probe import ProbeConfig, train_probe

    p = node.params
    res = train_probe(ProbeConfig(features_dir=str(graph.node_dir(p["features_node"]) / "features"), layer=p["layer"],
                                  output_dir=str(d), num_threads=threads, **p["settings"]), on_log=on_log, log=log)
    # uuas / dspr: the test split (or dev, when no test split is given: res.test_split says which)
    metrics = {"uuas": res.test_uuas, "dspr": res.test_dspr, "dev_uuas": res.dev_uuas, "dev_dspr": res.dev_dspr}
    on_log(res.epochs_run, {f"final/{k}": v for k, v in metrics.items()})
    if tracker and run_id:
        tracker.log_artifact(run_id, d / "probe_result.json", "eval")
    log(f"[probe] {node.id}: {res.test_split} UUAS {res.test_uuas:.4f}, DSpr {res.test_dspr:.4f}")
    return {"result": dataclasses.asdict(res), "metrics": metrics, "layer": p["layer"], "model": node.model}


def _wic(graph, node, d, on_log, threads, tracker, run_id, log) -> dict:
    from stages.wic import WicConfig, run_wic

    p = node.params
    res = run_wic(WicConfig(model=_model_dir(graph, p["model"], p["model_node"]), output_dir=str(d), seed=p["seed"],
                            num_threads=threads, **p["settings"]), on_log=on_log, log=log)
    on_log(res.steps, {"final/accuracy": res.accuracy})
    if tracker and run_id:
        tracker.log_artifact(run_id, d / "eval_results.json", "eval")
    log(f"[wic] {node.id}: accuracy {res.accuracy:.4f}")
    return {"result": dataclasses.asdict(res), "metrics": {"accuracy": res.accuracy}, "seed": p["seed"],
            "model": node.model}


def _winogender(graph, node, d, on_log, threads, tracker, run_id, log) -> dict:
    from stages.winogender import WinogenderConfig, evaluate_winogender

    p = node.params
    res = evaluate_winogender(WinogenderConfig(model=str(graph.node_dir(p["finetune_node"]) / "model"),
                                               output_dir=str(d), num_threads=threads, **p["settings"]), log=log)
    metrics = {"accuracy": res.accuracy, "gender_parity": res.gender_parity}
    on_log(0, {f"final/{k}": v for k, v in metrics.items()})
    if tracker and run_id:
        tracker.log_artifact(run_id, d / "eval_results.json", "eval")
    log(f"[winogender] {node.id}: accuracy {res.accuracy:.4f}, gender parity {res.gender_parity:.4f}")
    return {"result": dataclasses.asdict(res), "metrics": metrics, "seed": p["seed"], "model": node.model}
