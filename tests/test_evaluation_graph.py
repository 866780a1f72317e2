"""The evaluation suite in the trial graph: which nodes exist, what gates them, and the config errors."""
from __future__ import annotations

import pytest

from orchestrator.config import REPO_ROOT, ConfigError, load_sweep
from orchestrator.graph import build_graph

DEMO = REPO_ROOT / "configs" / "demo.yaml"
DEMO_MODELS = ["S-to-en-frequency", "S-to-en-random-map", "S-to-en-keep", "en-scratch", "S"]


def demo(tmp_path, *overrides):
    return build_graph(load_sweep(DEMO, [f"output_dir={tmp_path}", *overrides], base_dir=REPO_ROOT))


def test_probe_nodes_share_one_features_node_per_model(tmp_path):
    g = demo(tmp_path)
    for model in DEMO_MODELS:
        feat = g.nodes[f"features/{model}"]
        assert feat.parents == (f"pretrain/{model}",)
        for layer in (0, 1, 2):
            probe = g.nodes[f"probe/{model}/layer{layer}"]
            assert probe.parents == (feat.id,) and probe.params["config"]["layer"] == layer
            assert probe.params["config"]["features_dir"] == str(g.node_dir(feat.id) / "features")
    assert len(g.by_kind()["probe"]) == 15 and len(g.by_kind()["features"]) == 5


def test_winogender_is_gated_on_the_rte_fine_tune_that_keeps_its_model(tmp_path):
    g = demo(tmp_path)
    for model in DEMO_MODELS:
        for seed in (1, 2):
            w = g.nodes[f"winogender/{model}/seed{seed}"]
            assert w.parents == (f"finetune/{model}/rte/seed{seed}",)
            assert g.nodes[w.parents[0]].params["config"]["save_model"] is True
        # other tasks keep only metrics: their weights would fill the disk for nothing
        assert g.nodes[f"finetune/{model}/cola/seed1"].params["config"]["save_model"] is False


def test_forgetting_runs_the_source_group_on_source_and_english_tasks(tmp_path):
    g = demo(tmp_path, "forgetting.reattach=false")
    forget = g.by_kind()["forget"]
    assert {n.model for n in forget} == {"S", "S-to-en-frequency", "S-to-en-random-map", "S-to-en-keep"}
    assert {n.params["config"]["task"] for n in forget} == {"scandisent-S", "stsb-S", "scandisent-en"}
    n = g.nodes["forget/S-to-en-keep/stsb-S/seed2"]
    assert n.parents == ("pretrain/S-to-en-keep",)
    assert n.params["config"]["data_dir"].endswith("data/synthetic/stsb_S")
    assert n.params["config"]["hub_dataset"] is None
    assert n.params["config"]["learning_rate"] == 1e-3 and n.params["config"]["seed"] == 2


def test_source_model_joins_the_graph_for_forgetting_even_without_direct_fine_tunes(tmp_path):
    g = demo(tmp_path, "experiments.direct=[]")
    assert "forget/S/scandisent-S/seed1" in g.nodes
    assert not any(n.id.startswith("finetune/S/") for n in g.nodes.values())  # no GLUE rows for [S]


def test_hub_data_for_forgetting_is_marked_with_a_prefix(tmp_path):
    g = demo(tmp_path, "forgetting.data.stsb-S=hub:timpal0l/stsb_mt_sv")
    s = g.nodes["forget/S/stsb-S/seed1"].params["config"]
    assert s["hub_dataset"] == "timpal0l/stsb_mt_sv" and s["data_dir"] is None


def test_changing_a_probe_setting_reruns_probes_but_not_features(tmp_path):
    a, b = demo(tmp_path), demo(tmp_path, "probe.rank=16")
    assert a.nodes["features/S"].hash == b.nodes["features/S"].hash
    assert a.nodes["probe/S/layer1"].hash != b.nodes["probe/S/layer1"].hash
    assert a.nodes["finetune/S/rte/seed1"].hash == b.nodes["finetune/S/rte/seed1"].hash


