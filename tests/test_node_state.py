"""A node's state is one record that carries its own hash, so no path can pair a result with settings it was
not produced under. Each test provokes one way state could lie, on a tiny sweep run node by node in this
process (the runner without Ray): a failure under other settings, a torn DONE, a parent's output deleted, a
parent this machine cannot see (an output_dir that is not shared), and checkpoints left behind."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from orchestrator.config import load_sweep
from orchestrator.graph import build_graph
from orchestrator.runner import (DONE, STARTED, done_problem, failure_message, mark_failed, node_state, read_done,
                                 run_node)
from stages.common import StageError
from tests.conftest import write_corpus
from tests.test_sweep_ray import WORDS_S, tiny_glue

FT = "finetune/S-to-en-frequency/sst2/seed1"
MOVED = "pretrain/S-to-en-frequency"


def _sweep(tmp: Path, **extra) -> Path:
    """S built from scratch, moved to E by frequency, fine-tuned on one task: 7 nodes, seconds each."""
    small = {"batch_size": 8, "per_device_batch_size": 8, "block_size": 32, "max_steps": 4, "learning_rate": 1e-3,
             "log_every": 2, "eval_every": 2, "checkpoint_every": 2}
    write_corpus(tmp / "e.txt", 300, seed=3)
    write_corpus(tmp / "s.txt", 300, seed=4, words=WORDS_S)
    tiny_glue(tmp / "glue")
    cfg = {
        "name": "state", "output_dir": str(tmp / "runs"), "tracking_uri": f"sqlite:///{tmp}/mlruns/mlflow.db",
        "corpora": {"E": {"files": [str(tmp / "e.txt")]}, "S": {"files": [str(tmp / "s.txt")]}},
        "sources": {"S": {"build": {"corpus": "S", "vocab_size": 120, "pretrain": small, "architecture": {
            "hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32,
            "max_position_embeddings": 64}}}},
        "target": {"corpus": "E", "vocab_size": 100, "min_frequency": 1},
        "experiments": {"transfer_from": ["S"], "vocab_modes": ["frequency"], "scratch": False},
        "pretrain": small,
        "finetune": {"tasks": ["sst2"], "seeds": [1], "data_dir": str(tmp / "glue"), "epochs": 1, "batch_size": 8,
                     "max_length": 32, "learning_rate": 1e-3, "log_every": 4},
        **extra,
    }
    p = tmp / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _run_all(graph, log=None) -> list[str]:
    """Run every node that is not done, parents first (as the sweep would, one at a time); the ids run."""
    ran = []
    for nid, node in graph.nodes.items():
        if node_state(graph, nid) != "done":
            run_node(node, graph.sweep.output_dir, log=log or (lambda *_: None))
            ran.append(nid)
    return ran


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished sweep, copied afresh into each test (running it takes ~20 s)."""
    tmp = tmp_path_factory.mktemp("finished")
    cfg = _sweep(tmp)
    graph = build_graph(load_sweep(cfg))
    assert len(_run_all(graph)) == len(graph.nodes) == 7
    return tmp


def _copy(finished: Path, tmp_path: Path):
    """The finished sweep under tmp_path (its YAML names absolute paths: rewritten to the copy)."""
    shutil.copytree(finished, tmp_path / "s")
    cfg = tmp_path / "s" / "sweep.yaml"
    cfg.write_text(cfg.read_text().replace(str(finished), str(tmp_path / "s")))
    return cfg


def _dones(graph) -> dict[str, bytes]:
    return {n: (graph.node_dir(n) / DONE).read_bytes() for n in graph.nodes}


def test_done_records_its_hash_parents_and_outputs_and_drops_checkpoints(finished, tmp_path):
    graph = build_graph(load_sweep(_copy(finished, tmp_path)))
    assert all(node_state(graph, n) == "done" for n in graph.nodes)
    record = read_done(graph, MOVED)
    assert record["hash"] == graph.nodes[MOVED].hash
    parents = graph.nodes[MOVED].parents
    assert set(record["parents"]) == set(parents)
    assert all(record["parents"][p] == read_done(graph, p)["done_id"] for p in parents)
    assert f"{MOVED}/model/model.safetensors" in record["outputs"]
    assert f"{MOVED}/model/README.md" in record["outputs"]            # the model card, written before DONE
    assert not (graph.node_dir(MOVED) / "checkpoint").exists()      # deleted once model/ and DONE exist
    assert not (graph.node_dir(MOVED) / "checkpoint.prev").exists()


