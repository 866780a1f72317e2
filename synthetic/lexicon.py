"""The two languages' words: function words of E and S, made-up content-word stems and their inflection,
and the Lexicon (forms, frequency ranks, animacy, sentiment, topics, homographs) with its Zipfian tables."""
from __future__ import annotations

import random
from bisect import bisect_right
from itertools import accumulate

from stages.common import StageError
from synthetic.config import SyntheticConfig


# --- function words -------------------------------------------------------------------------------
# Determiner keys with (singular, plural) forms. "a"/"some" and the demonstratives mark number, which is
# what CoLA's determiner-agreement errors flip.
DET_KEYS = ["def", "indef", "prox", "dist", "my", "his", "our"]
DET_WEIGHTS = [0.46, 0.2, 0.1, 0.08, 0.06, 0.05, 0.05]
DET_E = {"def": ("the", "the"), "indef": ("a", "some"), "prox": ("this", "these"), "dist": ("that", "those"),
         "my": ("my", "my"), "his": ("his", "his"), "our": ("our", "our")}
DET_S = {"def": ("ta", "tak"), "indef": ("un", "unk"), "prox": ("su", "suk"), "dist": ("vo", "vok"),
         "my": ("mi", "mik"), "his": ("si", "sik"), "our": ("nu", "nuk")}
PREP_E = ["in", "on", "near", "with", "under", "behind", "from", "at", "over", "beside"]
PREP_S = ["da", "ko", "lune", "sa", "umi", "deva", "ri", "ka", "supo", "veli"]
DEG_E = ["very", "really", "extremely", "quite", "so", "truly"]
DEG_S = ["mu", "tavi", "zeko", "lisa", "sama", "vuri"]
DEG_ADJ_IDS = list(range(len(DEG_E)))   # all of them stand before adjectives
VERB_DEGREES = [1, 5]                   # "really", "truly" also stand before verbs
NEG_E = {1: "not", 2: "never"}
NEG_S = {1: "ne", 2: "nikan"}
# E: the, does/do, is/are, that (relative), by (agent), but, and, although
FUNC_E = {"do": ("does", "do"), "be": ("is", "are"), "rel": "that", "by": "by",
          "but": "but", "and": "and", "although": "although"}
# S: copula agrees, "ki" relativizer, "om" object particle, "pol" agent postposition, clause-final "kuvan"
FUNC_S = {"be": ("esa", "esan"), "rel": "ki", "obj": "om", "by": "pol",
          "but": "meko", "and": "e", "although": "kuvan"}
MANNER_S_SUFFIX = "vo"


def _function_words_e() -> set[str]:
    words = {w for pair in DET_E.values() for w in pair} | {"an"} | set(PREP_E) | set(DEG_E) | set(NEG_E.values())
    for v in FUNC_E.values():
        words |= set(v) if isinstance(v, tuple) else {v}
    return words


def _function_words_s() -> set[str]:
    words = {w for pair in DET_S.values() for w in pair} | set(PREP_S) | set(DEG_S) | set(NEG_S.values())
    for v in FUNC_S.values():
        words |= set(v) if isinstance(v, tuple) else {v}
    return words


# --- lexicon --------------------------------------------------------------------------------------
_E_ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y", "z",
             "b", "d", "g", "l", "m", "n", "p", "r", "s", "t",
             "bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gl", "gr", "pl", "pr", "sh", "sl", "sn", "sp",
             "st", "str", "sw", "th", "tr", "wh"]
_E_NUCLEI = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "oa", "ie"]
_E_CODAS = ["", "", "", "b", "ck", "d", "ft", "g", "k", "l", "ld", "lk", "ll", "lt", "m", "mp", "n", "nd", "ng",
            "nk", "nt", "p", "r", "rd", "rk", "rm", "rn", "rt", "sh", "sk", "sp", "st", "t", "th"]
_E_ADJ_SUFFIXES = ["y", "ful", "ous", "ish", "ic", "less", "ant"]
_E_NOUN_SUFFIXES = ["er", "ment", "ness", "ion", "et"]
_S_CONSONANTS = "kzvtlmnrsdgpb"
_S_VOWELS = "aeiou"


