"""The entry point: checks the config, writes the corpora, the GLUE tasks, the treebank and the extras, and the
manifest last (or returns at once when the manifest says the world is there)."""
from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from stages.common import StageError, atomic_write, read_json, write_json, write_text
from synthetic.baselines import _task_stats, baselines
from synthetic.config import (GLUE_FOLDERS, MANIFEST, MANIFEST_VERSION, SCANDISENT_LANGS, TASKS, SyntheticConfig,
                              SyntheticResult)
from synthetic.eval_tasks import (_axg, _axg_jsonl, _scandisent, _scandisent_csv, _stsb, _stsb_stats, _stsb_tsv,
                                  _treebank, _wic, _wic_files, _wic_stats)
from synthetic.glue_tasks import _cola, _cola_tsv, _rte, _rte_tsv, _sst2, _sst2_tsv
from synthetic.grammar import BASE_PROFILE, Grammar
from synthetic.lexicon import Lexicon, _function_words_e, _function_words_s
from synthetic.realisation import _surface_forms, detok


# --- corpora --------------------------------------------------------------------------------------
DICTIONARY = "dictionary_S_E.txt"


def _write_corpus(path: Path, lex: Lexicon, cfg: SyntheticConfig, lang: str, target_tokens: int) -> dict:
    """Lines of 1-3 sentences until `target_tokens` words; returns counts for the stats."""
    rng = random.Random(f"{cfg.seed}:corpus_{lang}")
    grammar = Grammar(lex, rng, BASE_PROFILE, cfg)
    forms = _surface_forms(lex, lang)
    n_words = n_sent = n_lines = 0
    types: set[str] = set()
    chunk: list[str] = []
    with atomic_write(path, keep_if_same=True) as f:
        while n_words < target_tokens:
            k = 1 + int(rng.random() * 3)
            grammar.new_document()
            line = []
            for _ in range(k):
                fs = forms(grammar.sentence())
                n_words += len(fs) - sum(1 for x in fs if x in (",", "."))
                types.update(fs)
                line.append(detok(fs))
            n_sent += k
            n_lines += 1
            chunk.append(" ".join(line))
            if len(chunk) >= 5000:
                f.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            f.write("\n".join(chunk) + "\n")
    types -= {",", "."}
    return {"lines": n_lines, "sentences": n_sent, "word_tokens": n_words, "word_types": len(types)}


# --- entry point ----------------------------------------------------------------------------------
def _same_config(stored: dict, cfg: SyntheticConfig) -> bool:
    """Every field but out_dir decides the content (a moved folder still holds the same world); the
    stored side went through JSON, so the live side does too before comparing."""
    live = json.loads(json.dumps(cfg.model_dump()))
    return {k: v for k, v in stored.items() if k != "out_dir"} == {k: v for k, v in live.items() if k != "out_dir"}


def _check(cfg: SyntheticConfig) -> None:
    if cfg.train_size < 10 or cfg.dev_size < 10:
        raise StageError("synthetic: train_size and dev_size must be at least 10")
    if cfg.source_tokens < 1000 or cfg.english_tokens < 1000:
        raise StageError("synthetic: source_tokens and english_tokens must be at least 1000")
    if cfg.topics < 1:
        raise StageError("synthetic: topics must be at least 1 (1 turns topical documents off)")
    for name in ("topic_strength", "label_noise", "cola_agreement_share", "cola_long_distance_share", "sst_negation_rate",
                 "sst_contrast_rate", "rte_negation_rate", "rte_voice_rate", "rte_hard_share"):
        v = getattr(cfg, name)
        if not 0.0 <= v <= 1.0:
            raise StageError(f"synthetic: {name}={v} must lie in [0, 1]")
    if cfg.label_noise >= 0.5:
        raise StageError("synthetic: label_noise >= 0.5 makes the labels meaningless; use a value like 0.05")
    if cfg.sst_contrast_rate > 0.9:
        raise StageError("synthetic: sst_contrast_rate must be at most 0.9 (0.1 goes to 'and' sentences)")
    if cfg.homographs < 0:
        raise StageError("synthetic: homographs must be at least 0 (0: every E form unique, and no WiC)")
    if cfg.scandisent_train < 10 or cfg.scandisent_eval < 10:
        raise StageError("synthetic: scandisent_train and scandisent_eval must be at least 10")
    if cfg.axg_pairs < 2:
        raise StageError("synthetic: axg_pairs must be at least 2")
    if not 1 <= cfg.cola_errors <= 5:
        raise StageError(f"synthetic: cola_errors={cfg.cola_errors} must lie in 1..5 (errors per unacceptable CoLA "
                         "sentence; more than a few leave word salad)")
    if cfg.cola_max_words < 5:
        raise StageError(f"synthetic: cola_max_words={cfg.cola_max_words} leaves no CoLA sentence (they have at least "
                         "5 words); use 5 or more, e.g. 12")