def test_done_records_what_the_node_cost(finished, tmp_path):
    """compute: wall time and device-seconds of what the trial held, tokens / examples seen, FLOPs per token
    of the trained shape by hand (1 layer, H 16, F 32: N = 4*16*16 + 4*16 + 2*16*32 + 32 + 16 + 4*16 = 2,224;
    6N + 12*L*H*S at S 32 = 13,344 + 6,144), and no MFU off a GPU."""
    graph = build_graph(load_sweep(_copy(finished, tmp_path)))
    pre, ft = read_done(graph, MOVED), read_done(graph, FT)
    for record in (pre, ft):
        c = record["compute"]
        assert c["wall_s"] == record["seconds"] and c["cpus"] == 1.0 and c["gpu_share"] == 0.0
        assert c["cpu_seconds"] == c["wall_s"] and c["gpu_seconds"] == 0.0 and c["device"] == "cpu"
        assert c["flops_per_token"] == 19_488 and "mfu" not in c
    assert pre["compute"]["tokens_seen"] == 4 * 8 * 32                    # max_steps x batch x block
    assert pre["compute"]["train_tokens_per_s"] == pre["result"]["tokens_per_s"]
    assert ft["compute"]["examples_seen"] == ft["result"]["train_examples"] * 1 > 0     # one epoch
    tok = next(n for n in graph.nodes if n.startswith("tokenizer/"))
    assert "tokens_seen" not in read_done(graph, tok)["compute"]


def test_a_learning_curve_runs_in_segments_that_end_on_the_same_model(finished, tmp_path):
    """The same sweep with a cut at 25% (step 1 of 4): the segment exports its model and keeps its checkpoint,
    the curve fine-tune runs from it, the final node resumes from it and ends on the weights of the run without
    cuts; the segments' compute records split the budget's tokens between them."""
    from safetensors.torch import load_file

    cfg = _sweep(tmp_path, learning_curve={"fractions": [0.25], "tasks": ["sst2"], "models": ["S-to-en-frequency"]})
    graph = build_graph(load_sweep(cfg))
    ran = _run_all(graph)
    seg, curve = f"{MOVED}@25pct", "curve/S-to-en-frequency@25pct/sst2/seed1"
    assert ran.index(seg) < ran.index(curve) and ran.index(seg) < ran.index(MOVED)
    assert (graph.node_dir(seg) / "checkpoint").is_dir() and not (graph.node_dir(MOVED) / "checkpoint").exists()
    assert read_done(graph, seg)["result"]["steps"] == 1 and read_done(graph, curve)["metrics"]
    plain = build_graph(load_sweep(_copy(finished, tmp_path)))
    want = load_file(str(plain.node_dir(MOVED) / "model" / "model.safetensors"))
    got = load_file(str(graph.node_dir(MOVED) / "model" / "model.safetensors"))
    assert want.keys() == got.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    tokens = [read_done(graph, n)["compute"]["tokens_seen"] for n in (seg, MOVED)]
    assert tokens == [1 * 8 * 32, 3 * 8 * 32]          # steps 0-1 and 1-4, batch 8 x block 32
    assert read_done(graph, MOVED)["result"]["tokens_seen"] == 4 * 8 * 32   # the model's whole budget


def test_keep_checkpoints_keeps_them(tmp_path):
    cfg = _sweep(tmp_path)
    graph = build_graph(load_sweep(cfg, ["keep_checkpoints=true"]))
    for nid, node in graph.nodes.items():
        if nid == "pretrain/S":
            break
        run_node(node, graph.sweep.output_dir, log=lambda *_: None)
    run_node(graph.nodes["pretrain/S"], graph.sweep.output_dir, log=lambda *_: None,
             keep_checkpoints=graph.sweep.keep_checkpoints)
    assert (graph.node_dir("pretrain/S") / "checkpoint" / "model.safetensors").exists()


def test_a_failure_under_other_settings_does_not_touch_finished_work(finished, tmp_path):
    """The case found by hand: a run with changed settings fails upstream, and its descendants, never run,
    are marked failed. Under the changed settings they are failed, not done; under the original ones every
    node is still done and no byte of its folder changed."""
    cfg = _copy(finished, tmp_path)
    a = build_graph(load_sweep(cfg))
    before = _dones(a)
    b = build_graph(load_sweep(cfg, ["pretrain.learning_rate=0.01"]))      # MOVED and FT get new hashes
    assert b.nodes[FT].hash != a.nodes[FT].hash
    mark_failed(b, MOVED, "RuntimeError: planted")
    mark_failed(b, FT, f"not run: its parent {MOVED} failed")               # as GatedSearcher does
    assert node_state(b, FT) == node_state(b, MOVED) == "failed"
    assert failure_message(b.node_dir(FT)) == f"not run: its parent {MOVED} failed"
    assert all(node_state(a, n) == "done" for n in a.nodes)
    assert _dones(a) == before
    assert _run_all(a) == []                                               # nothing re-runs, nothing is deleted


