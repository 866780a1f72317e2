"""The GLUE-format tasks in E: CoLA, SST-2 and RTE examples, drawn so that structure decides each label,
and their official TSV layouts."""
from __future__ import annotations

import copy
import random

from synthetic.config import SyntheticConfig
from synthetic.grammar import COLA_PROFILE, RTE_PROFILE, SST_PROFILE, NP, Clause, Grammar, Sentence
from synthetic.lexicon import DEG_ADJ_IDS, VERB_DEGREES, Lexicon
from synthetic.realisation import RealizerE, _words, detok
from synthetic.tasks_common import _splits


# --- CoLA -----------------------------------------------------------------------------------------
def _cola_bad(rng: random.Random, s: Sentence, real: RealizerE, lex: Lexicon, cfg: SyntheticConfig):
    """Corrupt sentence `s`; returns (tokens, kind) or None when the drawn kind does not apply.

    Agreement errors keep the bag of words distribution (number is 50/50, so flipping it is invisible to
    counts); swaps keep the bag exactly; drops and duplications of function words balance each other's
    length change. So no single word and no length tells a bad sentence from a good one.
    """
    if rng.random() < cfg.cola_agreement_share:
        long_distance = rng.random() < cfg.cola_long_distance_share
        targets = []
        for c in s.clauses:
            attractor = c.subj.pp is not None or c.subj.rc is not None
            if attractor == long_distance:
                targets.append(("clause", c))
            if not long_distance:
                for np in _nps(c):
                    if np.rc is not None:
                        targets.append(("rc", np.rc))
                    if np.det in ("prox", "dist"):
                        targets.append(("det", np))
        if not targets:
            return None
        what, obj = targets[int(rng.random() * len(targets))]
        if what == "det":
            obj.detflip = True
        else:
            obj.vflip = True
        original = real.sentence(s)
        toks = original
        kind = "long_agreement" if long_distance else ("det_agreement" if what == "det" else "agreement")
    else:
        original = real.sentence(s)
        kind = ("swap", "drop", "dup")[int(rng.random() * 3)]
        toks = _corrupt_tokens(rng, original, original, kind, lex)
    # further order/drop/duplicate errors (cola_errors > 1); the example keeps the first error's kind
    for _ in range(cfg.cola_errors - 1):
        if toks is None:
            break
        toks = _corrupt_tokens(rng, toks, original, ("swap", "drop", "dup")[int(rng.random() * 3)], lex)
    if toks is None or (cfg.cola_errors > 1 and [t[0] for t in toks] == [t[0] for t in original]):
        return None   # no place for an error, or a later edit undid an earlier one (a swap swapped back)
    return toks, kind


def _corrupt_tokens(rng: random.Random, toks: list, original: list, kind: str, lex: Lexicon) -> list | None:
    """One order/drop/duplicate error in `toks` (the final token is the full stop), or None if none applies.

    `original` is the sentence as realized: token heads (t[4]) index into it, so `_droppable` stays right
    after earlier edits have shifted positions.
    """
    manner = {f[0] for f in lex.adv_e}
    body = toks[:-1]
    if kind == "swap":
        cands = []
        for i in range(len(body) - 1):
            a, b = body[i], body[i + 1]
            if a[2] == "PUNCT" or b[2] == "PUNCT" or a[2] == b[2]:
                continue
            if a[2] in ("ADV", "PART") and b[2] in ("ADV", "PART"):
                continue      # "not really" / "really not" are both fine English
            if a[0] in manner or b[0] in manner or (a[2] == "AUX" and b[0] == "never"):
                continue      # "quickly runs", "never is": acceptable in English though not in our grammar
            cands.append(i)
        if not cands:
            return None
        i = cands[int(rng.random() * len(cands))]
        return body[:i] + [body[i + 1], body[i]] + body[i + 2:] + toks[-1:]
    if kind == "drop":
        cands = [i for i, t in enumerate(body) if _droppable(t, original)]
        if not cands:
            return None
        i = cands[int(rng.random() * len(cands))]
        return body[:i] + body[i + 1:] + toks[-1:]
    cands = [i for i, t in enumerate(body) if t[2] in ("DET", "AUX", "ADP", "CCONJ", "SCONJ")
             or (t[2] == "PRON")]
    if not cands:
        return None
    i = cands[int(rng.random() * len(cands))]
    return body[: i + 1] + [body[i]] + body[i + 1:] + toks[-1:]