def _result(cfg: SyntheticConfig, stats: dict) -> SyntheticResult:
    out = Path(cfg.out_dir)
    return SyntheticResult(
        out_dir=str(out),
        corpora={"E": str(out / "corpus_E.txt"), "S": str(out / "corpus_S.txt")},
        glue_dir=str(out / "glue"),
        tasks=list(TASKS),
        conllu={s: str(out / "conllu" / f"{s}.conllu") for s in ("train", "dev", "test")},
        wic_dir=str(out / "wic") if cfg.homographs else None,
        scandisent={stem: str(out / "scandisent" / f"{stem}.csv") for stem in SCANDISENT_LANGS.values()},
        stsb_dir=str(out / "stsb_S"),
        axg=str(out / "superglue" / "AX-g" / "AX-g.jsonl"),
        dictionary=str(out / DICTIONARY),
        stats=stats,
    )


def _outputs_exist(res: SyntheticResult) -> bool:
    paths = list(res.corpora.values()) + list(res.conllu.values()) + list(res.scandisent.values()) + [res.axg,
                                                                                                     res.dictionary]
    for t in res.tasks:
        paths += [os.path.join(res.glue_dir, GLUE_FOLDERS[t], f"{s}.tsv") for s in ("train", "dev")]
    paths += [os.path.join(res.stsb_dir, f"{s}.tsv") for s in ("train", "dev")]
    if res.wic_dir is not None:
        paths += [os.path.join(res.wic_dir, s, f"{s}.{kind}.txt") for s in ("train", "dev")
                  for kind in ("data", "gold")]
    return all(os.path.isfile(p) for p in paths)


def _write_extras(out: Path, lex: Lexicon, cfg: SyntheticConfig, stats: dict) -> None:
    """The evaluation-suite extras: WiC (E), ScandiSent (S and E), STS-B (S), AX-g (E), and their stats."""
    if cfg.homographs:
        splits, extra = _wic(lex, cfg)
        for split, exs in splits.items():
            data, gold = _wic_files(exs)
            write_text(out / "wic" / split / f"{split}.data.txt", data, keep_if_same=True)
            write_text(out / "wic" / split / f"{split}.gold.txt", gold, keep_if_same=True)
        stats["tasks"]["wic"] = dict(_wic_stats(splits), **extra)
    stats["homographs"] = []
    for cat, a, b in lex.homograph_pairs:
        forms, lemmas = (lex.noun_e, lex.noun_lemma_e) if cat == "noun" else (lex.tverb_e, lex.tverb_lemma_e)
        h = {"category": cat, "lemma": forms[a][0], "ranks": [a, b], "conllu_lemmas": [lemmas[a], lemmas[b]]}
        if cat == "noun":
            h["animate"] = [lex.animate[a], lex.animate[b]]
        stats["homographs"].append(h)
    for lang, stem in SCANDISENT_LANGS.items():
        parts = _scandisent(lex, cfg, lang)
        write_text(out / "scandisent" / f"{stem}.csv", _scandisent_csv(parts), keep_if_same=True)
        st = {part: {"rows": len(exs), "positive_rate": round(sum(ex["label"] for ex in exs) / len(exs), 4)}
              for part, exs in parts.items()}
        st["train_rows_first"] = len(parts["train"])
        st["baselines"] = baselines(parts["train"], parts["eval"], False)
        stats["tasks"][f"scandisent_{stem}"] = st
    splits, _ = _stsb(lex, cfg)
    for split, exs in splits.items():
        write_text(out / "stsb_S" / f"{split}.tsv", _stsb_tsv(exs), keep_if_same=True)
    stats["tasks"]["stsb_S"] = _stsb_stats(splits)
    exs, extra = _axg(lex, cfg)
    write_text(out / "superglue" / "AX-g" / "AX-g.jsonl", _axg_jsonl(exs), keep_if_same=True)
    entailed = sum(ex["label"] == "entailment" for ex in exs)
    stats["tasks"]["axg"] = dict({"examples": len(exs), "pairs": cfg.axg_pairs,
                                  "entailment_rate": round(entailed / len(exs), 4)}, **extra)