def test_a_torn_done_marker_reruns_the_node_and_says_so(finished, tmp_path):
    graph = build_graph(load_sweep(_copy(finished, tmp_path)))
    d = graph.node_dir(FT)
    text = (d / DONE).read_text()
    (d / DONE).write_text(text[: len(text) // 2])                          # a crash mid-write (not atomic)
    assert node_state(graph, FT) not in ("done", "failed")   # the attempt's STARTED decides (here: this pid)
    assert done_problem(graph, FT) == "its DONE marker is unreadable (a torn write)"
    lines = []
    assert _run_all(graph, lines.append) == [FT]
    assert any("DONE marker is unreadable" in ln for ln in lines)
    assert node_state(graph, FT) == "done" and json.loads((d / DONE).read_text())["hash"] == graph.nodes[FT].hash


def test_a_parent_output_deleted_after_done_reruns_it_and_its_children(finished, tmp_path):
    graph = build_graph(load_sweep(_copy(finished, tmp_path)))
    old_id = read_done(graph, MOVED)["done_id"]
    shutil.rmtree(graph.node_dir(MOVED) / "model")
    assert node_state(graph, MOVED) == "stale" and "model/" in done_problem(graph, MOVED)
    assert node_state(graph, FT) == "stale"
    assert done_problem(graph, FT) == f"its parent {MOVED} is no longer done"
    lines = []
    assert _run_all(graph, lines.append) == [MOVED, FT]
    assert any(f"{MOVED}: its output {MOVED}/model/" in ln and "starting this node over" in ln for ln in lines)
    assert read_done(graph, MOVED)["done_id"] != old_id
    assert read_done(graph, FT)["parents"][MOVED] == read_done(graph, MOVED)["done_id"]
    assert all(node_state(graph, n) == "done" for n in graph.nodes)


def test_a_parent_made_again_makes_its_done_children_stale(finished, tmp_path):
    """A parent re-run (same settings, new result) invalidates what was computed from the old result."""
    graph = build_graph(load_sweep(_copy(finished, tmp_path)))
    run_node(graph.nodes[MOVED], graph.sweep.output_dir, log=lambda *_: None)
    assert node_state(graph, MOVED) == "done"
    assert node_state(graph, FT) == "stale"
    assert done_problem(graph, FT) == f"its parent {MOVED} was made again since it read it"


def test_a_parent_this_machine_cannot_see_names_shared_storage(finished, tmp_path):
    """On a cluster whose output_dir is not shared, a child's machine has no parent folder: the child fails
    with a message about shared storage (and records it), not a missing-file traceback."""
    graph = build_graph(load_sweep(_copy(finished, tmp_path)))
    shutil.rmtree(graph.node_dir(MOVED))
    with pytest.raises(StageError, match="shared by every machine") as e:
        run_node(graph.nodes[FT], graph.sweep.output_dir, log=lambda *_: None)
    assert MOVED in str(e.value) and "output_dir" in str(e.value)
    assert "shared by every machine" in failure_message(graph.node_dir(FT))
    assert node_state(graph, FT) == "failed"


def test_started_carries_the_hash_of_its_attempt(finished, tmp_path):
    graph = build_graph(load_sweep(_copy(finished, tmp_path)))
    started = json.loads((graph.node_dir(FT) / STARTED).read_text())
    assert started["hash"] == graph.nodes[FT].hash


def test_every_exported_model_folder_has_a_model_card(finished, tmp_path):
    from huggingface_hub import ModelCard

    graph = build_graph(load_sweep(_copy(finished, tmp_path)))
    result = read_done(graph, MOVED)["result"]
    card = ModelCard.load(graph.node_dir(MOVED) / "model" / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "fill-mask"
    assert card.data.language == ["en"]
    assert "`frequency`" in card.text and f"{result['tokens_seen']:,}" in card.text and "`e.txt`" in card.text
    assert "pretrain/S/model" in card.text                    # the source, by its place in the sweep
    assert str(tmp_path) not in card.content and str(finished) not in card.content
    source = ModelCard.load(graph.node_dir("pretrain/S") / "model" / "README.md")
    assert source.data.language == ["S"] and "`build`" in source.text