def _droppable(t, toks) -> bool:
    """Function words whose absence is ungrammatical: determiner of a singular noun, auxiliaries and
    copulas, prepositions, subject relativizer "that" (an object "that" may be dropped in English)."""
    if t[2] == "DET":
        return toks[t[4]][3] == "Number=Sing"
    if t[2] in ("AUX", "ADP"):
        return True
    return t[2] == "PRON" and t[5] == "nsubj"


def _nps(c: Clause) -> list[NP]:
    out = []
    for np in (c.subj, c.obj):
        if np is not None:
            out.append(np)
            if np.pp is not None:
                out.append(np.pp[1])
            if np.rc is not None and np.rc.other is not None:
                out.append(np.rc.other)
    if c.pp is not None:
        out.append(c.pp[1])
    return out


def _cola(lex: Lexicon, cfg: SyntheticConfig) -> tuple[dict, dict]:
    rng = random.Random(f"{cfg.seed}:cola")
    grammar = Grammar(lex, rng, COLA_PROFILE, cfg)
    real = RealizerE(lex)

    def make(label):
        grammar.new_document()
        s = grammar.sentence()
        if label == 1:
            toks, kind = real.sentence(s), "good"
        else:
            bad = _cola_bad(rng, s, real, lex, cfg)
            if bad is None:
                return None
            toks, kind = bad
        if not 5 <= _words(toks) <= cfg.cola_max_words:
            return None
        text = detok([t[0] for t in toks])
        return {"key": text, "text": text, "label": label, "kind": kind}

    return _splits(rng, cfg, make, lambda ex: [ex["kind"]])


def _cola_tsv(exs: list) -> str:
    # official CoLA: no header; source, label, original mark ("*" for unacceptable), sentence
    return "".join(f"syn01\t{ex['label']}\t{'' if ex['label'] else '*'}\t{ex['text']}\n" for ex in exs)


# --- SST-2 ----------------------------------------------------------------------------------------


def _sst_eval_clause(g: Grammar, polarity: int, cfg: SyntheticConfig) -> Clause:
    """A clause whose meaning has `polarity` (+1/-1); under negation its sentiment word has the opposite one."""
    r, lex = g.rng.random, g.lex
    negated = r() < cfg.sst_negation_rate
    lexical = -polarity if negated else polarity
    neg = (2 if r() < 0.25 else 1) if negated else 0
    if r() < 0.6:
        adj = (lex.t_adj_pos if lexical > 0 else lex.t_adj_neg).draw(g.rng)
        c = Clause("cop", g.np(r() < 0.5), adj, None, neg)
        if r() < 0.45:
            c.deg = DEG_ADJ_IDS[int(r() * len(DEG_ADJ_IDS))]
    else:
        verb = (lex.t_tverb_pos if lexical > 0 else lex.t_tverb_neg).draw(g.rng)
        c = Clause("tr", g.np(True), verb, g.np(r() < 0.5), neg)
        if r() < 0.3:
            c.deg = VERB_DEGREES[int(r() * len(VERB_DEGREES))]
    if r() < 0.05:
        c.pp = (lex.t_prep.draw(g.rng), g.np(r() < 0.5, 1, rc_ok=False))
    return c


