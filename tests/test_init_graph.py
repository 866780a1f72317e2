"""The embedding initialisations in the trial graph: their vectors nodes, their inputs, what their settings
change, and the config errors."""
from __future__ import annotations

import pytest

from orchestrator.config import REPO_ROOT, ConfigError, check_local_data, load_sweep
from orchestrator.graph import build_graph

DEMO = REPO_ROOT / "configs" / "demo.yaml"


def demo(tmp_path, *overrides):
    return build_graph(load_sweep(DEMO, [f"output_dir={tmp_path}", *overrides], base_dir=REPO_ROOT))


def test_every_init_is_a_pretrain_node_with_the_children_of_frequency(tmp_path):
    g = demo(tmp_path, "experiments.vocab_modes=[frequency,random-map,keep,overlap,fvt,random-normal,focus,wechsel]")
    for mode in ("overlap", "fvt", "random-normal", "focus", "wechsel"):
        node = g.nodes[f"pretrain/S-to-en-{mode}"]
        assert node.params["transfer"]["mode"] == mode and node.row == ("S→en", f"en ({mode})")
        # GLUE for every init; the suite only for the models the demo lists
        assert {c.split("/")[0] for c in g.children(node.id)} == {"finetune"}
        assert sorted(c.split("/", 2)[2] for c in g.children(node.id)) == \
            sorted(c.split("/", 2)[2] for c in g.children("pretrain/S-to-en-frequency") if c.startswith("finetune/"))
    # only the row maps read token counts of the source corpus
    assert "tokenize/S/S-1000-cased" in g.nodes["pretrain/S-to-en-frequency@25pct"].parents   # its first segment
    assert g.nodes["pretrain/S-to-en-fvt"].params["transfer"]["target_counts"] is None


def test_focus_and_wechsel_read_vectors_nodes(tmp_path):
    g = demo(tmp_path, "experiments.vocab_modes=[frequency,random-map,keep,focus,wechsel]")
    focus = g.nodes["pretrain/S-to-en-focus"]
    vec = g.nodes["vectors/E/en-1000-cased"]
    assert vec.id in focus.parents and vec.parents == ("tokenizer/en-1000-cased",)
    assert vec.params["config"]["unit"] == "tokens" and vec.params["config"]["dim"] == 32
    assert focus.params["transfer"]["focus_vectors"] == str(g.node_dir(vec.id) / "vectors.bin")
    w = g.nodes["pretrain/S-to-en-wechsel"]
    s_vec, e_vec = g.nodes["vectors/S/words-cased"], g.nodes["vectors/E/words-cased"]
    assert {s_vec.id, e_vec.id} <= set(w.parents) and s_vec.params["config"]["unit"] == "words"
    t = w.params["transfer"]
    assert t["wechsel_source_vectors"] == str(g.node_dir(s_vec.id) / "vectors.bin")
    assert t["wechsel_target_vectors"] == str(g.node_dir(e_vec.id) / "vectors.bin")
    assert t["wechsel_dictionary"].endswith("data/synthetic/dictionary_S_E.txt")


def test_vectors_corpus_moves_the_english_vectors_to_a_slice(tmp_path):
    g = demo(tmp_path, "experiments.vocab_modes=[frequency,random-map,keep,focus,wechsel]",
             "corpora.E_slice={files: [data/synthetic/corpus_E.txt], max_documents: 100}",
             "inits.vectors_corpus=E_slice")
    focus, w = g.nodes["pretrain/S-to-en-focus"], g.nodes["pretrain/S-to-en-wechsel"]
    assert "vectors/E_slice/en-1000-cased" in focus.parents and "vectors/E/en-1000-cased" not in g.nodes
    assert "vectors/E_slice/words-cased" in w.parents and "vectors/S/words-cased" in w.parents   # source side stays
    assert g.nodes["vectors/E_slice/en-1000-cased"].params["config"]["corpus"]["max_documents"] == 100
    # the pretraining corpus is still the target corpus
    assert focus.params["config"]["corpus"] == g.nodes["pretrain/S-to-en-frequency"].params["config"]["corpus"]
    with pytest.raises(ConfigError, match="inits.vectors_corpus: unknown corpus 'nope'"):
        demo(tmp_path, "inits.vectors_corpus=nope")


