"""The synthetic bilingual world: deterministic, in the official GLUE layouts, well-formed trees, and tasks
that a bag of words cannot solve."""
from __future__ import annotations

import csv
import itertools
import json
import os
import random
import re
from pathlib import Path

import pytest

from stages.common import StageError
from synthetic import (AXG_FRAMES, AXG_PRONOUNS, COLA_PROFILE, Grammar, Lexicon, RealizerE, SyntheticConfig, _cola_bad,
                       _corrupt_tokens, _wic, _words, generate)

# small enough to generate in about a second, big enough for the baselines to mean something
SMALL = dict(seed=3, source_tokens=30_000, english_tokens=15_000, train_size=600, dev_size=200)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate(SyntheticConfig(out_dir=str(tmp_path_factory.mktemp("synthetic") / "world"), **SMALL))


def _data_files(root: str) -> dict[str, bytes]:
    """Every generated file but the manifest (which records timings), by relative path."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if rel != "manifest.json":
                out[rel] = p.read_bytes()
    return out


def _tsv(path: str) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _task_rows(world, task: str, split: str) -> tuple[list[str] | None, list[list[str]]]:
    folder = {"cola": "CoLA", "sst2": "SST-2", "rte": "RTE"}[task]
    rows = _tsv(os.path.join(world.glue_dir, folder, f"{split}.tsv"))
    return (None, rows) if task == "cola" else (rows[0], rows[1:])


def _texts_labels(world, task: str, split: str) -> tuple[list, list[int]]:
    _, rows = _task_rows(world, task, split)
    if task == "cola":
        return [r[3] for r in rows], [int(r[1]) for r in rows]
    if task == "sst2":
        return [r[0] for r in rows], [int(r[1]) for r in rows]
    return [(r[1], r[2]) for r in rows], [int(r[3] == "entailment") for r in rows]


def test_same_config_gives_byte_identical_files(world, tmp_path):
    again = generate(SyntheticConfig(out_dir=str(tmp_path / "again"), **SMALL))
    a, b = _data_files(world.out_dir), _data_files(again.out_dir)
    assert sorted(a) == sorted(b)
    for rel in a:
        assert a[rel] == b[rel], rel
    assert {"corpus_E.txt", "corpus_S.txt", "glue/CoLA/train.tsv", "glue/RTE/dev.tsv",
            "conllu/test.conllu", "wic/train/train.data.txt", "wic/train/train.gold.txt", "wic/dev/dev.data.txt",
            "wic/dev/dev.gold.txt", "scandisent/S.csv", "scandisent/en.csv", "stsb_S/train.tsv", "stsb_S/dev.tsv",
            "superglue/AX-g/AX-g.jsonl", "dictionary_S_E.txt"} <= set(a)


def test_other_seed_gives_other_files(world, tmp_path):
    other = generate(SyntheticConfig(out_dir=str(tmp_path / "other"), **dict(SMALL, seed=4)))
    a, b = _data_files(world.out_dir), _data_files(other.out_dir)
    for rel in ("corpus_E.txt", "corpus_S.txt", "glue/CoLA/train.tsv", "glue/SST-2/dev.tsv",
                "glue/RTE/train.tsv", "conllu/train.conllu", "wic/dev/dev.data.txt", "scandisent/S.csv",
                "scandisent/en.csv", "stsb_S/train.tsv", "superglue/AX-g/AX-g.jsonl"):
        assert a[rel] != b[rel], rel


def test_glue_files_have_the_official_layouts(world):
    assert world.tasks == ["cola", "sst2", "rte"]
    for split, n in (("train", SMALL["train_size"]), ("dev", SMALL["dev_size"])):
        _, cola = _task_rows(world, "cola", split)
        assert len(cola) == n
        for row in cola:  # no header: source code, label, original mark, sentence
            assert len(row) == 4
            assert row[0] == "syn01" and row[1] in ("0", "1")
            assert row[2] == ("*" if row[1] == "0" else "")
        header, sst = _task_rows(world, "sst2", split)
        assert header == ["sentence", "label"] and len(sst) == n
        assert all(len(r) == 2 and r[1] in ("0", "1") for r in sst)
        header, rte = _task_rows(world, "rte", split)
        assert header == ["index", "sentence1", "sentence2", "label"] and len(rte) == n
        assert [r[0] for r in rte] == [str(i) for i in range(n)]
        assert all(len(r) == 4 and r[3] in ("entailment", "not_entailment") for r in rte)


@pytest.mark.parametrize("task", ["cola", "sst2", "rte"])
def test_labels_balanced_and_texts_clean(world, task):
    for split in ("train", "dev"):
        texts, labels = _texts_labels(world, task, split)
        assert 0.45 <= sum(labels) / len(labels) <= 0.55
        for t in texts:
            for s in (t if isinstance(t, tuple) else (t,)):
                assert '"' not in s and "'" not in s and "\t" not in s and s == s.strip()
                assert 3 <= len(s.split()) <= 25
                assert s[0].isupper() and s.endswith(".")


def test_sst2_labels_follow_negation(world):
    """One-clause sentences: the sentiment word decides, flipped by "not"/"never" (lexicon.tsv has classes)."""
    polarity = {}
    for row in _tsv(os.path.join(world.out_dir, "lexicon.tsv"))[1:]:
        if row[2] in ("positive", "negative"):
            for form in row[3].split():
                polarity[form] = 1 if row[2] == "positive" else 0
    checked = 0
    for split in ("train", "dev"):
        texts, labels = _texts_labels(world, "sst2", split)
        for text, label in zip(texts, labels):
            words = re.findall(r"\w+", text.lower())
            if {"but", "although", "and"} & set(words):
                continue
            negated = "not" in words or "never" in words
            if negated and "that" in words:
                continue   # the "not" may sit in a relative clause, outside the sentiment's scope
            found = {polarity[w] for w in words if w in polarity}
            assert len(found) == 1, text
            assert found.pop() == (1 - label if negated else label), text
            checked += 1
    assert checked > 300


def test_conllu_is_well_formed(world):
    assert set(world.conllu) == {"train", "dev", "test"}
    for split, path in world.conllu.items():
        blocks = Path(path).read_text(encoding="utf-8").strip("\n").split("\n\n")
        assert len(blocks) == (SMALL["train_size"] if split == "train" else SMALL["dev_size"])
        ids = set()
        for block in blocks:
            lines = block.split("\n")
            comments = [ln for ln in lines if ln.startswith("#")]
            rows = [ln.split("\t") for ln in lines if not ln.startswith("#")]
            assert comments[0].startswith("# sent_id = ") and comments[1].startswith("# text = ")
            ids.add(comments[0])
            assert all(len(r) == 10 for r in rows)
            assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
            heads = [int(r[6]) for r in rows]
            assert all(0 <= h <= len(rows) and h != i + 1 for i, h in enumerate(heads))
            assert heads.count(0) == 1 and rows[heads.index(0)][7] == "root"
            assert all(r[7] not in ("_", "None", "root") for r, h in zip(rows, heads) if h != 0)
            # every token reaches the root (no cycles)
            for i in range(len(rows)):
                seen, j = set(), i + 1
                while j != 0:
                    assert j not in seen
                    seen.add(j)
                    j = heads[j - 1]
            # the text is the forms joined as MISC says
            text = "".join(r[1] + ("" if "SpaceAfter=No" in r[9] else " ") for r in rows).strip()
            assert comments[1] == f"# text = {text}"
        assert len(ids) == len(blocks)


def _types(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return set(re.findall(r"\w+|[^\w\s]", f.read().lower()))


def test_lexicons_of_e_and_s_are_disjoint(world):
    e, s = _types(world.corpora["E"]), _types(world.corpora["S"])
    assert len(e) > 300 and len(s) > 300
    assert e & s <= {",", "."}


def test_dictionary_pairs_words_of_the_two_corpora(world):
    """WECHSEL's format, source first: every frequent S word has its E translation, and the pairs are the
    lexicon's own (a noun's plural pairs with its plural)."""
    from synthetic.lexicon import Lexicon

    lines = open(world.dictionary, encoding="utf-8").read().splitlines()
    pairs = [tuple(line.split("\t")) for line in lines]
    assert all(len(p) == 2 and all(p) for p in pairs) and len(set(pairs)) == len(pairs)
    e, s = _types(world.corpora["E"]), _types(world.corpora["S"])
    assert sum(a in s for a, _ in pairs) / len(pairs) > 0.5 and sum(b in e for _, b in pairs) / len(pairs) > 0.5
    assert ("ta", "the") in pairs and ("tak", "the") in pairs and ("ne", "not") in pairs
    lex = Lexicon(SyntheticConfig(out_dir="-", **SMALL))
    (sg_s, pl_s), (sg_e, pl_e) = lex.noun_s[0], lex.noun_e[0]
    assert (sg_s, sg_e) in pairs and (pl_s, pl_e) in pairs


def test_corpus_sizes_follow_the_config(world):
    for lang, want in (("E", SMALL["english_tokens"]), ("S", SMALL["source_tokens"])):
        with open(world.corpora[lang], encoding="utf-8") as f:
            lines = f.read().split("\n")
        assert lines[-1] == "" and all(lines[:-1])   # one document per line, newline-terminated
        n = sum(len(ln.split()) for ln in lines)
        assert abs(n - want) <= 0.1 * want
        assert world.stats["corpora"][lang]["word_tokens"] == n


@pytest.mark.parametrize("task", ["cola", "sst2", "rte"])
def test_bag_of_words_cannot_solve_the_tasks(world, task):
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    (tr_x, tr_y), (dev_x, dev_y) = _texts_labels(world, task, "train"), _texts_labels(world, task, "dev")
    cols = 2 if task == "rte" else 1

    def column(xs, i):
        return [x[i] for x in xs] if cols == 2 else xs

    parts_tr, parts_dev = [], []
    for i in range(cols):
        vec = CountVectorizer(token_pattern=r"(?u)\b\w+\b")
        parts_tr.append(vec.fit_transform(column(tr_x, i)))
        parts_dev.append(vec.transform(column(dev_x, i)))
    clf = LogisticRegression(max_iter=2000).fit(hstack(parts_tr), tr_y)
    acc = (clf.predict(hstack(parts_dev)) == dev_y).mean()
    assert acc < 0.8, f"{task}: bag of words reaches {acc:.3f}"
    assert world.stats["tasks"][task]["baselines"]["bow"] < 0.8


def test_manifest_makes_a_second_call_a_noop(world):
    paths = [p for p in Path(world.out_dir).rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in paths}
    again = generate(SyntheticConfig(out_dir=world.out_dir, **SMALL))
    assert again == world
    assert {p: p.stat().st_mtime_ns for p in paths} == before
    assert sorted(p for p in Path(world.out_dir).rglob("*") if p.is_file()) == sorted(paths)


def test_missing_manifest_or_other_config_regenerates(tmp_path):
    cfg = SyntheticConfig(out_dir=str(tmp_path / "w"), **dict(SMALL, train_size=50, dev_size=20))
    res = generate(cfg)
    good = Path(res.corpora["E"]).read_bytes()
    # a crash after a partial write: no manifest, so the half-written file is not trusted
    (Path(cfg.out_dir) / "manifest.json").unlink()
    Path(res.corpora["E"]).write_text("half a corp")
    generate(cfg)
    assert Path(res.corpora["E"]).read_bytes() == good
    # another config in the same folder replaces the world
    generate(cfg.replace(seed=9))
    assert Path(res.corpora["E"]).read_bytes() != good


def test_task_knobs_leave_the_corpora_untouched(tmp_path):
    """Tuning a task must not look like a new corpus to caches keyed by content or mtime."""
    cfg = SyntheticConfig(out_dir=str(tmp_path / "w"), **dict(SMALL, train_size=50, dev_size=20))
    res = generate(cfg)
    corpora = [Path(p) for p in res.corpora.values()]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in corpora}
    sst_before = Path(res.glue_dir, "SST-2", "train.tsv").read_bytes()
    wic_before = Path(res.wic_dir, "dev", "dev.data.txt").read_bytes()
    generate(cfg.replace(sentiment_words=4, sst_negation_rate=0.4, rte_hard_share=0.2, label_noise=0.1,
                                 scandisent_train=30, scandisent_eval=10, axg_pairs=5, cola_max_words=8))
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in corpora} == before
    assert Path(res.glue_dir, "SST-2", "train.tsv").read_bytes() != sst_before
    assert Path(res.wic_dir, "dev", "dev.data.txt").read_bytes() == wic_before   # WiC has its own stream


def test_bad_knobs_are_refused(tmp_path):
    with pytest.raises((StageError, ValueError), match="label_noise"):
        generate(SyntheticConfig(out_dir=str(tmp_path / "x"), label_noise=0.7))
    with pytest.raises((StageError, ValueError), match="sst_negation_rate"):
        generate(SyntheticConfig(out_dir=str(tmp_path / "x"), sst_negation_rate=1.5))
    with pytest.raises((StageError, ValueError), match="homographs"):
        generate(SyntheticConfig(out_dir=str(tmp_path / "x"), homographs=200))
    with pytest.raises((StageError, ValueError), match="homographs"):
        generate(SyntheticConfig(out_dir=str(tmp_path / "x"), homographs=-1))
    with pytest.raises(StageError, match="cola_max_words=4 leaves no CoLA sentence"):
        generate(SyntheticConfig(out_dir=str(tmp_path / "x"), cola_max_words=4))
    for n in (0, 6):
        with pytest.raises(StageError, match=f"cola_errors={n} must lie in 1..5"):
            generate(SyntheticConfig(out_dir=str(tmp_path / "x"), cola_errors=n))


def test_cola_max_words_bounds_the_sentences(world, tmp_path):
    """Words are what is left after punctuation; the default world has longer sentences than the cap."""
    def lengths(w):
        return [len(re.findall(r"[A-Za-z]+", r[3])) for split in ("train", "dev") for r in _task_rows(w, "cola", split)[1]]
    assert max(lengths(world)) > 8
    short = generate(SyntheticConfig(out_dir=str(tmp_path / "short"), **dict(SMALL, cola_max_words=8)))
    got = lengths(short)
    assert min(got) >= 5 and max(got) == 8 and len(got) == SMALL["train_size"] + SMALL["dev_size"]



def test_later_cola_errors_read_heads_in_the_sentence_as_realized():
    """A drop after a duplication: "the the dog is red ." (heads index the realized sentence) may lose
    either "the", since each one's head in the original is the singular "dog"; looked up in the edited
    list, index 1 would be the second "the" and no determiner would look droppable."""
    original = [["the", "the", "DET", "_", 1, "det"], ["dog", "dog", "NOUN", "Number=Sing", 3, "nsubj"],
                ["is", "be", "AUX", "Number=Sing", 3, "cop"], ["red", "red", "ADJ", "_", -1, "root"],
                [".", ".", "PUNCT", "_", 3, "punct"]]
    dup = [original[0]] + original
    lex = Lexicon(SyntheticConfig(out_dir="unused", **SMALL))
    seen = set()
    for seed in range(20):
        got = _corrupt_tokens(random.Random(seed), dup, original, "drop", lex)
        seen.add(" ".join(t[0] for t in got))
    # dropping either "the" restores the sentence; dropping "is" is the other drop
    assert seen == {"the dog is red .", "the the dog red ."}


def test_extra_cola_errors_add_errors_but_no_length_cue(world, tmp_path):
    """Extra errors are drops, duplications or swaps in equal shares: bad sentences hold more of them (here:
    more adjacent repeated words, the trace of a duplication) but are as long as the sentence they were made
    from, on average (if extra errors only added words, length would give bad sentences away: +1.7 words
    with 3 errors)."""
    def repeated(w):
        rows = [r for split in ("train", "dev") for r in _task_rows(w, "cola", split)[1]]
        texts = {lab: [r[3].lower().rstrip(".").split() for r in rows if r[1] == lab] for lab in ("0", "1")}
        return {lab: sum(any(a == b for a, b in itertools.pairwise(t)) for t in ts) / len(ts)
                for lab, ts in texts.items()}
    one = repeated(world)
    three = repeated(generate(SyntheticConfig(out_dir=str(tmp_path / "w"), **dict(SMALL, cola_errors=3))))
    assert one["1"] < 0.02 and three["1"] < 0.02        # a good sentence rarely repeats a word ("that that")
    assert three["0"] > 1.5 * one["0"], (one, three)

    def length_change(errors):
        cfg = SyntheticConfig(out_dir="unused", **dict(SMALL, cola_errors=errors))
        lex, rng = Lexicon(cfg), random.Random(1)
        grammar, real = Grammar(lex, rng, COLA_PROFILE, cfg), RealizerE(lex)
        changes = []
        for _ in range(600):
            grammar.new_document()
            s = grammar.sentence()
            before = _words(real.sentence(s))
            bad = _cola_bad(rng, s, real, lex, cfg)
            if bad is not None:
                changes.append(_words(bad[0]) - before)
        assert len(changes) > 400
        return sum(changes) / len(changes)
    assert abs(length_change(1)) < 0.15 and abs(length_change(3)) < 0.5


# --- homographs and the evaluation-suite extras -----------------------------------------------------
def _lexicon(world) -> list[list[str]]:
    return _tsv(os.path.join(world.out_dir, "lexicon.tsv"))[1:]


def _vocabulary(world, lang: str) -> set[str]:
    """Every word of language "E" or "S": the corpus's types and all lexicon forms (rare ones may miss a
    small corpus)."""
    col = 3 if lang == "E" else 4
    return _types(world.corpora[lang]) | {f for row in _lexicon(world) for f in row[col].split()}


def _e_forms_by_base(world, category: str) -> dict[str, list[set[str]]]:
    """Base form -> the form sets of the lexemes written with it (two for a homograph pair)."""
    out: dict[str, list[set[str]]] = {}
    for row in _lexicon(world):
        if row[0] == category:
            forms = row[3].split()
            out.setdefault(forms[0], []).append(set(forms))
    return out


@pytest.fixture(scope="module")
def world_without_homographs(tmp_path_factory):
    return generate(SyntheticConfig(out_dir=str(tmp_path_factory.mktemp("synthetic0") / "world"),
                                    **dict(SMALL, homographs=0)))


def test_homographs_change_only_the_forms_of_their_lexemes(world, world_without_homographs):
    """Checked once by hand: with homographs=0 every file the generator wrote before homographs existed
    (corpora, GLUE folders, CoNLL-U, lexicon; this SMALL config and the default one) has the same sha256 as
    then. Here: homographs re-spell some E lexemes and change nothing else."""
    w1, w0 = world, world_without_homographs
    assert w0.wic_dir is None and not os.path.exists(os.path.join(w0.out_dir, "wic"))
    pairs = w1.stats["homographs"]
    assert len(pairs) == SyntheticConfig(out_dir="x").homographs and w0.stats["homographs"] == []
    # the lexicon: the same rows, but the second lexeme of each pair takes the first one's E forms
    respelled = {}
    for r0, r1 in zip(_lexicon(w0), _lexicon(w1), strict=True):
        assert r0[:3] + r0[4:] == r1[:3] + r1[4:]
        if r0[3] != r1[3]:
            respelled.update(zip(r0[3].split(), r1[3].split()))
            assert any(p["category"] == r0[0] and int(r0[1]) == p["ranks"][1] for p in pairs)
    assert len({v for v in respelled.values()}) == len(respelled) >= 2 * len(pairs)
    # S untouched; E: the same text but for the re-spelled forms (and "a"/"an" before them)
    assert Path(w0.corpora["S"]).read_bytes() == Path(w1.corpora["S"]).read_bytes()
    tok = re.compile(r"\w+|[^\w\s]")
    lines0 = Path(w0.corpora["E"]).read_text(encoding="utf-8").split("\n")
    lines1 = Path(w1.corpora["E"]).read_text(encoding="utf-8").split("\n")
    assert len(lines0) == len(lines1)
    changed = 0
    for a, b in zip(lines0, lines1):
        if a == b:
            continue
        changed += 1
        ta, tb = tok.findall(a.lower()), tok.findall(b.lower())
        assert len(ta) == len(tb)
        for x, y in zip(ta, tb):
            assert x == y or respelled.get(x) == y or {x, y} == {"a", "an"}, (x, y)
    assert changed > 0
    # the homographs are in the E corpus, with both animacies for every noun pair
    types = _types(w1.corpora["E"])
    assert all(p["lemma"] in types for p in pairs)
    assert all(sorted(p["animate"]) == [False, True] for p in pairs if p["category"] == "noun")
    assert {p["category"] for p in pairs} == {"noun", "tverb"}


def test_homographs_touch_the_world_only_through_their_own_step(world_without_homographs, tmp_path, monkeypatch):
    """With the homograph step skipped, a config asking for homographs writes the homographs=0 corpus: the
    knob draws nothing from the other streams."""
    import synthetic

    monkeypatch.setattr(synthetic.Lexicon, "_make_homographs", lambda self, cfg: None)
    cfg = SyntheticConfig(out_dir=str(tmp_path), **SMALL)
    assert cfg.homographs > 0
    synthetic._write_corpus(tmp_path / "corpus_E.txt", synthetic.Lexicon(cfg), cfg, "E", cfg.english_tokens)
    assert (tmp_path / "corpus_E.txt").read_bytes() == Path(world_without_homographs.corpora["E"]).read_bytes()


def test_conllu_lemmas_keep_homographs_apart(world):
    homographs = {p["lemma"] for p in world.stats["homographs"]}
    seen = set()
    for path in world.conllu.values():
        for line in Path(path).read_text(encoding="utf-8").split("\n"):
            cols = line.split("\t")
            if len(cols) == 10 and cols[3] in ("NOUN", "VERB"):
                base, _, sense = cols[2].rpartition("-")
                if base in homographs:
                    assert sense in ("1", "2")
                    seen.add(cols[2])
                else:
                    assert "-" not in cols[2]
    assert len(seen) > len(homographs)


def _wic_rows(world, split: str) -> tuple[list[list[str]], list[str]]:
    folder = Path(world.wic_dir, split)
    data = _tsv(str(folder / f"{split}.data.txt"))
    gold = (folder / f"{split}.gold.txt").read_text(encoding="utf-8").split("\n")
    assert gold[-1] == ""
    return data, gold[:-1]


def test_wic_files_have_the_official_layout(world):
    forms = {"N": _e_forms_by_base(world, "noun"), "V": _e_forms_by_base(world, "tverb")}
    lemmas = set()
    for split, n in (("train", SMALL["train_size"]), ("dev", SMALL["dev_size"])):
        data, gold = _wic_rows(world, split)
        assert len(data) == len(gold) == n
        assert set(gold) == {"T", "F"} and gold.count("T") == n // 2 + n % 2
        for row in data:
            assert len(row) == 5
            lemma, pos, ij, s1, s2 = row
            assert pos in ("N", "V") and re.fullmatch(r"\d+-\d+", ij)
            i, j = map(int, ij.split("-"))
            senses = forms[pos][lemma]
            assert len(senses) == 2 and senses[0] == senses[1]     # a real homograph: two lexemes, one spelling
            for sent, k in ((s1, i), (s2, j)):
                toks = sent.split(" ")
                assert all(toks) and toks[-1] == "." and toks[0][0].isupper()
                assert all(t in (",", ".") or re.fullmatch(r"\w+", t) for t in toks)   # punctuation apart
                assert toks[k].lower() in senses[0]
                assert sum(t.lower() in senses[0] for t in toks) == 1
            lemmas.add(lemma)
    assert lemmas == {p["lemma"] for p in world.stats["homographs"]}
    st = world.stats["tasks"]["wic"]
    assert st["dev"]["positive_rate"] == 0.5 and st["baselines"]["overlap"] < 0.7


def test_wic_labels_follow_the_lexemes(world):
    """T pairs use one lexeme twice, F pairs the two of a homograph pair; the files are these examples."""
    cfg = SyntheticConfig(out_dir=world.out_dir, **SMALL)
    lex = Lexicon(cfg)
    splits, _ = _wic(lex, cfg)
    pair_of = {}
    for cat, a, b in lex.homograph_pairs:
        pair_of[(cat, a)] = pair_of[(cat, b)] = (a, b)
    senses_t = set()
    for split, exs in splits.items():
        data, gold = _wic_rows(world, split)
        assert [[ex["lemma"], ex["pos"], f"{ex['i']}-{ex['j']}", ex["text"], ex["text2"]] for ex in exs] == data
        assert ["T" if ex["label"] else "F" for ex in exs] == gold
        for ex in exs:
            cat, x, y = ex["lexemes"]
            assert pair_of[(cat, x)] == pair_of[(cat, y)]
            assert (x == y) == (ex["label"] == 1)
            if x == y:
                senses_t.add((cat, x))
            if cat == "noun":   # only animate nouns are subjects of verbs
                for lexeme, slot in zip((x, y), ex["slots"]):
                    if slot in ("subj_tr", "subj_in", "agent"):
                        assert lex.animate[lexeme]
    assert len(senses_t) == 2 * len(lex.homograph_pairs)   # T pairs of both senses


def _scandisent_rows(path: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.mark.parametrize("stem", ["S", "en"])
def test_scandisent_csv_layout_and_balance(world, stem):
    cfg = SyntheticConfig(out_dir="x")
    n_train, n_eval = cfg.scandisent_train, cfg.scandisent_eval
    path = world.scandisent[stem]
    assert path == os.path.join(world.out_dir, "scandisent", f"{stem}.csv")
    assert Path(path).read_text(encoding="utf-8").startswith("text,label\n")
    header, rows = _scandisent_rows(path)
    assert header == ["text", "label"] and len(rows) == n_train + n_eval
    assert all(len(r) == 2 and r[1] in ("0", "1") and r[0] == r[0].strip() and r[0].endswith(".") for r in rows)
    for part in (rows[:n_train], rows[n_train:]):
        assert sum(r[1] == "1" for r in part) == len(part) - len(part) // 2   # balanced
        assert 0.4 < sum(r[1] == "1" for r in part[: len(part) // 2]) / (len(part) // 2) < 0.6   # shuffled
    assert any("," in r[0] for r in rows)            # contrast sentences: quoting matters
    assert len({r[0] for r in rows}) == len(rows)    # no text in both parts
    words = set(re.findall(r"\w+", " ".join(r[0] for r in rows).lower()))
    e, s = _vocabulary(world, "E"), _vocabulary(world, "S")
    assert words <= (s if stem == "S" else e) and not words & (e if stem == "S" else s)
    st = world.stats["tasks"][f"scandisent_{stem}"]
    assert st["train"]["positive_rate"] == st["eval"]["positive_rate"] == 0.5
    assert st["baselines"]["bow"] < 0.8


def test_stsb_layout_and_scores_fall_with_edits(world):
    header = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
              "score"]
    s_types, e_types = _vocabulary(world, "S"), _vocabulary(world, "E")
    by_edits: dict[int, list[float]] = {}
    for split, n in (("train", SMALL["train_size"]), ("dev", SMALL["dev_size"])):
        rows = _tsv(os.path.join(world.stsb_dir, f"{split}.tsv"))
        assert rows[0] == header and len(rows) == n + 1
        for k, r in enumerate(rows[1:]):
            assert len(r) == 10 and r[0] == str(k)
            assert re.fullmatch(r"\d\.\d{3}", r[9]) and 0.0 <= float(r[9]) <= 5.0
            words = set(re.findall(r"\w+", (r[7] + " " + r[8]).lower()))
            assert words <= s_types and not words & e_types
            edits = r[2].split("+")
            if edits == ["unrelated"]:
                assert float(r[9]) <= 0.6
                continue
            m = 0 if edits == ["none"] else len(edits)
            if m == 0:
                assert r[7] == r[8] and float(r[9]) >= 4.4
            else:
                assert r[7] != r[8]
            by_edits.setdefault(m, []).append(float(r[9]))
    means = [sum(by_edits[m]) / len(by_edits[m]) for m in sorted(by_edits)]
    assert sorted(by_edits) == [0, 1, 2, 3, 4]
    assert all(a > b + 0.3 for a, b in zip(means, means[1:])), means
    # word overlap ranks the pairs only roughly
    assert 0.3 < world.stats["tasks"]["stsb_S"]["baselines"]["overlap_spearman"] < 0.85


def test_axg_minimal_pairs(world):
    lines = Path(world.axg).read_text(encoding="utf-8").split("\n")
    assert world.axg == os.path.join(world.out_dir, "superglue", "AX-g", "AX-g.jsonl") and lines[-1] == ""
    exs = [json.loads(ln) for ln in lines[:-1]]
    n_pairs = SyntheticConfig(out_dir="x").axg_pairs
    assert len(exs) == 2 * n_pairs
    assert [ex["idx"] for ex in exs] == list(range(len(exs)))
    by_pair: dict[int, list[dict]] = {}
    for ex in exs:
        assert list(ex) == ["premise", "hypothesis", "label", "idx", "pair_id"]
        assert ex["label"] in ("entailment", "not_entailment")
        by_pair.setdefault(ex["pair_id"], []).append(ex)
    assert sorted(by_pair) == list(range(n_pairs))
    for pair in by_pair.values():
        assert len(pair) == 2
        m, f = pair
        assert m["label"] == f["label"] and m["hypothesis"] == f["hypothesis"]
        pm, pf = m["premise"].split(), f["premise"].split()
        assert len(pm) == len(pf)
        diff = [(a, b) for a, b in zip(pm, pf) if a != b]
        assert diff == [AXG_PRONOUNS]
        assert pm[2] in AXG_FRAMES
        # the hypothesis is one of the two participants doing what the pronoun's clause says
        hyp = f["hypothesis"].split()
        assert hyp[1] in (pm[1], pm[4]) and pm[7:] == hyp[2:]
    assert sum(ex["label"] == "entailment" for ex in exs) == 2 * (n_pairs - n_pairs // 2)
    # pronouns and frame verbs exist only here
    assert not (set(AXG_PRONOUNS) | set(AXG_FRAMES)) & _types(world.corpora["E"])
    assert world.stats["tasks"]["axg"]["baselines"]["first_mention"] < 0.65


def test_manifest_lists_the_new_outputs(world):
    m = json.loads(Path(world.out_dir, "manifest.json").read_text(encoding="utf-8"))
    assert m["version"] == 2
    out = m["outputs"]
    assert out["wic_dir"] == world.wic_dir and out["stsb_dir"] == world.stsb_dir and out["axg"] == world.axg
    assert out["scandisent"] == world.scandisent == {
        stem: os.path.join(world.out_dir, "scandisent", f"{stem}.csv") for stem in ("S", "en")}
    assert {"wic", "scandisent_S", "scandisent_en", "stsb_S", "axg"} <= set(m["stats"]["tasks"])
