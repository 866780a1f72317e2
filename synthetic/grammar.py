"""Abstract sentences (NP, RC, Clause, Sentence), the sampling profiles of the corpora and the tasks, and
the Grammar that draws sentences from them."""
from __future__ import annotations

import random
from bisect import bisect_right
from itertools import accumulate

from synthetic.config import SyntheticConfig
from synthetic.lexicon import DEG_ADJ_IDS, DET_KEYS, DET_WEIGHTS, VERB_DEGREES, Lexicon, _Table


# --- abstract sentences ---------------------------------------------------------------------------
class NP:
    __slots__ = ("noun", "plural", "det", "adjs", "pp", "rc", "detflip")

    def __init__(self, noun, plural, det, adjs, pp=None, rc=None):
        self.noun = noun          # noun lexeme id
        self.plural = plural
        self.det = det            # DET_KEYS entry, or None for a bare plural
        self.adjs = adjs          # list of (adjective id, degree id or -1)
        self.pp = pp              # (preposition id, NP) modifying the noun, or None
        self.rc = rc              # RC or None
        self.detflip = False      # CoLA corruption: determiner in the wrong number


class RC:
    """Relative clause. kind 'subj' ("that sees the cat"), 'subj_in' ("that runs"), 'obj' ("that the cat sees")."""
    __slots__ = ("kind", "verb", "other", "neg", "vflip")

    def __init__(self, kind, verb, other, neg):
        self.kind, self.verb, self.other, self.neg = kind, verb, other, neg
        self.vflip = False        # CoLA corruption: verb disagrees


class Clause:
    """kind 'tr' (pred = transitive verb, obj), 'in' (intransitive), 'cop' (pred = adjective), 'pass' (obj = agent)."""
    __slots__ = ("kind", "subj", "pred", "obj", "neg", "deg", "adv", "pp", "vflip")

    def __init__(self, kind, subj, pred, obj=None, neg=0, deg=-1, adv=-1, pp=None):
        self.kind, self.subj, self.pred, self.obj = kind, subj, pred, obj
        self.neg = neg            # 0, 1 ("not"), 2 ("never")
        self.deg = deg            # degree adverb id before the adjective / verb, or -1
        self.adv = adv            # manner adverb id (clause-final), or -1
        self.pp = pp              # adjunct (preposition id, NP) or None
        self.vflip = False        # CoLA corruption: finite verb disagrees with the subject


class Sentence:
    """One clause, or two joined by 'and' / 'but' ("A, but B.") or 'although' ("Although A, B.")."""
    __slots__ = ("clauses", "conj")

    def __init__(self, clauses, conj=""):
        self.clauses, self.conj = clauses, conj


# Sampling probabilities of the general grammar (corpora, CoNLL-U); tasks start from copies of it.
BASE_PROFILE = {
    "kind": (("tr", 0.45), ("in", 0.2), ("cop", 0.25), ("pass", 0.1)),
    "neg": 0.15, "never": 0.25, "verb_deg": 0.05, "adv": 0.1, "clause_pp": 0.15,
    "bare": 0.2, "adj": (0.6, 0.92), "adj_deg": 0.1, "cop_deg": 0.35, "np_pp": 0.12,
    "rc_subj": 0.1, "rc_obj": 0.06, "rc_neg": 0.1, "obj_animate": 0.5, "agent": 0.75,
    "conj": (("", 0.72), ("and", 0.1), ("but", 0.1), ("although", 0.08)),
    "neutral": False,
}

# CoLA: shorter than the corpus average (the error is a bigger share of the sentence) but with attractors
# (PPs, relative clauses) often enough for long-distance agreement errors
COLA_PROFILE = dict(BASE_PROFILE, adj=(0.7, 0.96), np_pp=0.2, rc_subj=0.18, rc_obj=0.06, neg=0.2, adv=0.05,
                    clause_pp=0.08, conj=(("", 0.88), ("and", 0.04), ("but", 0.04), ("although", 0.04)))

# SST-2 (and ScandiSent): neutral words only; sentiment comes from the evaluative clauses
SST_PROFILE = dict(BASE_PROFILE, neutral=True, adj=(0.75, 0.97), np_pp=0.05, rc_subj=0.03, rc_obj=0.02,
                   clause_pp=0.05, neg=0.15, adv=0.05)

# RTE
RTE_PROFILE = dict(BASE_PROFILE, kind=(("tr", 0.55), ("pass", 0.2), ("in", 0.12), ("cop", 0.13)),
                   adj=(0.5, 0.9), np_pp=0.2, rc_subj=0.2, rc_obj=0.1, obj_animate=0.7, agent=1.0,
                   clause_pp=0.12, adv=0.1, verb_deg=0.0, adj_deg=0.0, cop_deg=0.0, neutral=True)


def _cum(pairs):
    keys = [k for k, _ in pairs]
    return keys, list(accumulate(w for _, w in pairs))