def test_given_vectors_need_no_vectors_node(tmp_path):
    (tmp_path / "sv.bin").write_bytes(b"x")
    (tmp_path / "en.bin").write_bytes(b"x")
    g = demo(tmp_path / "out", "experiments.vocab_modes=[frequency,random-map,keep,wechsel]",
             f"sources.S.wechsel_vectors={tmp_path}/sv.bin",
             f"inits.wechsel.target_vectors={tmp_path}/en.bin")
    assert "vectors" not in g.by_kind()
    assert g.nodes["pretrain/S-to-en-wechsel"].params["transfer"]["wechsel_source_vectors"] == f"{tmp_path}/sv.bin"


def test_init_settings_change_only_their_own_nodes(tmp_path):
    modes = "experiments.vocab_modes=[frequency,random-map,keep,focus,wechsel]"
    a, b = demo(tmp_path, modes), demo(tmp_path, modes, "inits.focus.vectors.dim=50")
    assert a.nodes["pretrain/S-to-en-frequency"].hash == b.nodes["pretrain/S-to-en-frequency"].hash
    assert a.nodes["pretrain/S-to-en-wechsel"].hash == b.nodes["pretrain/S-to-en-wechsel"].hash
    assert a.nodes["pretrain/S-to-en-focus"].hash != b.nodes["pretrain/S-to-en-focus"].hash
    c = demo(tmp_path, modes, "inits.wechsel.temperature=0.5")
    assert a.nodes["pretrain/S-to-en-focus"].hash == c.nodes["pretrain/S-to-en-focus"].hash
    assert a.nodes["pretrain/S-to-en-wechsel"].hash != c.nodes["pretrain/S-to-en-wechsel"].hash


def test_wechsel_without_a_dictionary_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="sources.S.wechsel_dictionary: vocab mode wechsel aligns"):
        demo(tmp_path, "experiments.vocab_modes=[frequency,random-map,keep,wechsel]",
             "sources.S.wechsel_dictionary=null")
    bad = tmp_path / "dict.txt"
    bad.write_text("hund\tdog\nkatt\n")
    s = load_sweep(DEMO, [f"output_dir={tmp_path}", "experiments.vocab_modes=[frequency,random-map,keep,wechsel]",
                          f"sources.S.wechsel_dictionary={bad}", "synthetic=null", "finetune.data_dir=null",
                          "probe=null", "wic=null", "forgetting=null", "winogender=null",
                          f"corpora.E.files=[{bad}]", f"corpora.S.files=[{bad}]"], base_dir=REPO_ROOT)
    with pytest.raises(ConfigError) as e:
        check_local_data(s)
    assert str(e.value).startswith("1 local input(s) missing") and \
        "dict.txt:2: expected 'source word<TAB>target word'" in str(e.value)


def test_forgetting_models_choose_the_group(tmp_path):
    g = demo(tmp_path, "forgetting.models=[S,S-to-en-keep]")
    assert {n.model for n in g.by_kind()["forget"]} == {"S", "S-to-en-keep", "S-to-en-keep-reattached"}
    with pytest.raises(ConfigError, match="forgetting.models: unknown model 'nope'"):
        demo(tmp_path, "forgetting.models=[nope]")


def test_report_init_table_reads_diagnostics_and_movement(tmp_path):
    """One row per pretrained model with files; the cosine pools composed and random rows by their counts."""
    import json

    from orchestrator.report import init_table

    g = demo(tmp_path)
    d = g.node_dir("pretrain/S-to-en-fvt")
    (d / "init").mkdir(parents=True)
    (d / "init" / "mapping_report.json").write_text(json.dumps({"diagnostics": {
        "rows": {"copied": 10, "composed": 30, "random": 10, "special": 5}, "identity_rate": 0.25,
        "composed_nearest_cosine": 0.8, "composed_top10_cosine": 0.6,
        "random_nearest_cosine": 0.4, "random_top10_cosine": 0.2}}))
    (d / "movement.json").write_text(json.dumps({"embeddings": 1.5, "body": 0.3, "layer0": 0.2}))
    table = init_table(g)
    assert table[0][:3] == ["Lang", "Vocab", "init"] and len(table) == 2
    row = table[1]
    assert row[:7] == ["S→en", "en (fvt)", "fvt", 10, 30, 10, 5] and row[7] == 25.0
    assert row[8] == pytest.approx((0.8 * 30 + 0.4 * 10) / 40) and row[9] == pytest.approx((0.6 * 30 + 0.2 * 10) / 40)
    assert row[10:] == [1.5, 0.3]
