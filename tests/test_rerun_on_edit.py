"""A local data file edited after a run re-runs exactly the nodes that read it and their descendants.

The node hash covers each local input by its content (name within its folder, size and sha256:
`orchestrator.graph._file_stamps`, `stages.corpus._file_stamp`) and every path relative to the output folder
or to the config's base directory, never by location or modification time. So: a same-size edit and a
size-changing edit with the old mtime put back (as after `cp -p` or `rsync -t`) are both caught, a touch
without any edit re-runs nothing, and a project or output folder moved elsewhere keeps every node done.

The expected set is derived here, from node kinds and ids (which nodes read the file) and the parent links
(their descendants), never from the graph's hashes. Graph level only: nothing is trained.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from orchestrator.config import DEFAULT_CONFIG, check_local_data, load_sweep
from orchestrator.gating import Gate
from orchestrator.graph import build_graph
from orchestrator.runner import SETTINGS, done_nodes, node_state
from stages.common import write_json

DATA = "data/synthetic"            # the demo's data paths, made absolute against tmp_path
OLD_MTIME = 1_600_000_000          # every file starts with this mtime: an edit now is always a later second
MODELS = ["S-to-en-frequency", "S-to-en-random-map", "S-to-en-keep", "en-scratch", "S"]   # the full suite
GLUE_MODELS = MODELS + ["S-to-en-fvt", "S-to-en-overlap", "S-to-en-focus", "S-to-en-random-normal",
                        "en-scratch-match-S"]

# Every local input of the demo sweep, as a small file in its dataset's layout (contents are not read here).
FILES = {
    "corpus_E.txt": "the dog sees the cat .\na cat runs .\n",
    "corpus_S.txt": "ko ta mira senu .\nvol dak pir .\n",
    "glue/CoLA/train.tsv": "src\t1\t\tthe dog runs .\nsrc\t0\t*\tdog the runs .\n",
    "glue/CoLA/dev.tsv": "src\t1\t\ta cat runs .\n",
    "glue/SST-2/train.tsv": "sentence\tlabel\ngood dog\t1\nbad cat\t0\n",
    "glue/SST-2/dev.tsv": "sentence\tlabel\ngood cat\t1\n",
    "glue/RTE/train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tthe dog runs .\ta dog runs .\tentailment\n",
    "glue/RTE/dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tthe cat runs .\ta cat runs .\tentailment\n"
                        "1\tthe cat runs .\ta dog runs .\tnot_entailment\n",
    "glue/RTE/test.tsv": "index\tsentence1\tsentence2\n0\tthe cat runs .\ta cat sits .\n",   # never read
    "conllu/train.conllu": "1\tthe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tdog\tdog\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
    "conllu/dev.conllu": "1\ta\ta\tDET\t_\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
    "conllu/test.conllu": "1\ta\ta\tDET\t_\t_\t2\tdet\t_\t_\n2\tbird\tbird\tNOUN\t_\t_\t0\troot\t_\t_\n\n",
    "wic/train/train.data.txt": "sees\tV\t1-1\tthe dog sees .\tthe cat sees .\n",
    "wic/train/train.gold.txt": "T\n",
    "wic/dev/dev.data.txt": "runs\tV\t1-1\tthe dog runs .\tthe cat runs .\n",
    "wic/dev/dev.gold.txt": "F\n",
    "scandisent/S.csv": "text,label\nko ta mira,1\nvol dak,0\n",
    "scandisent/en.csv": "text,label\ngood dog,1\nbad cat,0\n",
    "stsb_S/train.tsv": "index\tsentence1\tsentence2\tscore\n0\tko ta\tko ta\t5.0\n",
    "stsb_S/dev.tsv": "index\tsentence1\tsentence2\tscore\n0\tvol dak\tvol pir\t2.5\n",
    "superglue/AX-g/AX-g.jsonl": '{"premise": "he runs", "hypothesis": "a man runs", "label": "entailment", '
                                 '"idx": 0, "pair_id": 0}\n',
}


def _on_disk(tmp_path: Path) -> Path:
    """The demo config with the synthetic generator off and every input written under tmp_path."""
    for rel, text in FILES.items():
        p = tmp_path / DATA / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        os.utime(p, (OLD_MTIME, OLD_MTIME))
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["synthetic"] = None
    raw["tracking_uri"] = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    return cfg


def _graph(cfg: Path):
    return build_graph(load_sweep(cfg, base_dir=cfg.parent))


# Which nodes read each file, by the rule of what each kind of node reads (ids: kind/model/task/seed).
def _reads(rel: str, node_id: str) -> bool:
    kind, *rest = node_id.split("/")
    if rel == "corpus_E.txt":   # the English tokenizer and cache, and continued pretraining (also keep mode)
        return node_id.startswith(("tokenizer/en-", "tokenize/E/")) or (kind == "pretrain" and rest != ["S"])
    if rel == "corpus_S.txt":   # the source's tokenizer, its cache, and pretraining it from scratch
        return node_id.startswith(("tokenizer/S-", "tokenize/S/")) or node_id == "pretrain/S"
    if rel.startswith("glue/"):
        folder, name = rel.split("/")[1:]
        task = {"CoLA": "cola", "SST-2": "sst2", "RTE": "rte"}[folder]
        return kind in ("finetune", "curve") and rest[1] == task and name in ("train.tsv", "dev.tsv")
    if rel.startswith("conllu/"):
        return kind == "features"
    if rel.startswith("wic/"):
        return kind == "wic"
    if rel.startswith("scandisent/"):
        return kind == "forget" and rest[1] == "scandisent-" + Path(rel).stem
    if rel.startswith("stsb_S/"):
        return kind == "forget" and rest[1] == "stsb-S"
    if rel.startswith("superglue/"):
        return kind == "winogender"
    raise AssertionError(rel)


def _expected(graph, rel: str) -> set[str]:
    """Readers of `rel` and everything below them, through the parent links."""
    out = {n for n in graph.nodes if _reads(rel, n)}
    grew = True
    while grew:
        below = {n for n, node in graph.nodes.items() if set(node.parents) & out}
        grew = not below <= out
        out |= below
    return out


def _changed(before, after) -> set[str]:
    assert set(before.nodes) == set(after.nodes)
    return {n for n in before.nodes if before.nodes[n].hash != after.nodes[n].hash}


def _same_size_edit(p: Path) -> None:
    """Change one line without changing the file's size (e.g. a flipped label or letter)."""
    text = p.read_text()
    lines = text.splitlines(keepends=True)
    i = max(k for k, ln in enumerate(lines) if any(ch.isalpha() for ch in ln))
    line = lines[i]
    j = next(k for k, ch in enumerate(line) if ch.isalpha())
    lines[i] = line[:j] + ("x" if line[j] != "x" else "y") + line[j + 1:]
    new = "".join(lines)
    assert new != text and len(new.encode()) == len(text.encode())
    p.write_text(new)


