"""The rest of the evaluation suite: gold CoNLL-U trees of E, WiC (E), ScandiSent (S and E), STS-B (S) and
AX-g (E), each from its own random stream, with their file layouts and stats."""
from __future__ import annotations

import copy
import csv
import io
import json
import random
from bisect import bisect_right
from itertools import accumulate

from stages.common import StageError
from synthetic.baselines import _overlap_baseline
from synthetic.config import SyntheticConfig
from synthetic.glue_tasks import _apply_drop, _modifier_drops, _polar_sentence, _toggle_voice, _voice_ok
from synthetic.grammar import BASE_PROFILE, SST_PROFILE, Clause, Grammar, Sentence
from synthetic.lexicon import DEG_ADJ_IDS, DET_KEYS, VERB_DEGREES, Lexicon
from synthetic.realisation import RealizerE, RealizerS, _surface_forms, _words, detok
from synthetic.tasks_common import _balanced_labels, _unique_examples


# --- CoNLL-U --------------------------------------------------------------------------------------
def conllu_block(sent_id: str, toks: list[list]) -> str:
    forms = [t[0] for t in toks]
    text = detok(forms)
    lines = [f"# sent_id = {sent_id}", f"# text = {text}"]
    for i, t in enumerate(toks):
        form = t[0][:1].upper() + t[0][1:] if i == 0 else t[0]
        space = "SpaceAfter=No" if i + 1 < len(toks) and toks[i + 1][2] == "PUNCT" else "_"
        lines.append("\t".join([str(i + 1), form, t[1], t[2], "_", t[3], str(t[4] + 1), t[5], "_", space]))
    return "\n".join(lines) + "\n\n"


def _treebank(lex: Lexicon, cfg: SyntheticConfig, split: str, n: int) -> str:
    rng = random.Random(f"{cfg.seed}:conllu_{split}")
    grammar = Grammar(lex, rng, BASE_PROFILE, cfg)
    real = RealizerE(lex)
    blocks = []
    while len(blocks) < n:
        grammar.new_document()
        toks = real.sentence(grammar.sentence())
        if 4 <= _words(toks) <= 30:
            blocks.append(conllu_block(f"syn-{split}-{len(blocks) + 1}", toks))
    return "".join(blocks)


# --- WiC (E) --------------------------------------------------------------------------------------
# Slots a target noun may fill. Only animate nouns are subjects of verbs (active subject, passive agent);
# objects and subjects of copulas and passives may be either, so the slot tells the sense only sometimes
# and the topic of the context does the rest.
WIC_NOUN_SLOTS = {True: ("subj_tr", "subj_in", "agent", "obj", "subj_cop", "subj_pass"),
                  False: ("obj", "subj_cop", "subj_pass")}
WIC_SLOT_KIND = {"subj_tr": "tr", "subj_in": "in", "agent": "pass", "obj": "tr", "subj_cop": "cop", "subj_pass": "pass"}


def _wic_sentence(g: Grammar, real: RealizerE, cat: str, lexeme: int):
    """A sentence in which `lexeme` (a noun or transitive verb) occurs exactly once (no other form of it or
    of its homograph), in a slot its class allows, in a document of its own topic. Returns (tokens with the
    first one capitalized, index of the target, slot) or None."""
    lex, r = g.lex, g.rng.random
    g.topic = lex.topic_of["noun" if cat == "noun" else "tv"][lexeme] if g.n_topics > 1 else -1
    if cat == "noun":
        animate = lex.animate[lexeme]
        slots = WIC_NOUN_SLOTS[animate]
        slot = slots[int(r() * len(slots))]
        c = g.clause(WIC_SLOT_KIND[slot])
        if slot == "agent" and c.obj is None:
            c.obj = g.np(True)
        np = c.obj if slot in ("obj", "agent") else c.subj
        np.noun = lexeme
        if not animate and np.rc is not None and np.rc.kind != "obj":
            np.rc = None          # "the <thing> that sees ..." would break the animacy of subjects
        targets = set(lex.noun_e[lexeme])
    else:
        slot = "active" if r() < 0.7 else "passive"
        c = g.clause("tr" if slot == "active" else "pass")
        c.pred = lexeme
        targets = set(lex.tverb_e[lexeme])
    if r() < 0.3:
        other = g.clause()
        s = Sentence([c, other] if r() < 0.6 else [other, c], "and" if r() < 0.5 else "but")
    else:
        s = Sentence([c])
    toks = real.sentence(s)
    if not 5 <= _words(toks) <= 25:
        return None
    forms = [t[0] for t in toks]
    hits = [i for i, f in enumerate(forms) if f in targets]
    if len(hits) != 1:
        return None
    forms[0] = forms[0][:1].upper() + forms[0][1:]
    return forms, hits[0], slot