def _polar_sentence(g: Grammar, pol: int, cfg: SyntheticConfig) -> tuple[Sentence, str]:
    """A sentence whose meaning has polarity `pol` (+1/-1): one evaluative clause, two in contrast ("A, but B",
    "although A, B": B decides), or one joined with a neutral clause. Shared by SST-2 and ScandiSent."""
    rng = g.rng
    x = rng.random()
    if x < cfg.sst_contrast_rate:
        a, b = _sst_eval_clause(g, -pol, cfg), _sst_eval_clause(g, pol, cfg)
        return Sentence([a, b], "but" if rng.random() < 0.6 else "although"), "contrast"
    if x < cfg.sst_contrast_rate + 0.1:
        e, n = _sst_eval_clause(g, pol, cfg), g.clause()
        return Sentence([e, n] if rng.random() < 0.5 else [n, e], "and"), "with_neutral"
    return Sentence([_sst_eval_clause(g, pol, cfg)]), "single"


def _sst2(lex: Lexicon, cfg: SyntheticConfig) -> tuple[dict, dict]:
    rng = random.Random(f"{cfg.seed}:sst2")
    g = Grammar(lex, rng, SST_PROFILE, cfg)
    real = RealizerE(lex)

    def make(label):
        g.new_document()
        s, kind = _polar_sentence(g, 1 if label == 1 else -1, cfg)
        toks = real.sentence(s)
        if not 4 <= _words(toks) <= 25:
            return None
        text = detok([t[0] for t in toks])
        return {"key": text, "text": text, "label": label, "kind": kind}

    return _splits(rng, cfg, make, lambda ex: [ex["kind"]])


def _sst2_tsv(exs: list) -> str:
    return "sentence\tlabel\n" + "".join(f"{ex['text']}\t{ex['label']}\n" for ex in exs)


# --- RTE ------------------------------------------------------------------------------------------


def _rte_premise(g: Grammar, cfg: SyntheticConfig) -> Clause:
    c = g.clause()
    r = g.rng.random
    c.neg = (2 if r() < 0.25 else 1) if r() < cfg.rte_negation_rate else 0
    c.deg = -1
    return c


# Semantics of the little world, which fixes every RTE label: noun phrases refer to particular things
# ("the big dog" is "the dog"), so deleting a noun's modifier keeps the truth; a clause-level adverb or
# adjunct may only be deleted outside negation ("does not run quickly" does not entail "does not run");
# plural subjects license "a <noun>" ("the dogs run" entails "a dog runs"), singular ones do not license
# the plural; "never" entails "not" but not the other way round.

def _np_slots(c: Clause) -> list[NP]:
    """Main-clause noun phrases and the ones inside their prepositional phrases (not inside relative clauses)."""
    out = []
    for np in (c.subj, c.obj):
        if np is not None:
            out.append(np)
            if np.pp is not None:
                out.append(np.pp[1])
    return out


def _modifier_drops(c: Clause, negated: bool) -> list:
    """Meaning-preserving deletions available in clause `c` (the premise's negation decides adjuncts)."""
    ops = []
    for np in (c.subj, c.obj):
        if np is None:
            continue
        for j in range(len(np.adjs)):
            ops.append(("adj", np, j))
        if np.pp is not None:
            ops.append(("np_pp", np, None))
        if np.rc is not None:
            ops.append(("rc", np, None))
    if not negated:
        if c.adv >= 0:
            ops.append(("adv", c, None))
        if c.pp is not None:
            ops.append(("clause_pp", c, None))
    return ops


def _apply_drop(op) -> None:
    kind, obj, j = op
    if kind == "adj":
        del obj.adjs[j]
    elif kind in ("np_pp", "clause_pp"):
        obj.pp = None
    elif kind == "rc":
        obj.rc = None
    else:
        obj.adv = -1


def _bare(np: NP, drop_adj: int = -1) -> NP:
    """A copy of `np` without its relative clause (and without adjective `drop_adj`)."""
    out = copy.deepcopy(np)
    out.rc = None
    out.adjs = [a for a in out.adjs if a[0] != drop_adj]
    return out