def test_sections_left_out_add_no_nodes(tmp_path):
    g = demo(tmp_path, "probe=null", "wic=null", "forgetting=null", "winogender=null", "learning_curve=null")
    assert set(g.by_kind()) == {"tokenizer", "tokenize", "vectors", "pretrain", "finetune"}
    assert all(n.params["config"]["save_model"] is False for n in g.by_kind()["finetune"])


@pytest.mark.parametrize("override, message", [
    ("probe.models=[nope]", "probe.models: unknown model 'nope'"),
    ("winogender.models=[S-to-en]", "winogender.models: unknown model"),
    ("finetune.tasks=[cola]", "add rte to finetune.tasks"),
    ("sources.S.source_tasks=[sentiment-S]", "use scandisent-<lang> or stsb-<lang>"),
    ("forgetting.english_tasks=[scandisent-fi]", "no data for task 'scandisent-fi'"),
    ("probe.layers=[]", "probe.layers"),
    ("probe.min_words=0", "probe.min_words"),
    ("wic.seeds=[]", "wic.seeds"),
    ("wic.learnig_rate=1", "unknown key wic.learnig_rate"),
])
def test_bad_evaluation_settings_name_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        demo(tmp_path, override)


def test_reattach_nodes_gate_the_source_task_fine_tunes_of_each_transferred_model(tmp_path):
    plain = demo(tmp_path, "forgetting.reattach=false")
    g = demo(tmp_path)     # the demo re-attaches
    added = set(g.nodes) - set(plain.nodes)
    # Nothing that existed changes: the setting adds nodes, it never makes finished ones stale.
    assert all(g.nodes[n].hash == plain.nodes[n].hash for n in plain.nodes)
    for model in ("S-to-en-frequency", "S-to-en-random-map", "S-to-en-keep"):
        r = g.nodes[f"reattach/{model}"]
        assert set(r.parents) == {f"pretrain/{model}", "pretrain/S"}
        assert r.params["config"]["trained"] == str(g.node_dir(f"pretrain/{model}") / "model")
        assert r.params["config"]["source"] == str(g.node_dir("pretrain/S") / "model")
        for task in ("scandisent-S", "stsb-S"):       # the source's tasks only: it reads the source language
            for seed in (1, 2, 3):
                n = g.nodes[f"forget/{model}-reattached/{task}/seed{seed}"]
                assert n.parents == (r.id,) and n.params["config"]["model"] == r.params["config"]["output_dir"]
                assert n.params["reattached"] == model and n.params["group"] == "S"
        assert not any(n.startswith(f"forget/{model}-reattached/scandisent-en") for n in g.nodes)
    assert len(added) == 3 + 3 * 2 * 3
    assert not any(n.startswith(("reattach/S/", "reattach/en-scratch")) for n in g.nodes)   # only [S->en] models


def _ancestors(g, node_id):
    out, stack = set(), [node_id]
    while stack:
        for p in g.nodes[stack.pop()].parents:
            if p not in out:
                out.add(p)
                stack.append(p)
    return out


