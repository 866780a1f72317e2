"""One real sweep through Ray Tune on 2 CPUs: gating order, one MLflow run per node, failures that name
their parent, nothing left RUNNING, and a rerun that skips finished nodes."""
from __future__ import annotations

import random
from pathlib import Path

import yaml

from tests.conftest import write_corpus

WORDS_S = "ko ta mira senu vol dak pir lun esa ro tumi kelo fas ni gor ula bek sim".split()


def tiny_glue(root: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    folder = root / "SST-2"
    folder.mkdir(parents=True)
    for split, n in (("train", 64), ("dev", 32)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = [rng.choice(["the", "dog", "cat", "a", "house", "runs"]) for _ in range(5)]
            words.insert(rng.randint(0, 5), "good" if label else "bad")
            rows.append(" ".join(words) + f"\t{label}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")


def sweep_yaml(tmp: Path, target_vocab: int) -> Path:
    small = {"batch_size": 8, "per_device_batch_size": 8, "block_size": 32, "max_steps": 6, "learning_rate": 1e-3,
             "log_every": 3, "eval_every": 3, "checkpoint_every": 3}
    cfg = {
        "name": "e2e", "output_dir": str(tmp / "runs"), "tracking_uri": f"sqlite:///{tmp}/mlruns/mlflow.db",
        "max_concurrent_trials": 2, "max_failures": 0, "cpu_kernels": "avx2",
        "corpora": {"E": {"files": [str(tmp / "e.txt")]}, "S": {"files": [str(tmp / "s.txt")]}},
        "sources": {"S": {"keep_vocab_size": None, "build": {
            "corpus": "S", "vocab_size": 120, "pretrain": small,
            "architecture": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                             "max_position_embeddings": 64}}}},
        "target": {"corpus": "E", "vocab_size": target_vocab, "min_frequency": 1},
        "experiments": {"transfer_from": ["S"], "vocab_modes": ["frequency", "keep"], "direct": ["S"],
                        "scratch": True, "scratch_like": "S"},
        "pretrain": small,
        "finetune": {"tasks": ["sst2"], "seeds": [1], "data_dir": str(tmp / "glue"), "epochs": 1, "batch_size": 8,
                     "max_length": 32, "learning_rate": 1e-3, "log_every": 4},
        "resources": {k: {"cpu": 1, "gpu": 0} for k in ("tokenizer", "pretrain", "finetune")},
    }
    p = tmp / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def status_line(kind: str, **counts: int) -> str:
    keys = ("done", "running", "started", "interrupted", "failed", "pending", "stale")
    return f"{kind:<10} " + "  ".join(f"{k} {counts.get(k, 0):>4}" for k in keys)


def test_sweep_through_ray(tmp_path, ray_session, capsys):
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import main
    from orchestrator.config import load_sweep
    from orchestrator.graph import build_graph
    from orchestrator.runner import failure_message, read_done
    from stages.common import read_json

    write_corpus(tmp_path / "e.txt", 1500, seed=1)
    write_corpus(tmp_path / "s.txt", 1500, seed=2, words=WORDS_S)
    tiny_glue(tmp_path / "glue")
    # 300 English tokens cannot be covered by the 120-row source table: frequency must fail, clearly.
    cfg = sweep_yaml(tmp_path, target_vocab=300)
    assert main(["run", str(cfg)]) == 1

    graph = build_graph(load_sweep(cfg))
    failed_transfer = "pretrain/S-to-en-frequency"
    err = read_json(graph.node_dir(failed_transfer) / "FAILED")
    assert err["hash"] == graph.nodes[failed_transfer].hash
    assert "StageError" in err["error"] and "vocab_size <=" in err["error"] and "Traceback" in err["traceback"]
    child = "finetune/S-to-en-frequency/sst2/seed1"
    assert failure_message(graph.node_dir(child)).startswith(f"not run: its parent {failed_transfer} failed")
    ok_nodes = [n for n in graph.nodes if n not in (failed_transfer, child)]
    done = {n: read_done(graph, n) for n in ok_nodes}
    assert all(done.values()), [n for n, d in done.items() if not d]
    # every trial ran on the pinned kernels and says so (the workers got the sweep's cpu_kernels)
    assert {(d["cpu"]["cpu_kernels"], d["cpu"]["cpu_capability"]) for d in done.values()} == {("avx2", "AVX2")}
    # the token caches are written by the tokenize nodes and reused by pretraining: one per (corpus, tokenizer),
    # the third one being E through the kept S vocabulary (cut inside the keep trial)
    caches = sorted((graph.node_dir("x").parent / "cache").glob("tokens-*.bin"))
    assert {done["tokenize/E/en-300-cased"]["cache"], done["tokenize/S/S-120-cased"]["cache"]} < set(map(str, caches))
    assert len(caches) == 3 and done["tokenize/E/en-300-cased"]["meta"]["tokens"] > 10_000
    # and its counts, which the frequency node reads: one per vocabulary entry, summing to the cache's tokens
    import numpy as np

    from stages.tokenizer import load_tokenizer
    counts = np.load(graph.node_dir("tokenize/E/en-300-cased") / "token_counts.npy")
    vocab = len(load_tokenizer(str(graph.node_dir("tokenizer/en-300-cased") / "tokenizer")))
    assert counts.shape == (vocab,) and counts.sum() == done["tokenize/E/en-300-cased"]["meta"]["tokens"]
    # gating: every node started after all its parents had finished
    for n in ok_nodes:
        for p in graph.nodes[n].parents:
            assert done[n]["started_at"] >= done[p]["finished_at"], (n, p)

    client = MlflowClient(graph.sweep.tracking_uri)
    exp = client.get_experiment_by_name("xlt-e2e")

    def node_runs():
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        return [r for r in runs if "xlt.node_id" in r.data.tags], runs

    runs, all_runs = node_runs()
    ids = sorted(r.data.tags["xlt.node_id"] for r in runs)
    assert ids == sorted(graph.nodes)  # exactly one run per node
    status = {r.data.tags["xlt.node_id"]: r.info.status for r in runs}
    assert status[failed_transfer] == "FAILED" and status[child] == "FAILED"
    assert all(status[n] == "FINISHED" for n in ok_nodes)
    assert not [r for r in all_runs if r.info.status in ("RUNNING", "SCHEDULED")]
    sweep_run = [r for r in all_runs if r.data.tags.get("xlt.kind") == "sweep"]
    assert len(sweep_run) == 1 and all(r.data.tags["mlflow.parentRunId"] == sweep_run[0].info.run_id for r in runs)
    ft = next(r for r in runs if r.data.tags["xlt.node_id"] == "finetune/S-to-en-keep/sst2/seed1")
    assert ft.data.params["config.task"] == "sst2" and ft.data.params["config.seed"] == "1" and "final/accuracy" in ft.data.metrics
    params = ft.data.params
    assert (params["lang"], params["vocab"], params["model_name"]) == ("S→en", "S", "S-to-en-keep")
    pre = next(r for r in runs if r.data.tags["xlt.node_id"] == "pretrain/S-to-en-keep")
    assert [m.step for m in client.get_metric_history(pre.info.run_id, "train/loss")] == [3, 6]
    # the DONE's compute record, as metrics: 6 steps x 8 x 32 tokens, and the examples the fine-tune saw
    assert pre.data.metrics["compute/tokens_seen"] == 6 * 8 * 32 and pre.data.metrics["compute/gpu_seconds"] == 0
    assert ft.data.metrics["compute/examples_seen"] == done["finetune/S-to-en-keep/sst2/seed1"]["compute"][
        "examples_seen"] > 0 and ft.data.metrics["compute/wall_s"] > 0
    assert "transfer" in {a.path for a in client.list_artifacts(pre.info.run_id)}

    out = capsys.readouterr().out
    assert "| S→en | S |" in out  # the report printed at the end

    # Rerun: finished nodes are skipped (DONE untouched), the failed ones retried under their old runs.
    stamps = {n: (graph.node_dir(n) / "DONE").stat().st_mtime_ns for n in ok_nodes}
    assert main(["run", str(cfg)]) == 1
    assert "2 to run" in capsys.readouterr().out
    assert stamps == {n: (graph.node_dir(n) / "DONE").stat().st_mtime_ns for n in ok_nodes}
    runs2, all_runs2 = node_runs()
    assert len(runs2) == len(runs) and len(all_runs2) == len(all_runs)
    assert not [r for r in all_runs2 if r.info.status in ("RUNNING", "SCHEDULED")]

    assert main(["status", str(cfg)]) == 0
    status_out = capsys.readouterr().out
    assert status_line("pretrain", done=3, failed=1) in status_out
    assert status_line("finetune", done=3, failed=1) in status_out

    # A changed fine-tuning setting re-runs the fine-tunes (new MLflow runs, old ones kept), not pretraining.
    override = ["finetune.learning_rate=2e-3"]
    assert main(["status", str(cfg), *override]) == 0
    assert status_line("finetune", stale=4) in capsys.readouterr().out
    pre_stamps = {n: (graph.node_dir(n) / "DONE").stat().st_mtime_ns for n in ok_nodes if n.startswith("pretrain/")}
    assert main(["run", str(cfg), *override]) == 1
    assert "5 to run" in capsys.readouterr().out  # 4 fine-tunes + the still failing transfer
    assert pre_stamps == {n: (graph.node_dir(n) / "DONE").stat().st_mtime_ns for n in pre_stamps}
    runs3, _ = node_runs()
    assert len(runs3) == len(runs) + 4
    graph2 = build_graph(load_sweep(cfg, override))
    assert read_done(graph2, "finetune/S/sst2/seed1") and not read_done(graph, "finetune/S/sst2/seed1")