def _extract_rc(c: Clause) -> Clause | None:
    """The fact a relative clause states, as a clause of its own ("the dog that sees the cat runs" ->
    "the dog sees the cat"): entailed whatever the main clause says."""
    for np in (c.subj, c.obj):
        if np is None or np.rc is None:
            continue
        rc = np.rc
        if rc.kind == "subj":
            return Clause("tr", _bare(np), rc.verb, copy.deepcopy(rc.other), rc.neg)
        if rc.kind == "subj_in":
            return Clause("in", _bare(np), rc.verb, None, rc.neg)
        return Clause("tr", copy.deepcopy(rc.other), rc.verb, _bare(np), rc.neg)
    return None


def _predicate_options(c: Clause) -> list[tuple[NP, int]]:
    """(noun phrase, attributive adjective) pairs that give an entailed "NP is ADJ"."""
    return [(np, a) for np in _np_slots(c) for a, _ in np.adjs]


def _toggle_voice(c: Clause) -> None:
    if c.kind == "tr":
        c.kind, c.subj, c.obj = "pass", c.obj, c.subj
    elif c.kind == "pass" and c.obj is not None:
        c.kind, c.subj, c.obj = "tr", c.obj, c.subj
    c.deg = -1


def _embedded(np: NP) -> list[NP]:
    out = []
    if np.pp is not None:
        out.append(np.pp[1])
    if np.rc is not None and np.rc.other is not None:
        out.append(np.rc.other)
    return out


def _homographs(lex: Lexicon, a: int, b: int) -> bool:
    """Two different nouns that E writes alike: a wrong subject or predicate made of one for the other would
    read exactly like the true statement, so RTE leaves such NPs out (never the case with homographs=0)."""
    return a != b and lex.noun_e[a] is lex.noun_e[b]


MEANING_CHANGES = ("negate", "number", "swap", "move_adj", "wrong_subject", "wrong_predicate")


def _meaning_changes(c: Clause, lex: Lexicon, wrong_predicates: list) -> list[str]:
    """Edits that make the hypothesis not follow. Most keep the bag of words (role swap, wrong subject,
    moved adjective, adjective said of another noun); "negate" and "number" change a word or a form, as
    the entailing "never"->"not" and "a <noun>" edits do, so new words do not give the label away."""
    ops = ["negate"]
    if not c.subj.plural or (c.obj is not None and not c.obj.plural):
        ops.append("number")
    if c.kind in ("tr", "pass") and c.obj is not None:
        # the new subject of an active verb / the new agent must be animate, as the grammar requires
        if lex.animate[c.subj.noun] and lex.animate[c.obj.noun] and c.subj.noun != c.obj.noun:
            ops += ["swap", "swap"]
        if any(all(a != b for b, _ in dst.adjs) for src, dst in ((c.subj, c.obj), (c.obj, c.subj))
               for a, _ in src.adjs):
            ops.append("move_adj")
    if any((c.kind in ("cop", "pass") or lex.animate[x.noun]) and not _homographs(lex, x.noun, c.subj.noun)
           for x in _embedded(c.subj)):
        ops += ["wrong_subject", "wrong_subject"]
    if wrong_predicates:
        ops += ["wrong_predicate", "wrong_predicate"]
    return ops