def _e_stem(rng: random.Random) -> str:
    while True:
        nsyl = 1 if rng.random() < 0.45 else (2 if rng.random() < 0.92 else 3)
        parts = []
        for i in range(nsyl):
            onset = rng.choice(_E_ONSETS) if (i > 0 or rng.random() < 0.85) else ""
            coda = rng.choice(_E_CODAS) if (i == nsyl - 1 or rng.random() < 0.3) else ""
            parts.append(onset + rng.choice(_E_NUCLEI) + coda)
        w = "".join(parts)
        if 3 <= len(w) <= 10:
            return w


def _s_stem(rng: random.Random, final_consonant: bool) -> str:
    nsyl = 2 if rng.random() < 0.6 else 3
    w = "".join(rng.choice(_S_CONSONANTS) + rng.choice(_S_VOWELS) for _ in range(nsyl))
    return w + rng.choice(_S_CONSONANTS) if final_consonant else w


def _e_s_suffix(w: str) -> str:
    """English '-s' for plurals and 3rd person singular."""
    if w.endswith(("s", "x", "z", "sh", "ch")):
        return w + "es"
    if w.endswith("y") and len(w) > 1 and w[-2] not in "aeiou":
        return w[:-1] + "ies"
    return w + "s"


def _e_participle(w: str) -> str:
    if w.endswith("e"):
        return w + "d"
    if w.endswith("y") and len(w) > 1 and w[-2] not in "aeiou":
        return w[:-1] + "ied"
    return w + "ed"