def _wic(lex: Lexicon, cfg: SyntheticConfig) -> tuple[dict, dict]:
    """Word-in-context pairs over the homographs: label 1 ("T") when both sentences use the same lexeme,
    0 ("F") when they use the two lexemes that share the form. Balanced; T pairs use either sense equally."""
    rng = random.Random(f"{cfg.seed}:wic")
    g = Grammar(lex, rng, BASE_PROFILE, cfg)
    real = RealizerE(lex)
    pairs = lex.homograph_pairs

    def make(label):
        cat, a, b = pairs[int(rng.random() * len(pairs))]
        first = a if rng.random() < 0.5 else b
        second = first if label == 1 else (b if first == a else a)
        one, two = _wic_sentence(g, real, cat, first), _wic_sentence(g, real, cat, second)
        if one is None or two is None or one[0] == two[0]:
            return None
        (f1, i1, slot1), (f2, i2, slot2) = one, two
        lemma = (lex.noun_e if cat == "noun" else lex.tverb_e)[a][0]
        s1, s2 = " ".join(f1), " ".join(f2)
        return {"key": s1 + "\t" + s2, "text": s1, "text2": s2, "label": label, "lemma": lemma,
                "pos": "N" if cat == "noun" else "V", "i": i1, "j": i2, "lexemes": (cat, first, second),
                "slots": (slot1, slot2)}

    seen: set = set()
    splits, kinds = {}, {}
    for split, n in (("train", cfg.train_size), ("dev", cfg.dev_size)):
        labels = _balanced_labels(rng, n)
        splits[split] = _unique_examples(n, lambda i: make(labels[i]), seen)
        for ex in splits[split]:
            for slot in ex["slots"]:
                k = f"{ex['lexemes'][0]}:{slot}"
                kinds[k] = kinds.get(k, 0) + 1
    return splits, {"slots": dict(sorted(kinds.items()))}


def _wic_files(exs: list) -> tuple[str, str]:
    """Official WiC layout: data lines `lemma POS i-j sentence1 sentence2` and gold lines `T`/`F`."""
    data = "".join(f"{ex['lemma']}\t{ex['pos']}\t{ex['i']}-{ex['j']}\t{ex['text']}\t{ex['text2']}\n" for ex in exs)
    gold = "".join("T\n" if ex["label"] else "F\n" for ex in exs)
    return data, gold


def _wic_stats(splits: dict) -> dict:
    """Sizes and balance, and baselines that see no sense: majority, the overlap regression of RTE, and "T
    iff the target has the same form in both sentences" (inflection is drawn independently of the label).
    Bags of words are left out: separate bags cannot relate the two sentences (they sit at chance)."""
    st = {}
    for split, exs in splits.items():
        lens = [len(ex["text"].split()) + len(ex["text2"].split()) for ex in exs]
        st[split] = {"examples": len(exs), "positive_rate": round(sum(ex["label"] for ex in exs) / len(exs), 4),
                     "mean_words": round(sum(lens) / len(lens), 2), "max_words": max(lens),
                     "lemmas": len({ex["lemma"] for ex in exs})}
    train, dev = splits["train"], splits["dev"]
    majority = 1 if sum(ex["label"] for ex in train) >= len(train) / 2 else 0
    same_form = sum(int((ex["text"].split()[ex["i"]].lower() == ex["text2"].split()[ex["j"]].lower())
                        == bool(ex["label"])) for ex in dev) / len(dev)
    st["baselines"] = {"majority": round(sum(1 for ex in dev if ex["label"] == majority) / len(dev), 4),
                       "overlap": _overlap_baseline(train, dev), "same_form": round(same_form, 4),
                       "grammar_oracle": 1.0}
    return st