def _apply_change(op: str, c: Clause, rng: random.Random, lex: Lexicon, wrong_predicates: list):
    """Apply one meaning change in place. Returns what later entailing edits must leave alone: the
    adjective id a "move_adj" moved (deleting it would undo the change) or the NP "number" pluralized
    (turning it into "a <noun>" would make an entailment again)."""
    if op == "negate":
        c.neg = 2 if (c.neg == 1 and rng.random() < 0.3) else (0 if c.neg else (2 if rng.random() < 0.25 else 1))
    elif op == "number":
        cands = [np for np in (c.subj, c.obj) if np is not None and not np.plural]
        np = cands[int(rng.random() * len(cands))]
        np.plural = True
        return np
    elif op == "swap":
        c.subj, c.obj = c.obj, c.subj
    elif op == "move_adj":
        cands = [(src, dst, a) for src, dst in ((c.subj, c.obj), (c.obj, c.subj))
                 for a in src.adjs if all(a[0] != b for b, _ in dst.adjs)]
        src, dst, a = cands[int(rng.random() * len(cands))]
        src.adjs.remove(a)
        dst.adjs.insert(0, a)
        return a[0]
    elif op == "wrong_subject":
        cands = [x for x in _embedded(c.subj) if (c.kind in ("cop", "pass") or lex.animate[x.noun])
                 and not _homographs(lex, x.noun, c.subj.noun)]
        new = copy.deepcopy(cands[int(rng.random() * len(cands))])
        new.rc, new.pp = None, None
        c.subj = new
    elif op == "wrong_predicate":
        c.subj = _bare(wrong_predicates[int(rng.random() * len(wrong_predicates))])
        c.subj.pp = None
    return None


# How often an entailment gets a word-changing edit where a not_entailment gets negation/number: at 1.0
# new words say nothing, but the function words of the edits ("by", "a") lean to entailment; 0.5 balances
# the two (overlap and unigram baselines both near 0.55-0.6).
MIRROR_RATE = 0.5


def _voice_ok(c: Clause) -> bool:
    return c.kind in ("tr", "pass") and c.obj is not None


def _a_noun_candidates(hyp: Clause, prem: Clause, keep) -> list[NP]:
    """Plural NPs that may become "a <noun>": not the one a "number" change pluralized, and objects only
    outside negation ("does not see a dog" means "sees no dog")."""
    return [np for np in (hyp.subj, hyp.obj) if np is not None and np.plural and np is not keep
            and (np is hyp.subj or not (prem.neg or hyp.neg))]


def _entailing_edit(op: str, hyp: Clause, prem: Clause, keep, rng: random.Random, ops: list) -> None:
    if op == "voice":
        _toggle_voice(hyp)
    elif op == "never_not":
        hyp.neg = 1
    else:
        cands = _a_noun_candidates(hyp, prem, keep)
        np = cands[int(rng.random() * len(cands))]
        np.plural, np.det = False, "indef"
    ops.append(op)