class Lexicon:
    """Abstract lexemes (ids ranked by frequency within their category) and their E and S forms.

    Every surface form is unique within its language except the declared homographs (`homograph_pairs`:
    E noun or transitive-verb lexemes that share all their forms; WiC is built on them), and no form occurs
    in both languages: the only shared word types are punctuation. The CoNLL-U lemmas of E
    (`noun_lemma_e`, `tverb_lemma_e`) stay distinct per lexeme: the base form, or "<base>-1" / "<base>-2"
    for the two lexemes of a homograph pair. `topic_of[category][id]` is each content lexeme's topic.
    """

    def __init__(self, cfg: SyntheticConfig):
        rng = random.Random(f"{cfg.seed}:lexicon")
        # one pool of used forms for both languages: a form is unique within its language and absent
        # from the other, so the E and S vocabularies share nothing but punctuation
        self.taken = _function_words_e() | _function_words_s()
        n_noun, n_tv, n_iv, n_adj, n_adv = (cfg.nouns, cfg.transitive_verbs, cfg.intransitive_verbs,
                                            cfg.adjectives, cfg.adverbs)
        if min(n_noun, n_tv, n_iv, n_adj, n_adv) < 12:
            raise StageError("synthetic: every lexicon size (nouns, transitive_verbs, intransitive_verbs, "
                             "adjectives, adverbs) must be at least 12; raise the small one in the config")
        if not 2 <= cfg.sentiment_words <= min(n_adj // 3, n_tv // 2 - 1):
            raise StageError(f"synthetic: sentiment_words={cfg.sentiment_words} must lie in [2, "
                             f"{min(n_adj // 3, n_tv // 2 - 1)}] (a third of the adjectives at most, and "
                             "half as many transitive verbs are needed)")
        # E forms: short stems go to frequent lexemes (Zipf's law of abbreviation), with some jitter.
        self.noun_e = self._make(rng, n_noun, self._e_noun)            # (sg, pl)
        self.tverb_e = self._make(rng, n_tv, self._e_tverb)            # (base, 3sg, participle)
        self.iverb_e = self._make(rng, n_iv, self._e_iverb)            # (base, 3sg)
        self.adj_e = self._make(rng, n_adj, self._e_adj)               # (form,)
        self.adv_e = self._make(rng, n_adv, self._e_adv)               # (form,)
        self.noun_s = self._make(rng, n_noun, self._s_noun)            # (sg, pl)
        self.tverb_s = self._make(rng, n_tv, self._s_tverb)            # (sg, pl, pass sg, pass pl)
        self.iverb_s = self._make(rng, n_iv, self._s_iverb)            # (sg, pl)
        self.adj_s = self._make(rng, n_adj, self._s_adj)               # (sg, pl)
        self.adv_s = self._make(rng, n_adv, self._s_adv)               # (form,)

        # Animacy: subjects of verbs and agents are animate; objects and copula subjects may be anything.
        # Selection gives the corpus distributional classes a masked LM can learn (and that transfer).
        ids = list(range(n_noun))
        rng.shuffle(ids)
        animate = set(ids[: int(0.4 * n_noun)])
        self.animate = [i in animate for i in range(n_noun)]
        # Sentiment: few words, drawn from the more frequent half of the ranks (like "good" and "bad"),
        # so that a tiny model sees each one often in 2000 SST examples. Its own random stream: tuning
        # this task knob must not change the corpora (and so invalidate pretrained models).
        k = cfg.sentiment_words
        srng = random.Random(f"{cfg.seed}:sentiment")
        adj_ids = list(range(max(2 * k, n_adj // 2)))
        srng.shuffle(adj_ids)
        self.adj_pos, self.adj_neg = sorted(adj_ids[:k]), sorted(adj_ids[k:2 * k])
        self.adj_neutral = sorted(set(range(n_adj)) - set(self.adj_pos) - set(self.adj_neg))
        k = max(2, cfg.sentiment_words // 2)
        tv_ids = list(range(max(2 * k, n_tv // 2)))
        srng.shuffle(tv_ids)
        self.tv_pos, self.tv_neg = sorted(tv_ids[:k]), sorted(tv_ids[k:2 * k])
        self.tv_neutral = sorted(set(range(n_tv)) - set(self.tv_pos) - set(self.tv_neg))

        # Topics: every content lexeme belongs to one; a document prefers its topic's words. Real text is
        # topical, and this matters for pretraining: with words independent across a sentence, the context
        # as a bag tells a masked LM nothing, and a tiny BERT sits at the unigram loss for thousands of
        # steps before it finds word order; topical context gives it a gradient from the start.
        T = cfg.topics
        topic = {c: [int(rng.random() * T) for _ in range(n)]
                 for c, n in (("noun", n_noun), ("tv", n_tv), ("iv", n_iv), ("adj", n_adj), ("adv", n_adv))}
        self.topic_of = topic
        s = cfg.zipf_exponent
        weight = [1.0 / (r + 2.7) ** s for r in range(max(n_noun, n_tv, n_iv, n_adj, n_adv))]
        self.t_noun = _Table(list(range(n_noun)), weight, topic["noun"], T)
        self.t_animate = _Table([i for i in range(n_noun) if self.animate[i]], weight, topic["noun"], T)
        self.t_tverb = _Table(list(range(n_tv)), weight, topic["tv"], T)
        self.t_tverb_neutral = _Table(self.tv_neutral, weight, topic["tv"], T)
        self.t_tverb_pos = _Table(self.tv_pos, weight)
        self.t_tverb_neg = _Table(self.tv_neg, weight)
        self.t_iverb = _Table(list(range(n_iv)), weight, topic["iv"], T)
        self.t_adj = _Table(list(range(n_adj)), weight, topic["adj"], T)
        self.t_adj_neutral = _Table(self.adj_neutral, weight, topic["adj"], T)
        self.t_adj_pos = _Table(self.adj_pos, weight)
        self.t_adj_neg = _Table(self.adj_neg, weight)
        self.t_adv = _Table(list(range(n_adv)), weight, topic["adv"], T)
        self.t_prep = _Table(list(range(len(PREP_E))), weight)

        # CoNLL-U lemmas of E nouns and transitive verbs (the base form; homographs get a sense number)
        self.noun_lemma_e = [f[0] for f in self.noun_e]
        self.tverb_lemma_e = [f[0] for f in self.tverb_e]
        self.homograph_pairs: list[tuple[str, int, int]] = []   # (category "noun"/"tverb", owner id, other id)
        if cfg.homographs:
            self._make_homographs(cfg)

    def _make_homographs(self, cfg: SyntheticConfig) -> None:
        """Let `cfg.homographs` pairs of E lexemes share their forms (after everything else is drawn, from its
        own random stream: the rest of the world, and S, stay as they are). The more frequent lexeme of a
        pair keeps its forms and the other takes them over; the other's old forms leave the language.

        Noun pairs (ceil(h / 2)) join an animate and an inanimate noun of the more frequent half, so only
        the animate sense is the subject of a verb; verb pairs (floor(h / 2)) come from the less frequent
        half of the transitive verbs, where no sentiment verb ever is (whatever `sentiment_words`). Both
        members of a pair belong to different topics (when there are several), so their contexts differ.
        """
        rng = random.Random(f"{cfg.seed}:homographs")
        n_noun_pairs, n_verb_pairs = cfg.homographs - cfg.homographs // 2, cfg.homographs // 2
        top = len(self.noun_e) // 2
        animate = [i for i in range(top) if self.animate[i]]
        inanimate = [i for i in range(top) if not self.animate[i]]
        verbs = list(range(len(self.tverb_e) // 2, len(self.tverb_e)))
        rng.shuffle(animate)
        rng.shuffle(inanimate)
        rng.shuffle(verbs)
        pairs = []
        for cat, firsts, seconds, n in (("noun", animate, inanimate, n_noun_pairs), ("tverb", verbs, verbs, n_verb_pairs)):
            topic = self.topic_of["noun" if cat == "noun" else "tv"]
            used: set[int] = set()
            found = 0
            for a in firsts:
                if found == n:
                    break
                if a in used:
                    continue
                for b in seconds:
                    if b != a and b not in used and (topic[a] != topic[b] or cfg.topics == 1):
                        used.update((a, b))
                        pairs.append((cat, min(a, b), max(a, b)))
                        found += 1
                        break
            if found < n:
                raise StageError(f"synthetic: homographs={cfg.homographs} asks for {n} {cat} pairs but only {found} "
                                 f"can be formed (animate + inanimate nouns of the frequent half, transitive verbs "
                                 f"of the rare half, in different topics); lower homographs or raise the lexicon")
        for cat, a, b in sorted(pairs):
            forms, lemmas = (self.noun_e, self.noun_lemma_e) if cat == "noun" else (self.tverb_e, self.tverb_lemma_e)
            forms[b] = forms[a]
            lemmas[a], lemmas[b] = f"{forms[a][0]}-1", f"{forms[a][0]}-2"
        self.homograph_pairs = sorted(pairs)

    def _make(self, rng, n, maker):
        """n lexemes' form tuples; shorter ones for frequent ranks. Collisions are redrawn."""
        out = []
        for _ in range(n):
            for _attempt in range(1000):
                forms = maker(rng)
                if len(set(forms)) == len(forms) and not any(f in self.taken for f in forms):
                    break
            else:
                raise StageError("synthetic: could not draw enough distinct word forms; lower the lexicon sizes")
            self.taken.update(forms)
            out.append(forms)
        order = sorted(range(n), key=lambda i: len(out[i][0]) + 3.0 * rng.random())
        return [out[i] for i in order]

    @staticmethod
    def _e_noun(rng):
        w = _e_stem(rng)
        if rng.random() < 0.2:
            w += rng.choice(_E_NOUN_SUFFIXES)
        return (w, _e_s_suffix(w))

    @staticmethod
    def _e_tverb(rng):
        w = _e_stem(rng)
        return (w, _e_s_suffix(w), _e_participle(w))

    @staticmethod
    def _e_iverb(rng):
        w = _e_stem(rng)
        return (w, _e_s_suffix(w))

    @staticmethod
    def _e_adj(rng):
        w = _e_stem(rng)
        if rng.random() < 0.35:
            w += rng.choice(_E_ADJ_SUFFIXES)
        return (w,)

    @staticmethod
    def _e_adv(rng):
        w = _e_stem(rng)
        return (w + ("ily" if w.endswith("y") else "ly"),)

    @staticmethod
    def _s_noun(rng):
        w = _s_stem(rng, final_consonant=False)
        return (w, w + "k")

    @staticmethod
    def _s_tverb(rng):
        w = _s_stem(rng, final_consonant=True)
        return (w + "a", w + "an", w + "ira", w + "iran")

    @staticmethod
    def _s_iverb(rng):
        w = _s_stem(rng, final_consonant=True)
        return (w + "a", w + "an")

    @staticmethod
    def _s_adj(rng):
        w = _s_stem(rng, final_consonant=True) + "i"
        return (w, w + "k")

    @staticmethod
    def _s_adv(rng):
        return (_s_stem(rng, final_consonant=False) + MANNER_S_SUFFIX,)

    def dictionary(self) -> list[tuple[str, str]]:
        """(S word, E word) pairs, every inflected form of every lexeme and the function words that have a
        counterpart: the bilingual dictionary WECHSEL aligns its embedding spaces with, source language first."""
        pairs = []
        for e, s in ((self.noun_e, self.noun_s), (self.tverb_e, self.tverb_s), (self.iverb_e, self.iverb_s),
                     (self.adj_e, self.adj_s), (self.adv_e, self.adv_s)):
            for fe, fs in zip(e, s):
                pairs += list(zip(fs, fe))
        for key in DET_E:
            pairs += list(zip(DET_S[key], DET_E[key]))
        pairs += list(zip(PREP_S, PREP_E)) + list(zip(DEG_S, DEG_E)) + [(NEG_S[k], NEG_E[k]) for k in NEG_E]
        for key in (k for k in FUNC_E if k in FUNC_S):   # dict order, not a set's: the file is the same every run
            fe, fs = FUNC_E[key], FUNC_S[key]
            pairs += list(zip(fs, fe)) if isinstance(fe, tuple) else [(fs, fe)]
        return list(dict.fromkeys(pairs))

    def rows(self) -> list[list[str]]:
        """The bilingual dictionary: category, frequency rank, class (animate / sentiment), E forms, S forms."""
        pos, neg = set(self.adj_pos), set(self.adj_neg)
        tpos, tneg = set(self.tv_pos), set(self.tv_neg)
        rows = []
        for cat, e, s in (("noun", self.noun_e, self.noun_s), ("tverb", self.tverb_e, self.tverb_s),
                          ("iverb", self.iverb_e, self.iverb_s), ("adj", self.adj_e, self.adj_s),
                          ("adv", self.adv_e, self.adv_s)):
            for i, (fe, fs) in enumerate(zip(e, s)):
                cls = ""
                if cat == "noun":
                    cls = "animate" if self.animate[i] else "inanimate"
                elif (cat == "adj" and i in pos) or (cat == "tverb" and i in tpos):
                    cls = "positive"
                elif (cat == "adj" and i in neg) or (cat == "tverb" and i in tneg):
                    cls = "negative"
                rows.append([cat, str(i), cls, " ".join(fe), " ".join(fs)])
        return rows


class _Table:
    """Zipfian draw from a subset of lexeme ids (bisect on cumulative weights: no numpy in the hot loop).

    With `topic_of`, the table also holds one sub-table per topic (the same ids restricted to that topic,
    same relative weights); Grammar.pick draws from it with probability `topic_strength`.
    """

    __slots__ = ("ids", "cum", "total", "by_topic")

    def __init__(self, ids: list[int], weight: list[float], topic_of: list[int] | None = None, n_topics: int = 0):
        self.ids = ids
        self.cum = list(accumulate(weight[i] for i in ids))
        self.total = self.cum[-1]
        self.by_topic = None
        if topic_of is not None and n_topics > 1:
            self.by_topic = []
            for t in range(n_topics):
                sub = [i for i in ids if topic_of[i] == t]
                self.by_topic.append(_Table(sub, weight) if sub else self)

    def draw(self, rng: random.Random) -> int:
        return self.ids[bisect_right(self.cum, rng.random() * self.total)]