def test_learning_curve_fine_tunes_are_gated_on_their_segment_not_on_the_end_of_pretraining(tmp_path):
    plain = demo(tmp_path, "learning_curve=null")
    g = demo(tmp_path)     # the demo: cuts at 25% and 50%, SST-2, [S->en][en] and [en][en]
    for model in ("S-to-en-frequency", "en-scratch"):
        first, second, final = (g.nodes[f"pretrain/{model}{s}"] for s in ("@25pct", "@50pct", ""))
        assert first.parents == plain.nodes[f"pretrain/{model}"].parents      # the original inputs
        assert second.parents == (first.id,) and final.parents == (second.id,)
        assert [n.params["config"]["stop_at_fraction"] for n in (first, second, final)] == [0.25, 0.5, None]
        assert first.params["config"]["resume_from"] is None
        assert second.params["config"]["resume_from"] == str(g.node_dir(first.id) / "checkpoint")
        assert final.params["config"]["resume_from"] == str(g.node_dir(second.id) / "checkpoint")
        init = str(g.node_dir(first.id) / "init")     # one transfer, in the first segment
        assert {n.params["config"]["init_model"] for n in (first, second, final)} == {init}
        assert {n.params["transfer"]["output_dir"] for n in (first, second, final)} == {init}
        for pct, seg in (("25", first), ("50", second)):
            for seed in (1, 2, 3):
                c = g.nodes[f"curve/{model}@{pct}pct/sst2/seed{seed}"]
                assert c.parents == (seg.id,) and final.id not in _ancestors(g, c.id)
                assert c.params["config"]["model"] == str(g.node_dir(seg.id) / "model")
                assert c.params["config"]["seed"] == seed and c.model == model
                same = plain.nodes[f"finetune/{model}/sst2/seed{seed}"].params["config"]
                assert {k: v for k, v in c.params["config"].items() if k not in ("model", "output_dir")} == \
                    {k: v for k, v in same.items() if k not in ("model", "output_dir")}   # the 100% point's recipe
    assert len(g.by_kind()["curve"]) == 2 * 2 * 3
    # The models without a curve keep their hashes: adding one never makes other finished work stale.
    untouched = [n for n in plain.nodes if plain.nodes[n].model not in ("S-to-en-frequency", "en-scratch",
                                                                         "S-to-en-frequency-reattached")]
    assert untouched and all(g.nodes[n].hash == plain.nodes[n].hash for n in untouched)


@pytest.mark.parametrize("override,words", [
    ("learning_curve.tasks=[qqp]", "not in finetune.tasks"),
    ("learning_curve.seeds=[9]", "not in finetune.seeds"),
    ("learning_curve.fractions=[0.5,0.25]", "increasing shares"),
    ("learning_curve.fractions=[1.0]", "increasing shares"),
    ("learning_curve.models=[nope]", "unknown model 'nope'"),
    ("learning_curve.models=[S]", "is a source model"),
])
def test_learning_curve_config_errors(tmp_path, override, words):
    with pytest.raises(ConfigError, match=words):
        demo(tmp_path, override)


def test_scratch_budget_match_adds_an_en_en_at_the_transferred_models_compute(tmp_path):
    plain = demo(tmp_path, "experiments.scratch_budget=same")
    g = demo(tmp_path)     # the demo matches the budget
    node = g.nodes["pretrain/en-scratch-match-S"]
    # S is built in the sweep: 2,000 steps x 32 x 64 tokens, added to [S->en][en]'s English budget
    assert node.params["config"]["extra_tokens"] == 2000 * 32 * 64
    assert node.params["config"]["max_steps"] == g.nodes["pretrain/S-to-en-frequency"].params["config"]["max_steps"]
    assert node.parents == plain.nodes["pretrain/en-scratch@25pct"].parents and node.row == ("en", "en (+S budget)")
    assert {n for n in g.nodes if g.nodes[n].model == "en-scratch-match-S"} == \
        {"pretrain/en-scratch-match-S", *(f"finetune/en-scratch-match-S/{t}/seed{s}" for t in ("cola", "rte", "sst2")
                                          for s in (1, 2, 3))}
    assert all(g.nodes[n].hash == plain.nodes[n].hash for n in plain.nodes)    # it only adds
    stated = demo(tmp_path, "experiments.scratch_budget=match", "sources.S.pretraining_tokens=1000")
    assert stated.nodes["pretrain/en-scratch-match-S"].params["config"]["extra_tokens"] == 1000


def test_scratch_budget_match_needs_the_source_pretraining_tokens(tmp_path):
    from orchestrator.config import REPO_ROOT as root

    with pytest.raises(ConfigError, match=r"set sources.sv.pretraining_tokens"):
        load_sweep(root / "configs" / "paper.yaml", ["experiments.scratch_budget=match"], base_dir=tmp_path)