class Grammar:
    """Draws abstract sentences. One instance per random stream; `p` is a profile dict (see BASE_PROFILE)."""

    def __init__(self, lex: Lexicon, rng: random.Random, profile: dict, cfg: SyntheticConfig):
        self.lex, self.rng, self.p = lex, rng, profile
        self.kinds, self.kind_cum = _cum(profile["kind"])
        self.conjs, self.conj_cum = _cum(profile["conj"])
        self.det_cum = list(accumulate(DET_WEIGHTS))
        self.n_topics, self.topic_strength = cfg.topics, cfg.topic_strength
        self.topic = -1

    def new_document(self) -> None:
        """Start a document: draw its topic."""
        self.topic = int(self.rng.random() * self.n_topics) if self.n_topics > 1 else -1

    def pick(self, table: _Table) -> int:
        if self.topic >= 0 and table.by_topic is not None and self.rng.random() < self.topic_strength:
            table = table.by_topic[self.topic]
        return table.draw(self.rng)

    def _choice(self, keys, cum):
        return keys[bisect_right(cum, self.rng.random() * cum[-1])]

    def adj(self) -> int:
        return self.pick(self.lex.t_adj_neutral if self.p["neutral"] else self.lex.t_adj)

    def np(self, animate: bool, depth: int = 0, rc_ok: bool = True) -> NP:
        r, p, lex = self.rng.random, self.p, self.lex
        noun = self.pick(lex.t_animate if animate else lex.t_noun)
        plural = r() < 0.5
        if plural and r() < p["bare"]:
            det = None
        else:
            det = DET_KEYS[bisect_right(self.det_cum, r() * self.det_cum[-1])]
        x = r()
        n_adj = 0 if x < p["adj"][0] else (1 if x < p["adj"][1] else 2)
        adjs = []
        for _ in range(n_adj):
            a = self.adj()
            if all(a != b for b, _ in adjs):
                adjs.append((a, DEG_ADJ_IDS[int(r() * len(DEG_ADJ_IDS))] if r() < p["adj_deg"] else -1))
        np = NP(noun, plural, det, adjs)
        if depth == 0 and r() < p["np_pp"]:
            np.pp = (lex.t_prep.draw(self.rng), self.np(r() < 0.5, depth + 1))
        if depth == 0 and rc_ok and np.pp is None:
            if animate and r() < p["rc_subj"]:
                np.rc = self.rc(subject_rc=True)
            elif r() < p["rc_obj"]:
                np.rc = self.rc(subject_rc=False)
        return np

    def rc(self, subject_rc: bool) -> RC:
        r, lex = self.rng.random, self.lex
        neg = (2 if r() < self.p["never"] else 1) if r() < self.p["rc_neg"] else 0
        if subject_rc and r() < 0.3:
            return RC("subj_in", self.pick(lex.t_iverb), None, neg)
        verb = self.tverb()
        if subject_rc:
            return RC("subj", verb, self.np(r() < self.p["obj_animate"], 1), neg)
        return RC("obj", verb, self.np(True, 1), neg)

    def tverb(self) -> int:
        return self.pick(self.lex.t_tverb_neutral if self.p["neutral"] else self.lex.t_tverb)

    def clause(self, kind: str | None = None) -> Clause:
        r, p, lex = self.rng.random, self.p, self.lex
        if kind is None:
            kind = self._choice(self.kinds, self.kind_cum)
        neg = (2 if r() < p["never"] else 1) if r() < p["neg"] else 0
        if kind == "tr":
            c = Clause("tr", self.np(True), self.tverb(), self.np(r() < p["obj_animate"]), neg)
        elif kind == "in":
            c = Clause("in", self.np(True), self.pick(lex.t_iverb), None, neg)
        elif kind == "cop":
            c = Clause("cop", self.np(r() < 0.5), self.adj(), None, neg)
            if r() < p["cop_deg"]:
                c.deg = DEG_ADJ_IDS[int(r() * len(DEG_ADJ_IDS))]
        else:
            agent = self.np(True) if r() < p["agent"] else None
            c = Clause("pass", self.np(r() < p["obj_animate"]), self.tverb(), agent, neg)
        if kind in ("tr", "in") and r() < p["verb_deg"]:
            c.deg = VERB_DEGREES[int(r() * len(VERB_DEGREES))]
        if kind != "cop" and r() < p["adv"]:
            c.adv = self.pick(lex.t_adv)
        if r() < p["clause_pp"]:
            c.pp = (lex.t_prep.draw(self.rng), self.np(r() < 0.5, 1, rc_ok=False))
        return c

    def sentence(self) -> Sentence:
        conj = self._choice(self.conjs, self.conj_cum)
        if conj:
            return Sentence([self.clause(), self.clause()], conj)
        return Sentence([self.clause()])