def generate(cfg: SyntheticConfig) -> SyntheticResult:
    """Write the synthetic world into cfg.out_dir, or return at once if a manifest says it is there.

    The manifest is written last, so a crash mid-way leaves no manifest and a rerun starts over; an old
    manifest with another config is removed before anything is overwritten.
    """
    _check(cfg)
    out = Path(cfg.out_dir)
    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        try:
            m = read_json(manifest_path)
        except (OSError, ValueError):
            m = None
        if (isinstance(m, dict) and m.get("version") == MANIFEST_VERSION
                and isinstance(m.get("config"), dict) and _same_config(m["config"], cfg)):
            res = _result(cfg, m.get("stats", {}))
            if _outputs_exist(res):
                return res
        manifest_path.unlink()
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    lex = Lexicon(cfg)
    timing = {}
    stats: dict = {"corpora": {}, "tasks": {}, "lexicon": {}}
    for lang, n in (("E", cfg.english_tokens), ("S", cfg.source_tokens)):
        t = time.perf_counter()
        stats["corpora"][lang] = _write_corpus(out / f"corpus_{lang}.txt", lex, cfg, lang, n)
        timing[f"corpus_{lang}"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    builders = {"cola": (_cola, _cola_tsv, False), "sst2": (_sst2, _sst2_tsv, False), "rte": (_rte, _rte_tsv, True)}
    for task in TASKS:
        build, to_tsv, pair = builders[task]
        splits, extra = build(lex, cfg)
        for split, exs in splits.items():
            write_text(out / "glue" / GLUE_FOLDERS[task] / f"{split}.tsv", to_tsv(exs), keep_if_same=True)
        stats["tasks"][task] = dict(_task_stats(splits, pair), **extra)
        # what a model that knows the grammar scores on dev: every label but the flipped ones
        stats["tasks"][task]["baselines"]["grammar_oracle"] = round(1 - extra["noisy_labels"]["dev"] / cfg.dev_size, 4)
    timing["tasks"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    for split, n in (("train", cfg.train_size), ("dev", cfg.dev_size), ("test", cfg.dev_size)):
        write_text(out / "conllu" / f"{split}.conllu", _treebank(lex, cfg, split, n), keep_if_same=True)
    timing["conllu"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    _write_extras(out, lex, cfg, stats)
    timing["extras"] = round(time.perf_counter() - t, 2)
    write_text(out / "lexicon.tsv", "category\trank\tclass\tE\tS\n" + "".join("\t".join(r) + "\n" for r in lex.rows()),
               keep_if_same=True)
    # WECHSEL's dictionary format: source word <TAB> target word, one pair per line
    write_text(out / DICTIONARY, "".join(f"{s}\t{e}\n" for s, e in lex.dictionary()), keep_if_same=True)
    stats["lexicon"] = {"lexemes": len(lex.rows()), "file": "lexicon.tsv", "dictionary_pairs": len(lex.dictionary()),
                        "function_words_E": len(_function_words_e()), "function_words_S": len(_function_words_s())}
    timing["total"] = round(time.perf_counter() - t0, 2)
    stats["seconds"] = timing
    res = _result(cfg, stats)
    outputs = {"corpora": res.corpora, "glue_dir": res.glue_dir, "tasks": res.tasks, "conllu": res.conllu,
               "lexicon": str(out / "lexicon.tsv"), "wic_dir": res.wic_dir, "scandisent": res.scandisent,
               "stsb_dir": res.stsb_dir, "axg": res.axg, "dictionary": res.dictionary}
    write_json(manifest_path, {"version": MANIFEST_VERSION, "config": cfg.model_dump(), "outputs": outputs,
                               "stats": stats})
    return res