# --- ScandiSent (S and E) -------------------------------------------------------------------------
def _scandisent(lex: Lexicon, cfg: SyntheticConfig, lang: str) -> dict:
    """Sentiment "reviews" of one or two sentences in language `lang`: one sentence from the SST-2 polarity
    grammar (negation, contrast), sometimes with a neutral sentence before or after it. Two parts (train
    rows first, then eval rows), each balanced and shuffled, no text repeated."""
    rng = random.Random(f"{cfg.seed}:scandisent_{lang}")
    g = Grammar(lex, rng, SST_PROFILE, cfg)
    forms = _surface_forms(lex, lang)

    def make(label):
        g.new_document()
        s, _kind = _polar_sentence(g, 1 if label == 1 else -1, cfg)
        fs = forms(s)
        n = len(fs) - sum(1 for x in fs if x in (",", "."))
        if not 4 <= n <= 25:
            return None
        parts = [detok(fs)]
        if rng.random() < 0.3:
            extra = detok(forms(g.sentence()))
            parts = [extra] + parts if rng.random() < 0.5 else parts + [extra]
        text = " ".join(parts)
        return {"key": text, "text": text, "label": label}

    seen: set = set()
    out = {}
    for part, n in (("train", cfg.scandisent_train), ("eval", cfg.scandisent_eval)):
        labels = _balanced_labels(rng, n)
        out[part] = _unique_examples(n, lambda i: make(labels[i]), seen)
    return out


def _scandisent_csv(parts: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["text", "label"])
    for part in ("train", "eval"):
        w.writerows([ex["text"], ex["label"]] for ex in parts[part])
    return buf.getvalue()


# --- STS-B (S) ------------------------------------------------------------------------------------
# Similarity points an edit takes off a pair that starts at 5: paraphrase-like edits (voice, degree adverb,
# determiner) cost little though they change words; role swaps cost much though they keep the bag of words.
STS_EDIT_COST = {"voice": 0.1, "degree": 0.2, "determiner": 0.3, "number": 0.5, "drop": 0.6, "adjective": 0.8,
                 "noun": 1.2, "predicate": 1.4, "swap": 1.6, "negate": 1.8}
STS_EDIT_COUNTS = (0.12, 0.28, 0.25, 0.2, 0.15)   # probabilities of 0..4 edits
STS_UNRELATED = 0.12                              # share of pairs of two unrelated sentences (score 0-0.6)
STS_NOISE = 0.15                                  # sd of the Gaussian noise on related pairs' scores
STS_MIN_RELATED = 0.8                             # floor of related pairs' noiseless scores


def _sts_edits(c: Clause, lex: Lexicon) -> list[str]:
    """The edits that apply to clause `c`."""
    nps = [np for np in (c.subj, c.obj) if np is not None]
    ops = ["negate", "predicate", "number", "noun"]
    if any(np.det is not None for np in nps):
        ops.append("determiner")
    if _voice_ok(c):
        ops.append("voice")
        if lex.animate[c.subj.noun] and lex.animate[c.obj.noun] and c.subj.noun != c.obj.noun:
            ops.append("swap")
    if c.kind in ("cop", "tr", "in"):
        ops.append("degree")
    if any(np.adjs for np in nps):
        ops.append("adjective")
    if _modifier_drops(c, False):
        ops.append("drop")
    return ops


def _sts_apply(op: str, c: Clause, g: Grammar) -> None:
    lex, rng = g.lex, g.rng
    r = rng.random
    nps = [np for np in (c.subj, c.obj) if np is not None]
    if op == "negate":
        c.neg = 0 if c.neg else (2 if r() < 0.25 else 1)
    elif op == "determiner":
        np = [x for x in nps if x.det is not None]
        np = np[int(r() * len(np))]
        np.det = [k for k in DET_KEYS if k != np.det][int(r() * (len(DET_KEYS) - 1))]
    elif op == "predicate":
        if c.kind == "cop":
            table, old = lex.t_adj, c.pred
        elif c.kind == "in":
            table, old = lex.t_iverb, c.pred
        else:
            table, old = lex.t_tverb, c.pred
        while c.pred == old:
            c.pred = g.pick(table)
    elif op == "number":
        np = nps[int(r() * len(nps))]
        np.plural = not np.plural
        if np.det is None:
            np.det = "def"
    elif op == "voice":
        _toggle_voice(c)
    elif op == "swap":
        c.subj, c.obj = c.obj, c.subj
    elif op == "degree":
        if c.deg >= 0:
            c.deg = -1
        else:
            c.deg = DEG_ADJ_IDS[int(r() * len(DEG_ADJ_IDS))] if c.kind == "cop" else \
                VERB_DEGREES[int(r() * len(VERB_DEGREES))]
    elif op == "adjective":
        np = [x for x in nps if x.adjs]
        np = np[int(r() * len(np))]
        j = int(r() * len(np.adjs))
        a, deg = np.adjs[j]
        new = a
        while new == a or any(new == b for b, _ in np.adjs):
            new = g.adj()
        np.adjs[j] = (new, deg)
    elif op == "drop":
        drops = _modifier_drops(c, False)
        _apply_drop(drops[int(r() * len(drops))])
    else:   # noun: another noun of the class the slot needs (verb subjects and agents are animate)
        i = int(r() * len(nps))
        np = nps[i]
        needs_animate = (i == 0 and c.kind in ("tr", "in")) or (i == 1 and c.kind == "pass")
        old = np.noun
        while np.noun == old:
            np.noun = g.pick(lex.t_animate if needs_animate else lex.t_noun)


