"""The synthetic bilingual world: deterministic, in the official GLUE layouts, well-formed trees, and tasks
that a bag of words cannot solve."""
from __future__ import annotations

import csv
import dataclasses
import os
import re
from pathlib import Path

import pytest

from stages.common import StageError
from stages.synthetic import SyntheticConfig, generate

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
            "conllu/test.conllu"} <= set(a)


def test_other_seed_gives_other_files(world, tmp_path):
    other = generate(SyntheticConfig(out_dir=str(tmp_path / "other"), **dict(SMALL, seed=4)))
    a, b = _data_files(world.out_dir), _data_files(other.out_dir)
    for rel in ("corpus_E.txt", "corpus_S.txt", "glue/CoLA/train.tsv", "glue/SST-2/dev.tsv",
                "glue/RTE/train.tsv", "conllu/train.conllu"):
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
    generate(dataclasses.replace(cfg, seed=9))
    assert Path(res.corpora["E"]).read_bytes() != good


def test_task_knobs_leave_the_corpora_untouched(tmp_path):
    """Tuning a task must not look like a new corpus to caches keyed by content or mtime."""
    cfg = SyntheticConfig(out_dir=str(tmp_path / "w"), **dict(SMALL, train_size=50, dev_size=20))
    res = generate(cfg)
    corpora = [Path(p) for p in res.corpora.values()]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in corpora}
    sst_before = Path(res.glue_dir, "SST-2", "train.tsv").read_bytes()
    generate(dataclasses.replace(cfg, sentiment_words=4, sst_negation_rate=0.4, rte_hard_share=0.2, label_noise=0.1))
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in corpora} == before
    assert Path(res.glue_dir, "SST-2", "train.tsv").read_bytes() != sst_before


def test_bad_knobs_are_refused(tmp_path):
    with pytest.raises(StageError, match="label_noise"):
        generate(SyntheticConfig(out_dir=str(tmp_path / "x"), label_noise=0.7))
    with pytest.raises(StageError, match="sst_negation_rate"):
        generate(SyntheticConfig(out_dir=str(tmp_path / "x"), sst_negation_rate=1.5))