def test_the_demo_config_on_tmp_data_names_every_file_written(tmp_path):
    """The fixture is complete: the sweep finds every input it names (so no stamp is silently empty)."""
    cfg = _on_disk(tmp_path)
    sweep = load_sweep(cfg, base_dir=tmp_path)
    check_local_data(sweep)
    g = build_graph(sweep)
    # 181, the learning curve's 4 segments and 12 fine-tunes, 3 reattach nodes and their 18 forgetting
    # fine-tunes, the equal-compute [en][en] and its 9 GLUE fine-tunes
    assert len(g.nodes) == 181 + 16 + 21 + 10
    # nothing touched: a rebuild gives the same hashes
    assert _changed(g, _graph(cfg)) == set()


def test_editing_rte_dev_reruns_the_rte_fine_tunes_and_their_winogender_nodes_only(tmp_path):
    cfg = _on_disk(tmp_path)
    before = _graph(cfg)
    _same_size_edit(tmp_path / DATA / "glue/RTE/dev.tsv")
    after = _graph(cfg)
    by_hand = ({f"finetune/{m}/rte/seed{s}" for m in GLUE_MODELS for s in (1, 2, 3)}
               | {f"winogender/{m}/seed{s}" for m in MODELS for s in (1, 2, 3)})
    assert _expected(before, "glue/RTE/dev.tsv") == by_hand     # the rule, spelled out for this file
    assert _changed(before, after) == by_hand
    # everything else keeps its hash, kind by kind (pretraining, transfers, tokenizers, other tasks, probes, WiC)
    kinds = {after.nodes[n].kind for n in set(after.nodes) - by_hand}
    assert kinds == {"tokenizer", "tokenize", "vectors", "pretrain", "finetune", "features", "probe", "wic",
                     "forget", "curve", "reattach"}