def _stsb(lex: Lexicon, cfg: SyntheticConfig) -> tuple[dict, dict]:
    """Pairs of an S sentence and an edited copy of the same abstract clause; the score falls with the
    number and kind of edits (STS_EDIT_COST), with small noise. Some pairs are unrelated (score near 0)."""
    rng = random.Random(f"{cfg.seed}:stsb")
    g = Grammar(lex, rng, BASE_PROFILE, cfg)
    real = RealizerS(lex)
    count_cum = list(accumulate(STS_EDIT_COUNTS))

    def text(c):
        fs = real.sentence(Sentence([c]))
        return detok(fs), len(fs) - sum(1 for x in fs if x in (",", "."))

    def make(_label):
        g.new_document()
        c = g.clause()
        s1, n1 = text(c)
        if not 4 <= n1 <= 25:
            return None
        if rng.random() < STS_UNRELATED:
            g.new_document()
            s2, n2 = text(g.clause())
            edits, score = ["unrelated"], 0.6 * rng.random()
        else:
            k = bisect_right(count_cum, rng.random() * count_cum[-1])
            d = copy.deepcopy(c)
            edits = []
            for _ in range(k):
                ops = [o for o in _sts_edits(d, lex) if o not in edits]
                op = ops[int(rng.random() * len(ops))]
                _sts_apply(op, d, g)
                edits.append(op)
            s2, n2 = text(d)
            if (s1 == s2) != (k == 0):
                return None
            base = max(STS_MIN_RELATED, 5.0 - sum(STS_EDIT_COST[e] for e in edits))
            score = base + rng.gauss(0.0, STS_NOISE)
            edits = edits or ["none"]
        if not 3 <= n2 <= 25:
            return None
        if rng.random() < 0.5:
            s1, s2 = s2, s1
        score = round(min(5.0, max(0.0, score)), 3)
        return {"key": s1 + "\t" + s2, "text": s1, "text2": s2, "label": score, "edits": edits}

    seen: set = set()
    splits = {}
    for split, n in (("train", cfg.train_size), ("dev", cfg.dev_size)):
        splits[split] = _unique_examples(n, make, seen)
    return splits, {}


def _stsb_tsv(exs: list) -> str:
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    return header + "".join(f"{i}\tmain-synthetic\t{'+'.join(ex['edits'])}\tsyn\t{i:04d}\tnone\tnone\t{ex['text']}\t"
                            f"{ex['text2']}\t{ex['label']:.3f}\n" for i, ex in enumerate(exs))


def _word_set(text: str) -> set[str]:
    return set(text.lower().replace(",", " ").replace(".", " ").split())


def _stsb_stats(splits: dict) -> dict:
    from scipy.stats import spearmanr

    st: dict = {}
    for split, exs in splits.items():
        scores = [ex["label"] for ex in exs]
        hist = [0] * 5
        for s in scores:
            hist[min(4, int(s))] += 1
        by_edits: dict[str, list[float]] = {}
        for ex in exs:
            key = ex["edits"][0] if ex["edits"] in (["unrelated"], ["none"]) else str(len(ex["edits"]))
            key = "0" if key == "none" else key
            by_edits.setdefault(key, []).append(ex["label"])
        st[split] = {"examples": len(exs), "mean_score": round(sum(scores) / len(scores), 3),
                     "score_histogram": {f"{b}-{b + 1}": hist[b] for b in range(5)},
                     "mean_score_by_edits": {k: round(sum(v) / len(v), 3) for k, v in sorted(by_edits.items())},
                     "examples_by_edits": {k: len(v) for k, v in sorted(by_edits.items())}}
    dev = splits["dev"]
    overlap = [len(_word_set(ex["text"]) & _word_set(ex["text2"])) / len(_word_set(ex["text"]) | _word_set(ex["text2"]))
               for ex in dev]
    st["baselines"] = {"overlap_spearman": round(float(spearmanr(overlap, [ex["label"] for ex in dev])[0]), 4)}
    return st


