"""Sweep config validation, the trial graph, and dependency gating as plain objects (no Ray started)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from orchestrator.config import DEFAULT_CONFIG, REPO_ROOT, ConfigError, load_sweep
from orchestrator.gating import Gate
from orchestrator.graph import build_graph
from orchestrator.runner import failure_message

PAPER = REPO_ROOT / "configs" / "paper.yaml"


def write_cfg(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    mutate(raw)
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


# The demo without its evaluation suite (tests/test_evaluation_graph.py covers those nodes).
CORE = ["probe=null", "wic=null", "forgetting=null", "winogender=null", "learning_curve=null",
        "experiments.scratch_budget=same"]
PAPER_MODES = CORE + ["experiments.vocab_modes=[frequency,random-map,keep]"]   # the demo without its extra inits


def n_focus_parents(g) -> set:
    return set(g.nodes["pretrain/S-to-en-focus"].parents)


def test_demo_graph_shape_and_dependencies(tmp_path):
    g = build_graph(load_sweep(DEFAULT_CONFIG, CORE, base_dir=tmp_path))
    kinds = g.by_kind()
    assert {k: len(v) for k, v in kinds.items()} == {"tokenizer": 2, "tokenize": 2, "vectors": 1, "pretrain": 9,
                                                     "finetune": 9 * 3 * 3}
    assert n_focus_parents(g) == {"pretrain/S", "tokenizer/en-1000-cased", "tokenize/E/en-1000-cased",
                                  "vectors/E/en-1000-cased"}
    n = g.nodes
    # every pretraining node that reads a corpus through a tokenizer known before it starts waits for a CPU
    # node to write that token cache (one per corpus and tokenizer, shared)
    assert n["tokenize/E/en-1000-cased"].parents == ("tokenizer/en-1000-cased",)
    assert n["tokenize/E/en-1000-cased"].resources == {"cpu": 1, "gpu": 0}
    assert n["pretrain/S"].parents == ("tokenizer/S-1000-cased", "tokenize/S/S-1000-cased")
    # rank: counts (the default): the built source's rows are ranked by its counts on its own build corpus,
    # the node its pretraining already reads
    assert set(n["pretrain/S-to-en-frequency"].parents) == {"pretrain/S", "tokenizer/en-1000-cased",
                                                            "tokenize/E/en-1000-cased", "tokenize/S/S-1000-cased"}
    assert n["pretrain/S-to-en-keep"].parents == ("pretrain/S",)  # keep needs no English vocabulary
    # architecture from config, no wait for the source
    assert n["pretrain/en-scratch"].parents == ("tokenizer/en-1000-cased", "tokenize/E/en-1000-cased")
    assert n["finetune/S/cola/seed1"].parents == ("pretrain/S",)  # direct fine-tuning of the source
    assert n["finetune/S-to-en-random-map/rte/seed2"].parents == ("pretrain/S-to-en-random-map",)
    assert n["finetune/S-to-en-keep/sst2/seed1"].row == ("S→en", "S")
    # plan order: every node after its parents
    pos = {nid: i for i, nid in enumerate(n)}
    assert all(pos[p] < pos[nid] for nid, node in n.items() for p in node.parents)
    # paths are absolute (Ray trials run in other directories)
    assert Path(g.sweep.output_dir).is_absolute() and g.sweep.tracking_uri.startswith("sqlite:////")


def test_paper_graph_matches_the_study(tmp_path):
    g = build_graph(load_sweep(PAPER, base_dir=tmp_path))
    kinds = g.by_kind()
    # English vocabularies: cased (sv, nl, fi) and uncased (AraBERTs); [en][en] uses the cased one.
    assert sorted(n.id for n in kinds["tokenizer"]) == ["tokenizer/en-32000-cased", "tokenizer/en-32000-uncased"]
    # 5 sources x 8 vocab modes (the paper's two, random-map, five published inits) and [en][en]; the learning
    # curves cut the paper's own rows (5 sources x frequency and keep, and [en][en]) at 10%, 25% and 50%
    assert len({n.model for n in kinds["pretrain"]}) == 5 * 8 + 1
    assert len(kinds["pretrain"]) == 5 * 8 + 1 + 11 * 3
    assert len(kinds["curve"]) == 11 * 3 * 2 * 5           # x SST-2 and CoLA x 5 seeds
    assert g.nodes["pretrain/sv-to-en-frequency"].parents == ("pretrain/sv-to-en-frequency@50pct",)
    models = {n.model for n in kinds["finetune"]}
    assert len(models) == 40 + 1 + 6 and len(kinds["finetune"]) == 47 * 8 * 5
    assert g.nodes["pretrain/ar1-to-en-frequency@10pct"].parents == ("tokenizer/en-32000-uncased",
                                                               "tokenize/wiki_en/en-32000-uncased",
                                                               "tokenize/wiki_ar/ar1-source")
    assert g.nodes["tokenize/wiki_en/en-32000-uncased"].resources == {"cpu": 8, "gpu": 0}
    assert g.nodes["finetune/bert-base/mnli/seed3"].parents == ()  # hub model: ready at once
    assert g.nodes["pretrain/sv-to-en-keep"].params["transfer"]["keep_vocab_size"] == 32000
    assert g.nodes["pretrain/nl-to-en-keep"].params["transfer"]["keep_vocab_size"] is None
    # the node holds its resolved stage config: the worker runs it as it is
    ar = g.nodes["pretrain/ar1-to-en-frequency"].params["transfer"]
    assert ar["target_counts"] == str(g.node_dir("tokenize/wiki_en/en-32000-uncased") / "token_counts.npy")
    assert ar["target_tokenizer"] == str(g.node_dir("tokenizer/en-32000-uncased") / "tokenizer")
    assert g.nodes["pretrain/sv-to-en-frequency"].resources == {"cpu": 8, "gpu": 1}
    assert g.nodes["finetune/sv/cola/seed1"].resources == {"cpu": 2, "gpu": 0.25}
    # the evaluation suite: 13 probed layers and 5 WiC / Winogender seeds per model; forgetting for sv and fi
    assert len(kinds["features"]) == 47 and len(kinds["probe"]) == 47 * 13
    assert len(kinds["wic"]) == 47 * 5 and len(kinds["winogender"]) == 47 * 5
    # sv: [sv] and its 8 transfers on scandisent-sv, stsb-sv, scandisent-en; fi: 9 models on 2 tasks; 5 seeds
    # ... and with the source's embeddings re-attached to each of the 8 [lang->en] bodies, on its own tasks only
    assert len(kinds["forget"]) == (9 * 3 + 9 * 2) * 5 + (8 * 2 + 8 * 1) * 5
    assert len(kinds["reattach"]) == 16
    assert g.nodes["forget/sv/stsb-sv/seed1"].params["config"]["hub_dataset"] == "timpal0l/stsb_mt_sv"
    assert g.nodes["forget/fi-to-en-frequency/scandisent-fi/seed5"].params["config"]["learning_rate"] == 4e-5


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["pretrain"].update(max_stepz=3), "unknown key pretrain.max_stepz"),
    (lambda r: r.update(colour="red"), "unknown key colour"),
    (lambda r: r["finetune"].update(seeds="1,2"), "finetune.seeds: Input should be a valid list, got '1,2'"),
    (lambda r: r["finetune"].update(seeds=[]), "finetune.seeds: List should have at least 1 item"),
    (lambda r: r["finetune"].update(seeds=[1, 2, 1]), "finetune.seeds: seed(s) 1 listed twice"),
    (lambda r: r["wic"].update(seeds=[3, 3]), "wic.seeds: seed(s) 3 listed twice"),
    (lambda r: r["forgetting"].update(seeds=[2, 2]), "forgetting.seeds: seed(s) 2 listed twice"),
    (lambda r: r["target"].update(vocab_size=0), "target.vocab_size: Input should be greater than or equal to 100"),
    (lambda r: r["target"].update(vocab_size=-5), "target.vocab_size: Input should be greater than or equal to"),
    (lambda r: r["pretrain"].update(max_steps="many"), "pretrain.max_steps"),
    (lambda r: r["pretrain"].update(learning_rate="fast"), "pretrain.learning_rate: Input should be a valid number"),
    (lambda r: r["pretrain"].update(learning_rate=0), "pretrain.learning_rate: Input should be greater than 0"),
    (lambda r: r["pretrain"].update(batch_size=48), "pretrain: batch_size 48 is not a multiple of per_device"),
    (lambda r: r["finetune"].update(save_model=1), "finetune.save_model: Input should be a valid boolean, got 1"),
    (lambda r: r["finetune"].update(mixed_precision="fp32"), "finetune.mixed_precision: Input should be 'auto'"),
    (lambda r: r["finetune"].update(tasks=["cola", "sts"]), "unknown task 'sts'"),
    (lambda r: r["finetune"].update(tasks=["wnli"]), "WNLI is excluded"),
    (lambda r: r["experiments"].update(vocab_modes=["frequency", "alphabetical"]),
     "experiments.vocab_modes.1: Input should be 'keep', 'frequency', 'random-map', 'overlap', 'fvt', "
     "'random-normal', 'focus' or 'wechsel', got 'alphabetical'"),
    (lambda r: r["experiments"].update(direct=["SV"]), "experiments.direct: unknown source 'SV'"),
    (lambda r: r["target"].update(corpus="wiki"), "target.corpus: unknown corpus 'wiki'"),
    (lambda r: r["target"].update(limit_alphabet=0), "target.limit_alphabet: Input should be greater than or equal to 1"),
    (lambda r: r["target"].update(trainer="sentencepiece"),
     "target.trainer: Input should be 'exact' or 'tokenizers', got 'sentencepiece'"),
    (lambda r: r["corpora"]["E"].update(hub_dataset="wikimedia/wikipedia"), "corpora.E: give either files"),
    (lambda r: r["corpora"]["E"].update(filez=[]),
     "unknown key corpora.E.filez; valid keys here: files, hub_config, hub_dataset, hub_split, max_documents"),
    (lambda r: r.update(tracking_uri="./mlruns"), "MLflow 3 refuses"),
    (lambda r: r["sources"]["S"].update(model="KB/bert-base-swedish-cased"), "sources.S: give either model"),
    (lambda r: r["resources"]["finetune"].update(gpu=1.5), "resources.finetune: gpu 1.5: use a fraction"),
    (lambda r: r["resources"].update(gpus={"cpu": 1}), "unknown key resources.gpus; valid keys here: curve, "
     "features, finetune, forget, pretrain, probe, reattach, tokenize, tokenizer, vectors, wic, winogender"),
    (lambda r: r["sources"]["S"]["build"]["architecture"].update(model_type="gpt2"),
     "sources.S.build.architecture.model_type: Input should be 'bert' or 'roformer', got 'gpt2'"),
    (lambda r: r["sources"]["S"]["build"]["architecture"].update(hidden=3),
     "unknown key sources.S.build.architecture.hidden; valid keys here: hidden_size, intermediate_size"),
])
def test_bad_config_errors_name_the_key(tmp_path, mutate, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_sweep(write_cfg(tmp_path, mutate), base_dir=tmp_path)


def test_overrides_are_validated_like_yaml(tmp_path):
    s = load_sweep(DEFAULT_CONFIG, ["finetune.seeds=[7]", "pretrain.max_steps=5", "name=x"], base_dir=tmp_path)
    assert s.finetune.seeds == [7] and s.pretrain.max_steps == 5 and s.output_dir == str(tmp_path / "runs" / "demo")
    with pytest.raises(ConfigError, match="unknown key pretrain.lr; valid keys here: batch_size, block_size"):
        load_sweep(DEFAULT_CONFIG, ["pretrain.lr=1"], base_dir=tmp_path)
    with pytest.raises(ConfigError, match="key=value"):
        load_sweep(DEFAULT_CONFIG, ["pretrain.max_steps"], base_dir=tmp_path)


def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npretrain:\n  max_steps: 3\n   batch_size: 8\n")
    with pytest.raises(ConfigError) as e:
        load_sweep(bad, base_dir=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{bad}:4:") and "YAML syntax error" in msg


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "nope.yaml")


def _drain(gate: Gate) -> list[str]:
    out = []
    while (nid := gate.next_ready()) is not None:
        out.append(nid)
    return out


def test_gate_releases_children_only_after_parents(tmp_path):
    g = build_graph(load_sweep(DEFAULT_CONFIG, PAPER_MODES, base_dir=tmp_path))
    gate = Gate(g, done=set())
    first = _drain(gate)
    assert sorted(first) == ["tokenizer/S-1000-cased", "tokenizer/en-1000-cased"]
    gate.complete("tokenizer/en-1000-cased", ok=True)
    assert _drain(gate) == ["tokenize/E/en-1000-cased"]  # the token cache before any pretraining that reads it
    gate.complete("tokenize/E/en-1000-cased", ok=True)
    assert _drain(gate) == ["pretrain/en-scratch"]  # the only one waiting on the English side alone
    gate.complete("tokenizer/S-1000-cased", ok=True)
    assert _drain(gate) == ["tokenize/S/S-1000-cased"]
    gate.complete("tokenize/S/S-1000-cased", ok=True)
    assert _drain(gate) == ["pretrain/S"]
    gate.complete("pretrain/S", ok=True)
    released = _drain(gate)
    # pretraining nodes are handed out before the fine-tunes that became ready at the same time
    assert released[:3] == ["pretrain/S-to-en-frequency", "pretrain/S-to-en-random-map", "pretrain/S-to-en-keep"]
    assert sorted(released[3:]) == sorted(n for n in g.nodes if n.startswith("finetune/S/"))
    assert not gate.finished()


def test_gate_fails_descendants_and_skips_done(tmp_path):
    g = build_graph(load_sweep(DEFAULT_CONFIG, PAPER_MODES, base_dir=tmp_path))
    done = {"tokenizer/S-1000-cased", "tokenizer/en-1000-cased", "tokenize/S/S-1000-cased", "tokenize/E/en-1000-cased",
            "pretrain/en-scratch"}
    gate = Gate(g, done=done)
    scratch_ft = [n for n in g.nodes if n.startswith("finetune/en-scratch/")]
    assert _drain(gate) == ["pretrain/S", *scratch_ft]  # done nodes are not handed out again
    blocked = gate.complete("pretrain/S", ok=False, error="boom")
    assert len(blocked) == 3 + 3 * 3 * 3 + 3 * 3  # 3 transfers, their fine-tunes, the direct fine-tunes
    assert all(reason == "not run: its parent pretrain/S failed" for reason in blocked.values())
    assert gate.pending == [] and gate.in_flight == set(scratch_ft)
    assert not gate.finished()
    for n in scratch_ft:
        gate.complete(n, ok=True)
    assert gate.finished() and set(gate.failed) == {"pretrain/S", *blocked}


def test_searcher_as_plain_object(tmp_path):
    from ray.tune.search import Searcher

    from orchestrator.sweep import GatedSearcher

    g = build_graph(load_sweep(DEFAULT_CONFIG, ["finetune.tasks=[cola]", "finetune.seeds=[1]",
                                                "experiments.vocab_modes=[keep]", "experiments.scratch=false", *CORE],
                               base_dir=tmp_path))
    searcher = GatedSearcher(Gate(g, set()), g, tracker=None, sweep_run_id=None, has_gpu=False, log=lambda *_: None)
    a = searcher.suggest("t1")
    assert a["node_id"] == "tokenizer/S-1000-cased" and a["resources"] == {"cpu": 1.0, "gpu": 0}
    assert searcher.suggest("t2") is None  # everything else waits on the tokenizer
    (g.node_dir(a["node_id"])).mkdir(parents=True)
    (g.node_dir(a["node_id"]) / "settings.json").write_text('{"hash": "%s"}' % g.nodes[a["node_id"]].hash)
    (g.node_dir(a["node_id"]) / "DONE").write_text("{}")
    searcher.on_trial_complete("t1", result={"done": 1})
    b = searcher.suggest("t3")
    assert b["node_id"] == "tokenize/S/S-1000-cased"
    searcher.on_trial_complete("t3", error=True)  # no DONE marker: failed; its children are failed with it
    assert failure_message(g.node_dir("pretrain/S-to-en-keep")).startswith(
        "not run: its parent tokenize/S/S-1000-cased")
    assert searcher.suggest("t4") == Searcher.FINISHED


def test_logging_and_checkpoint_cadence_is_not_part_of_the_hash(tmp_path):
    """Fields marked hashed=False in the stage schema (log/eval/checkpoint cadence) may change mid-run: the
    node resumes instead of being deleted; a field that changes results starts it over."""
    base = build_graph(load_sweep(DEFAULT_CONFIG, base_dir=tmp_path))
    cadence = build_graph(load_sweep(DEFAULT_CONFIG, ["pretrain.log_every=7", "pretrain.checkpoint_every=9",
                                                      "pretrain.eval_every=11", "finetune.log_every=3"],
                                     base_dir=tmp_path))
    assert all(base.nodes[n].hash == cadence.nodes[n].hash for n in base.nodes)
    # ... but the node still runs with the new cadence (it is in the config the worker gets)
    assert cadence.nodes["pretrain/en-scratch"].params["config"]["log_every"] == 7
    result = build_graph(load_sweep(DEFAULT_CONFIG, ["pretrain.max_eval_blocks=8"], base_dir=tmp_path))
    assert base.nodes["pretrain/en-scratch"].hash != result.nodes["pretrain/en-scratch"].hash


def test_graph_refuses_one_id_for_two_different_nodes(tmp_path):
    import dataclasses

    g = build_graph(load_sweep(DEFAULT_CONFIG, CORE, base_dir=tmp_path))
    node = g.nodes["finetune/S/cola/seed1"]
    assert g.add(dataclasses.replace(node, hash="")) is node      # the same work again: the existing node
    other = dataclasses.replace(node, params={**node.params, "config": {**node.params["config"], "seed": 9}})
    with pytest.raises(ConfigError, match="two different nodes of this sweep would write to finetune/S/cola/seed1"):
        g.add(other)


def test_changed_settings_invalidate_the_node_and_its_descendants(tmp_path):
    base = build_graph(load_sweep(DEFAULT_CONFIG, base_dir=tmp_path))
    ft = build_graph(load_sweep(DEFAULT_CONFIG, ["finetune.learning_rate=7e-4"], base_dir=tmp_path))
    changed = {n for n in base.nodes if base.nodes[n].hash != ft.nodes[n].hash}
    # the GLUE fine-tunes and what reads their models (Winogender); not the forgetting fine-tunes or probes
    assert changed == {n for n in base.nodes if n.startswith(("finetune/", "curve/", "winogender/"))}
    pre = build_graph(load_sweep(DEFAULT_CONFIG, ["pretrain.learning_rate=1e-3"], base_dir=tmp_path))
    changed = {n for n in base.nodes if base.nodes[n].hash != pre.nodes[n].hash}
    # continued pretraining and everything below it; not the tokenizers, not the source built with its own settings
    assert "pretrain/S" not in changed and not any(n.startswith("tokenizer/") for n in changed)
    assert "finetune/S/cola/seed1" not in changed
    assert {"pretrain/S-to-en-frequency", "pretrain/en-scratch", "finetune/S-to-en-keep/rte/seed2"} <= changed
    src = build_graph(load_sweep(DEFAULT_CONFIG, ["sources.S.build.pretrain.max_steps=10"], base_dir=tmp_path))
    changed = {n for n in base.nodes if base.nodes[n].hash != src.nodes[n].hash}
    assert "pretrain/en-scratch" not in changed and "finetune/S/sst2/seed2" in changed
    assert all(n.hash for n in base.nodes.values())


def test_stale_folder_is_not_done(tmp_path):
    from orchestrator.runner import node_state

    g = build_graph(load_sweep(DEFAULT_CONFIG, base_dir=tmp_path))
    nid = "finetune/S/cola/seed1"
    g.node_dir(nid).mkdir(parents=True)
    (g.node_dir(nid) / "DONE").write_text("{}")
    (g.node_dir(nid) / "settings.json").write_text('{"hash": "0ld"}')
    assert node_state(g, nid) == "stale"
    (g.node_dir(nid) / "settings.json").write_text('{"hash": "%s"}' % g.nodes[nid].hash)
    assert node_state(g, nid) == "done"


def test_ray_submit_entry_runs_xlt_from_the_project_venv(tmp_path):
    """`ray submit` runs the copied script from the home folder with the system python: the script must
    move into XLT_HOME and hand over to that venv's `xlt` with the arguments unchanged."""
    import os
    import shutil
    import subprocess
    import sys

    home = tmp_path / "xlt"
    (home / ".venv" / "bin").mkdir(parents=True)
    fake = home / ".venv" / "bin" / "xlt"
    fake.write_text('#!/bin/sh\necho "cwd=$(pwd) args=$*"\n')
    fake.chmod(0o755)
    script = tmp_path / "ray_submit.py"       # copied alone, as `ray submit` does
    shutil.copy(REPO_ROOT / "orchestrator" / "ray_submit.py", script)
    env = dict(os.environ, XLT_HOME=str(home))
    out = subprocess.run([sys.executable, str(script), "run", "configs/paper.yaml", "name=x y"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"cwd={home} args=run configs/paper.yaml name=x y"
    missing = subprocess.run([sys.executable, str(script), "run"], cwd=tmp_path, capture_output=True, text=True,
                             check=False, env=dict(env, XLT_HOME=str(tmp_path / "nowhere")))
    assert missing.returncode == 1 and "Set XLT_HOME to the project folder" in missing.stderr


def test_missing_local_inputs_are_all_named_before_anything_runs(tmp_path):
    from orchestrator.config import check_local_data

    glue = tmp_path / "glue"
    for folder, files in (("CoLA", ["train.tsv", "dev.tsv"]), ("SST-2", ["train.tsv"])):   # no RTE at all
        (glue / folder).mkdir(parents=True)
        for f in files:
            (glue / folder / f).write_text("x\n")
    (tmp_path / "E.txt").write_text("some text\n")
    (tmp_path / "S.txt").write_text("")

    def mutate(r):
        r["corpora"] = {"E": {"files": [str(tmp_path / "E.txt")]}, "S": {"files": [str(tmp_path / "S.txt")]}}
        r["finetune"]["data_dir"] = str(glue)
        r["probe"]["test"] = str(tmp_path / "test.conllu")
        for key in ("synthetic", "wic", "forgetting", "winogender"):
            r[key] = None
        r["probe"]["train"] = r["probe"]["dev"] = str(tmp_path / "E.txt")
    sweep = load_sweep(write_cfg(tmp_path, mutate), base_dir=tmp_path)
    with pytest.raises(ConfigError) as e:
        check_local_data(sweep)
    msg = str(e.value)
    assert msg.startswith("5 local input(s) missing, nothing was run")
    for part in (f"corpora.S.files: {tmp_path / 'S.txt'} is empty", f"no file {glue / 'SST-2' / 'dev.tsv'}",
                 f"no file {glue / 'RTE' / 'train.tsv'}", f"no file {glue / 'RTE' / 'dev.tsv'}",
                 f"probe.test: no file {tmp_path / 'test.conllu'}"):
        assert part in msg
    (tmp_path / "S.txt").write_text("text\n")
    (tmp_path / "test.conllu").write_text("x\n")
    (glue / "RTE").mkdir()
    for f in (glue / "SST-2" / "dev.tsv", glue / "RTE" / "train.tsv", glue / "RTE" / "dev.tsv"):
        f.write_text("x\n")
    check_local_data(sweep)   # everything there now


def test_started_nodes_are_running_only_while_their_process_lives(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from orchestrator.runner import node_state

    g = build_graph(load_sweep(DEFAULT_CONFIG, CORE, base_dir=tmp_path))
    nid = "pretrain/S"
    d = g.node_dir(nid)
    d.mkdir(parents=True)
    (d / "settings.json").write_text(json.dumps({"hash": g.nodes[nid].hash}))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = os.uname().nodename
    for host, pid, state in ((here, os.getpid(), "running"), (here, dead.pid, "interrupted"),
                             ("another-machine", os.getpid(), "started")):
        (d / "STARTED").write_text(json.dumps({"time": 0, "host": host, "pid": pid}))
        assert node_state(g, nid) == state, (host, pid)
    # a reboot since: the recorded pid may now belong to anything (here: this very process)
    (d / "STARTED").write_text(json.dumps({"time": 0, "host": here, "pid": os.getpid(), "boot": "an-earlier-boot"}))
    assert node_state(g, nid) == "interrupted"
    (d / "STARTED").write_text("{not json")
    assert node_state(g, nid) == "interrupted"
    (d / "DONE").write_text("{}")
    assert node_state(g, nid) == "done"


def test_tokenizer_trials_turn_the_thread_pool_on_for_either_learner(tmp_path, monkeypatch):
    """The sweep sets TOKENIZERS_PARALLELISM=false for every trial; either learner would then count on one core."""
    import os

    import stages.tokenizer
    from orchestrator import runner

    seen = {}

    def fake_train(cfg):
        seen[cfg.trainer] = (os.environ.get("TOKENIZERS_PARALLELISM"), os.environ.get("RAYON_NUM_THREADS"))
        return stages.tokenizer.TokenizerResult(cfg.output_dir, 1000, False, 1, 0.0, 0.0)

    monkeypatch.setattr(stages.tokenizer, "train_tokenizer", fake_train)
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.delenv("RAYON_NUM_THREADS", raising=False)
    for trainer in ("tokenizers", "exact"):
        g = build_graph(load_sweep(DEFAULT_CONFIG, [*CORE, f"target.trainer={trainer}"], base_dir=tmp_path))
        node = g.nodes["tokenizer/en-1000-cased"]
        runner._tokenizer(runner.Trial(node, tmp_path / trainer, tmp_path, lambda *_: None, threads=3))
    assert seen == {"tokenizers": ("true", "3"), "exact": ("true", "3")}   # exact counts words in 3 processes
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false" and "RAYON_NUM_THREADS" not in os.environ   # restored


def test_source_corpus_is_counted_in_a_tokenize_node_the_transfer_reads(tmp_path):
    """`source_corpus` ranks the source rows by counts on that corpus: a CPU tokenize node with the source's
    own tokenizer writes them, and the frequency-mapped nodes wait for it and read its token_counts.npy."""
    g = build_graph(load_sweep(DEFAULT_CONFIG, [*CORE, "sources.S.source_corpus=S"], base_dir=tmp_path))
    counted = "tokenize/S/S-1000-cased"    # the built source's tokenizer on S: the node its pretraining reads too
    for mode in ("frequency", "random-map"):
        node = g.nodes[f"pretrain/S-to-en-{mode}"]
        assert counted in node.parents
        assert node.params["transfer"]["source_counts"] == str(tmp_path / "runs/demo" / counted / "token_counts.npy")
    assert g.nodes["pretrain/S-to-en-keep"].params["transfer"]["source_counts"] is None   # keep ranks nothing
    # without source_corpus a built source is counted on its build corpus: here the same corpus, the same node
    default = build_graph(load_sweep(DEFAULT_CONFIG, CORE, base_dir=tmp_path))
    assert default.nodes["pretrain/S-to-en-frequency"].params == g.nodes["pretrain/S-to-en-frequency"].params
    plain = build_graph(load_sweep(DEFAULT_CONFIG, [*CORE, "sources.S.rank=vocab-order"], base_dir=tmp_path))
    assert plain.nodes["pretrain/S-to-en-frequency"].params["transfer"]["source_counts"] is None
    assert plain.nodes["pretrain/S-to-en-frequency"].params["transfer"]["rank"] == "vocab-order"
    assert counted not in plain.nodes["pretrain/S-to-en-frequency"].parents
    # a hub / local source gets a tokenize node of its own, with its model folder as the tokenizer
    (tmp_path / "src").mkdir()
    hub = build_graph(load_sweep(DEFAULT_CONFIG, [*CORE, "sources.S.build=null", f"sources.S.model={tmp_path / 'src'}",
                                                  "sources.S.source_corpus=S", "experiments.scratch=false"],
                                 base_dir=tmp_path))
    own = hub.nodes["tokenize/S/S-source"]
    assert own.params["config"]["tokenizer"] == str(tmp_path / "src") and own.parents == ()
    assert "tokenize/S/S-source" in hub.nodes["pretrain/S-to-en-frequency"].parents
    # a hub / local source has no corpus of its own to be counted on: rank counts needs one, said at load time
    hub_only = [*CORE, "sources.S.build=null", f"sources.S.model={tmp_path / 'src'}", "experiments.scratch=false"]
    with pytest.raises(ConfigError, match="sources.S.rank: counts .* set sources.S.source_corpus to one .* "
                                          "or set sources.S.rank: vocab-order"):
        load_sweep(DEFAULT_CONFIG, hub_only, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="sources.S.source_corpus is only read with rank: counts"):
        load_sweep(DEFAULT_CONFIG, [*hub_only, "sources.S.source_corpus=S", "sources.S.rank=hybrid"], base_dir=tmp_path)


def test_fields_added_later_enter_the_hash_only_off_their_default(tmp_path):
    """stop_at_fraction, resume_from and extra_tokens came after sweeps had run: at their defaults they are left
    out of the identity (those sweeps' pretraining nodes stay done); set, they are in it."""
    from stages.common import result_fields

    g = build_graph(load_sweep(DEFAULT_CONFIG, [*CORE], base_dir=tmp_path))
    cfg = g.nodes["pretrain/S-to-en-random-map"].params["config"]
    from stages.pretrain import PretrainConfig

    plain = result_fields(PretrainConfig.model_validate(cfg))
    assert not {"stop_at_fraction", "resume_from", "extra_tokens"} & set(plain)
    assert result_fields(PretrainConfig.model_validate({**cfg, "extra_tokens": 5}))["extra_tokens"] == 5
    assert result_fields(PretrainConfig.model_validate({**cfg, "stop_at_fraction": 0.5}))["stop_at_fraction"] == 0.5