@pytest.mark.parametrize("rel", [
    "glue/RTE/train.tsv", "glue/CoLA/dev.tsv", "glue/SST-2/train.tsv", "superglue/AX-g/AX-g.jsonl",
    "conllu/train.conllu", "conllu/test.conllu", "wic/dev/dev.gold.txt", "scandisent/S.csv",
    "scandisent/en.csv", "stsb_S/dev.tsv", "corpus_E.txt", "corpus_S.txt", "glue/RTE/test.tsv",
])
def test_each_edited_file_reruns_its_readers_and_their_descendants(tmp_path, rel):
    cfg = _on_disk(tmp_path)
    before = _graph(cfg)
    expected = _expected(before, rel)
    if rel == "glue/RTE/test.tsv":
        assert expected == set()          # in the task folder, but no fine-tune reads it
    else:
        assert expected and expected != set(before.nodes)
    _same_size_edit(tmp_path / DATA / rel)
    assert _changed(before, _graph(cfg)) == expected


def test_corpus_edits_split_the_graph_along_the_models_built_on_each_language(tmp_path):
    """Spelled out for the corpora, where the rule reaches furthest: S feeds [S] and every model moved from
    it, E feeds the English tokenizer and every continued pretraining, and [en][en] depends on S not at all."""
    cfg = _on_disk(tmp_path)
    before = _graph(cfg)
    _same_size_edit(tmp_path / DATA / "corpus_S.txt")
    mid = _graph(cfg)
    changed = _changed(before, mid)
    assert {n for n in before.nodes if before.nodes[n].model == "en-scratch"} & changed == set()
    assert {"tokenizer/en-1000-cased", "tokenize/E/en-1000-cased"} & changed == set()
    assert {"tokenizer/S-1000-cased", "tokenize/S/S-1000-cased", "pretrain/S", "pretrain/S-to-en-keep",
            "probe/S-to-en-frequency/layer2", "winogender/S/seed1", "forget/S-to-en-random-map/stsb-S/seed2"} <= changed
    _same_size_edit(tmp_path / DATA / "corpus_E.txt")
    changed = _changed(mid, _graph(cfg))
    assert {"tokenizer/S-1000-cased", "tokenize/S/S-1000-cased", "pretrain/S", "finetune/S/cola/seed1",
            "forget/S/scandisent-S/seed1", "probe/S/layer0"} & changed == set()
    assert {"pretrain/en-scratch", "pretrain/S-to-en-keep", "finetune/en-scratch/cola/seed2"} <= changed


def test_a_size_change_is_caught_even_with_the_old_mtime_put_back(tmp_path):
    cfg = _on_disk(tmp_path)
    before = _graph(cfg)
    p = tmp_path / DATA / "glue/RTE/dev.tsv"
    p.write_text(p.read_text() + "2\tthe bird runs .\ta bird runs .\tentailment\n")
    os.utime(p, (OLD_MTIME, OLD_MTIME))                 # e.g. `cp -p`, `rsync -t`
    assert int(p.stat().st_mtime) == OLD_MTIME
    assert _changed(before, _graph(cfg)) == _expected(before, "glue/RTE/dev.tsv")


def test_an_edit_that_keeps_size_and_mtime_is_caught(tmp_path):
    """Content, not stamps: the same bytes count, the same size and mtime do not."""
    cfg = _on_disk(tmp_path)
    before = _graph(cfg)
    p = tmp_path / DATA / "glue/RTE/dev.tsv"
    _same_size_edit(p)
    os.utime(p, (OLD_MTIME, OLD_MTIME))
    assert _changed(before, _graph(cfg)) == _expected(before, "glue/RTE/dev.tsv")