# --- AX-g (E) -------------------------------------------------------------------------------------
# Winogender-style frames: real English words that exist only here (the corpus has no pronouns and no
# clausal complements), like the pronouns.
AXG_FRAMES = ("told", "informed", "reminded", "assured")
AXG_PRONOUNS = ("he", "she")


def _axg(lex: Lexicon, cfg: SyntheticConfig) -> tuple[list, dict]:
    """Minimal pairs "the A told the B that he/she <verb>s the N ." -> "the A|B <verb>s the N .": the male and
    female variant of a pair share the hypothesis and the label. The pronoun refers to the one of A and B
    whose topic the embedded verb belongs to (the world knowledge a model pretrained on E may have picked
    up from topical documents; with topics=1 the gold label is only a convention). The referent is the first
    or the second noun equally often, and both nouns are in the premise, so overlap says nothing."""
    rng = random.Random(f"{cfg.seed}:axg")
    r = rng.random
    topic_n, topic_v = lex.topic_of["noun"], lex.topic_of["tv"]
    homo_n = {x for cat, a, b in lex.homograph_pairs if cat == "noun" for x in (a, b)}
    homo_v = {x for cat, a, b in lex.homograph_pairs if cat == "tverb" for x in (a, b)}
    several = cfg.topics > 1
    labels = _balanced_labels(rng, cfg.axg_pairs)
    out, seen, ref_first = [], set(), 0
    for p, label in enumerate(labels):
        for _attempt in range(1000):
            a, b = lex.t_animate.draw(rng), lex.t_animate.draw(rng)
            if a == b or a in homo_n or b in homo_n or (several and topic_n[a] == topic_n[b]):
                continue
            ref = a if r() < 0.5 else b
            table = lex.t_tverb_neutral.by_topic[topic_n[ref]] if lex.t_tverb_neutral.by_topic else lex.t_tverb_neutral
            verb = table.draw(rng)
            obj_table = lex.t_noun.by_topic[topic_n[ref]] if lex.t_noun.by_topic else lex.t_noun
            n = obj_table.draw(rng)
            if verb in homo_v or (several and topic_v[verb] != topic_n[ref]) or n in (a, b) or n in homo_n:
                continue
            frame = AXG_FRAMES[int(r() * len(AXG_FRAMES))]
            obj = ["the", lex.noun_e[n][1 if r() < 0.3 else 0]]
            v3 = lex.tverb_e[verb][1]
            subj = ref if label == 1 else (b if ref == a else a)
            hyp = detok(["the", lex.noun_e[subj][0], v3] + obj + ["."])
            prem = {pr: detok(["the", lex.noun_e[a][0], frame, "the", lex.noun_e[b][0], "that", pr, v3] + obj + ["."])
                    for pr in AXG_PRONOUNS}
            if prem["he"] not in seen:
                break
        else:
            raise StageError("synthetic: could not draw enough distinct AX-g pairs; lower axg_pairs")
        seen.add(prem["he"])
        ref_first += ref == a
        for pr in AXG_PRONOUNS:
            out.append({"premise": prem[pr], "hypothesis": hyp, "label": "entailment" if label else "not_entailment",
                        "idx": len(out), "pair_id": p})
    first_mention = sum(1 for ex in out if (ex["label"] == "entailment") ==
                        (ex["hypothesis"].split()[1] == ex["premise"].split()[1])) / len(out)
    return out, {"referent_is_first_noun": round(ref_first / cfg.axg_pairs, 4),
                 "baselines": {"majority": round(max(sum(labels), len(labels) - sum(labels)) / len(labels), 4),
                               "first_mention": round(first_mention, 4),
                               "topic_oracle": 1.0 if several else None}}


def _axg_jsonl(exs: list) -> str:
    return "".join(json.dumps(ex) + "\n" for ex in exs)