def _rte_hypothesis(label: int, prem: Clause, rng: random.Random, lex: Lexicon, cfg: SyntheticConfig):
    """Premise: one clause. Hypothesis: the premise after entailing edits (deleting modifiers, active <->
    passive, stating a relative clause's fact or an adjective as "NP is ADJ", "never" -> "not", plural ->
    "a <noun>"), drawn the same way in both classes; a not_entailment hypothesis gets exactly one meaning
    change on top. So lexical overlap and length do not decide the label: who did what to whom, which
    noun an adjective belongs to, negation and number do. Returns (hypothesis clause, op names)."""
    hyp = copy.deepcopy(prem)
    ops = []
    wrong_predicates = []
    # 1. maybe say something the premise only implies; first, so that a meaning change applies to it
    if rng.random() < 0.35:
        choices = []
        if _extract_rc(hyp) is not None:
            choices.append("extract_rc")
        if _predicate_options(hyp):
            choices.append("predicate")
        if choices:
            op = choices[int(rng.random() * len(choices))]
            if op == "extract_rc":
                hyp = _extract_rc(hyp)
            else:
                slots = _np_slots(hyp)
                opts = _predicate_options(hyp)
                np, adj = opts[int(rng.random() * len(opts))]
                wrong_predicates = [x for x in slots if x.noun != np.noun and not _homographs(lex, x.noun, np.noun)
                                    and all(adj != b for b, _ in x.adjs)]
                hyp = Clause("cop", _bare(np, drop_adj=adj), adj)   # true even if the premise is negated
            ops.append(op)
    # 2. not_entailment: exactly one meaning change. Bag-preserving ones (rte_hard_share) leave the words
    #    alone; "negate" and "number" change some, so an entailment gets, in the same share, one entailing
    #    edit that changes words too: new words then do not mark a non-entailment.
    keep = None
    hard = rng.random() < cfg.rte_hard_share
    if label == 0:
        changes = _meaning_changes(hyp, lex, wrong_predicates)
        hard_changes = [c for c in changes if c not in ("negate", "number")]
        changes = hard_changes if (hard and hard_changes) else [c for c in changes if c in ("negate", "number")]
        op = changes[int(rng.random() * len(changes))]
        keep = _apply_change(op, hyp, rng, lex, wrong_predicates)
        ops.append(op)
    elif not hard and rng.random() < MIRROR_RATE:
        edits = [e for e, ok in (("voice", _voice_ok(hyp)), ("never_not", prem.neg == 2 and hyp.neg == 2),
                                 ("never_not", prem.neg == 2 and hyp.neg == 2),
                                 ("a_noun", bool(_a_noun_candidates(hyp, prem, None))),
                                 ("a_noun", bool(_a_noun_candidates(hyp, prem, None)))) if ok]
        if edits:
            _entailing_edit(edits[int(rng.random() * len(edits))], hyp, prem, None, rng, ops)
    # 3. entailing edits, drawn the same way in both classes
    if rng.random() < cfg.rte_voice_rate and _voice_ok(hyp):
        _entailing_edit("voice", hyp, prem, keep, rng, ops)
    if prem.neg == 2 and hyp.neg == 2 and rng.random() < 0.5:
        _entailing_edit("never_not", hyp, prem, keep, rng, ops)
    if rng.random() < 0.25 and _a_noun_candidates(hyp, prem, keep):
        _entailing_edit("a_noun", hyp, prem, keep, rng, ops)
    drops = [d for d in _modifier_drops(hyp, prem.neg != 0) if not (d[0] == "adj" and d[1].adjs[d[2]][0] == keep)]
    want = 1 + (rng.random() < 0.4) - ("extract_rc" in ops or "predicate" in ops) - ("wrong_subject" in ops)
    rng.shuffle(drops)
    # two adjectives of one NP: delete the later one first so the earlier index stays valid
    for d in sorted(drops[:max(0, want)], key=lambda d: -(d[2] or 0)):
        _apply_drop(d)
        ops.append("drop_" + d[0])
    return hyp, ops


def _rte(lex: Lexicon, cfg: SyntheticConfig) -> tuple[dict, dict]:
    rng = random.Random(f"{cfg.seed}:rte")
    g = Grammar(lex, rng, RTE_PROFILE, cfg)
    real = RealizerE(lex)

    def make(label):
        g.new_document()
        prem = _rte_premise(g, cfg)
        ptoks = real.sentence(Sentence([prem]))
        if not 5 <= _words(ptoks) <= 15:
            return None
        hyp, ops = _rte_hypothesis(label, prem, rng, lex, cfg)
        htoks = real.sentence(Sentence([hyp]))
        p, h = detok([t[0] for t in ptoks]), detok([t[0] for t in htoks])
        if p == h or _words(htoks) < 3:
            return None
        return {"key": p + "\t" + h, "text": p, "text2": h, "label": label, "ops": ops}

    def rte_kinds(ex) -> list[str]:
        ops = ex.pop("ops")
        out = ["not_entailment:" + [o for o in ops if o in MEANING_CHANGES][0]] if ex["label"] == 0 else []
        return out + ["edit:" + o for o in ops if o not in MEANING_CHANGES]

    return _splits(rng, cfg, make, rte_kinds)


def _rte_tsv(exs: list) -> str:
    rows = [f"{i}\t{ex['text']}\t{ex['text2']}\t{'entailment' if ex['label'] else 'not_entailment'}\n"
            for i, ex in enumerate(exs)]
    return "index\tsentence1\tsentence2\tlabel\n" + "".join(rows)