def test_a_touch_alone_reruns_nothing(tmp_path):
    cfg = _on_disk(tmp_path)
    before = _graph(cfg)
    p = tmp_path / DATA / "glue/RTE/dev.tsv"
    content = p.read_bytes()
    os.utime(p, (OLD_MTIME + 10, OLD_MTIME + 10))
    assert p.read_bytes() == content
    assert _changed(before, _graph(cfg)) == set()


def test_a_project_moved_elsewhere_with_its_data_and_outputs_stays_done(tmp_path):
    """The whole folder (config, data, runs) copied to another path: every hash is the same, and nodes
    marked done at the old place are done at the new one. So a cluster node that mounts the shared folder
    elsewhere agrees with the driver, and `cp -r` of a project keeps its results."""
    import shutil

    cfg = _on_disk(tmp_path / "here")
    before = _graph(cfg)
    _mark_all_done(before)
    shutil.copytree(tmp_path / "here", tmp_path / "moved" / "there")   # new mtimes, new absolute paths
    after = _graph(tmp_path / "moved" / "there" / "sweep.yaml")
    assert Path(after.sweep.output_dir) != Path(before.sweep.output_dir)
    assert _changed(before, after) == set()
    assert done_nodes(after) == set(after.nodes)


def test_an_output_folder_moved_alone_stays_done(tmp_path):
    import shutil

    cfg = _on_disk(tmp_path)
    before = _graph(cfg)
    _mark_all_done(before)
    shutil.move(before.sweep.output_dir, tmp_path / "elsewhere")
    after = build_graph(load_sweep(cfg, [f"output_dir={tmp_path / 'elsewhere'}"], base_dir=cfg.parent))
    assert _changed(before, after) == set()
    assert done_nodes(after) == set(after.nodes)


def _mark_all_done(graph) -> None:
    """Folders as run_node leaves them after success: settings.json, and DONE naming the node's hash and the
    done_id of each parent it read."""
    for nid, node in graph.nodes.items():      # parents first
        d = graph.node_dir(nid)
        d.mkdir(parents=True, exist_ok=True)
        (d / SETTINGS).write_text('{"hash": "%s"}' % node.hash)
        write_json(d / "DONE", {"hash": node.hash, "done_id": f"id-{nid}",
                                "parents": {p: f"id-{p}" for p in node.parents}, "outputs": {}})


def test_after_an_edit_the_next_run_reruns_exactly_those_nodes(tmp_path, capsys, monkeypatch):
    """What the sweep does with the new hashes: `run_sweep` starts a Gate over the nodes that are not done
    (`done_nodes`: DONE and a matching settings hash); edited-data nodes are stale, the rest are skipped."""
    from orchestrator.cli import main
    from tests.test_sweep_ray import status_line

    cfg = _on_disk(tmp_path)
    before = _graph(cfg)
    _mark_all_done(before)
    assert done_nodes(before) == set(before.nodes) and Gate(before, done_nodes(before)).finished()

    _same_size_edit(tmp_path / DATA / "glue/RTE/dev.tsv")
    after = _graph(cfg)
    expected = _expected(before, "glue/RTE/dev.tsv")
    assert {n for n in after.nodes if node_state(after, n) == "stale"} == expected
    assert done_nodes(after) == set(after.nodes) - expected
    gate = Gate(after, done_nodes(after))
    assert set(gate.pending) == expected
    # the RTE fine-tunes start at once (their pretrained parents count as done); Winogender waits on them
    first = set()
    while (nid := gate.next_ready()) is not None:
        first.add(nid)
    assert first == {n for n in expected if n.startswith("finetune/")}
    assert set(gate.pending) == {n for n in expected if n.startswith("winogender/")}

    monkeypatch.chdir(tmp_path)          # the CLI resolves the config's relative paths against the cwd
    assert main(["status", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert status_line("pretrain", done=14) in out and status_line("probe", done=15) in out
    assert status_line("finetune", done=60, stale=30) in out
    assert status_line("winogender", stale=15) in out
