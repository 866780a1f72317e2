"""The evaluation suite through Ray Tune on 2 CPUs, on a small synthetic world in the real file formats:
every kind runs, each trial starts only after its parents, one MLflow run per node, and the report holds
the Table 3 / 8 / 9 / 10 shapes and both figures."""
from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.runner import KINDS


def sweep_yaml(tmp: Path) -> Path:
    small = {"batch_size": 8, "per_device_batch_size": 8, "block_size": 32, "max_steps": 6, "learning_rate": 1e-3,
             "log_every": 3, "eval_every": 3, "checkpoint_every": 3}
    data = tmp / "world"
    tiny = {"learning_rate": 1e-3, "batch_size": 16, "epochs": 1, "max_length": 48, "max_train_examples": 48}
    cfg = {
        "name": "evals", "output_dir": str(tmp / "runs"), "tracking_uri": f"sqlite:///{tmp}/mlruns/mlflow.db",
        "max_concurrent_trials": 2, "max_failures": 0,
        "synthetic": {"out_dir": str(data), "seed": 3, "source_tokens": 20_000, "english_tokens": 10_000,
                      "train_size": 60, "dev_size": 30, "scandisent_train": 60, "scandisent_eval": 20,
                      "axg_pairs": 10},
        "corpora": {"E": {"files": [str(data / "corpus_E.txt")]}, "S": {"files": [str(data / "corpus_S.txt")]}},
        "sources": {"S": {"keep_vocab_size": None, "source_tasks": ["scandisent-S", "stsb-S"], "build": {
            "corpus": "S", "vocab_size": 200, "pretrain": small,
            # RoFormer, as in the demo: every evaluation stage must take it as well as BERT (the core sweep test)
            "architecture": {"model_type": "roformer", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                             "intermediate_size": 64, "max_position_embeddings": 64}}}},
        "target": {"corpus": "E", "vocab_size": 200, "min_frequency": 1},
        "experiments": {"transfer_from": ["S"], "vocab_modes": ["frequency"], "direct": [], "scratch": True,
                        "scratch_like": "S"},
        "pretrain": small,
        "finetune": {"tasks": ["rte"], "seeds": [1], "data_dir": str(data / "glue"), "log_every": 4, **tiny},
        "probe": {"train": str(data / "conllu/train.conllu"), "dev": str(data / "conllu/dev.conllu"),
                  "test": str(data / "conllu/test.conllu"), "layers": [0, 1], "epochs": 2, "features": {"max_sentences": 40}},
        "wic": {"data_dir": str(data / "wic"), "seeds": [1], **tiny},
        "forgetting": {"data": {"scandisent-S": str(data / "scandisent/S.csv"),
                                "scandisent-en": str(data / "scandisent/en.csv"), "stsb-S": str(data / "stsb_S")},
                       "seeds": [1], **tiny},
        "winogender": {"data_file": str(data / "superglue/AX-g/AX-g.jsonl"), "max_length": 48},
        "resources": {k: {"cpu": 1, "gpu": 0} for k in KINDS},
    }
    p = tmp / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_evaluation_suite_through_ray(tmp_path, ray_session, capsys):
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import main
    from orchestrator.config import load_sweep
    from orchestrator.graph import build_graph
    from orchestrator.runner import read_done
    from stages.common import read_json

    cfg = sweep_yaml(tmp_path)
    assert main(["run", str(cfg)]) == 0
    out = capsys.readouterr().out
    graph = build_graph(load_sweep(cfg))
    kinds = {k: len(v) for k, v in graph.by_kind().items()}
    # models: S-to-en-frequency, en-scratch, and [S] (joins for forgetting; no GLUE rows as it is not `direct`)
    assert kinds == {"tokenizer": 2, "tokenize": 2, "pretrain": 3, "features": 3, "finetune": 2, "probe": 6, "wic": 3,
                     "forget": 6, "winogender": 2}
    done = {n: read_done(graph, n) for n in graph.nodes}
    assert all(done.values()), [n for n, d in done.items() if not d]
    for n, node in graph.nodes.items():
        for p in node.parents:
            assert done[n]["started_at"] >= done[p]["finished_at"], (n, p)
    # the built source and the [en][en] model that copies its architecture are RoFormers; so is the moved one
    for m in ("S", "en-scratch", "S-to-en-frequency"):
        assert read_json(graph.node_dir(f"pretrain/{m}") / "model" / "config.json")["model_type"] == "roformer"
    # the probe read the features its parent wrote; Winogender scored the kept RTE model
    assert done["probe/en-scratch/layer1"]["result"]["layer"] == 1
    assert (graph.node_dir("finetune/S-to-en-frequency/rte/seed1") / "model" / "config.json").exists()
    w = done["winogender/S-to-en-frequency/seed1"]["metrics"]
    assert 0.0 <= w["gender_parity"] <= 1.0 and 0.0 <= w["accuracy"] <= 1.0
    assert set(done["forget/S/stsb-S/seed1"]["metrics"]) == {"spearman", "pearson"}

    client = MlflowClient(graph.sweep.tracking_uri)
    exp = client.get_experiment_by_name("xlt-evals")
    runs = [r for r in client.search_runs([exp.experiment_id], max_results=1000) if "xlt.node_id" in r.data.tags]
    assert sorted(r.data.tags["xlt.node_id"] for r in runs) == sorted(graph.nodes)
    assert all(r.info.status == "FINISHED" for r in runs)
    probe_run = next(r for r in runs if r.data.tags["xlt.node_id"] == "probe/S/layer0")
    assert {"final/uuas", "final/dspr"} <= set(probe_run.data.metrics)

    for shape in ("Table 3 shape", "Table 8 shape", "Table 9 shape", "Table 10 shape"):
        assert shape in out
    report = Path(graph.sweep.output_dir) / "report"
    # Figure 3 draws the sentiment runs that are not degenerate; this tiny sweep's 1-epoch sentiment fine-tunes
    # may all predict one class, and then they are listed as degenerate and there is nothing to draw
    sentiment = [n for n in graph.nodes if n.startswith("forget/") and "/scandisent-" in n]
    flagged = [n for n in sentiment if done[n]["result"]["flags"]]
    text = (report / "report.md").read_text()
    assert all(f"{n}: run: one_class" in text for n in flagged)
    assert (report / "figure3_scandisent.png").exists() == (len(flagged) < len(sentiment))
    assert (report / "table3_probing.csv").read_text().startswith("Lang,Vocab,UUAS,DSpr")
