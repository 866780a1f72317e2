"""A seeded synthetic bilingual world for the offline demo: two languages, one grammar, GLUE-format tasks.

The paper moves a monolingual BERT from language X to English. Offline, without real corpora, we need two
languages that differ on the surface but share what a model should transfer. So ONE probabilistic grammar
draws abstract sentences (clauses with subjects, objects, relative clauses, prepositional phrases,
agreement, negation, sentiment-bearing words) and two lexicons realize them:

* E, English-like: real English function words ("the", "does not", "is", "but"), made-up content words
  with English inflection ("-s" plurals and 3rd person, "-ed" participles), SVO, adjective before noun.
* S, the source: made-up words with their own morphology (plural "-k" on nouns and adjectives, verb
  agreement "-a"/"-an", passive "-ir-"), verb-final (SOV with an object particle), adjective after noun,
  postpositions, clause-final subordinator.

Lexemes are drawn with Zipfian frequencies and the same lexeme has the same frequency rank in both
languages, so the paper's frequency-rank vocabulary mapping is meaningful here (lexeme frequencies of E and
S correlate at Spearman ~0.99). Documents (corpus lines) are topical. The corpora are not parallel, and
they depend only on the seed, sizes and lexicon knobs: tuning a task knob leaves them byte-identical.

Three tasks are written in E in the exact official GLUE TSV layouts (CoLA, SST-2, RTE) and built so that a
bag of words gets only part of each one: every label is decided by structure (agreement across an
attractor, word order, negation scope, which clause follows "but", who did what to whom). An unacceptable
CoLA sentence carries `cola_errors` errors (1 by default): the first an agreement error or a swap, drop or
duplication, the others swaps, drops or duplications in equal shares (so length does not tell). The generator
also writes gold dependency trees of E sentences as CoNLL-U, and measures majority / unigram / bigram
baselines into the manifest.

E has homographs (`homographs` pairs, 16 by default): pairs of lexemes that share all their forms, an
animate and an inanimate noun (only animate nouns are subjects of verbs) or two transitive verbs, always
of different topics, so the sense shows in the context. The E corpus holds them, so a model pretrained on
E can learn to tell the senses apart; S keeps distinct words. Every other form is unique within its
language. With homographs=0 the files are byte-identical to those of the generator before homographs
existed; with homographs they differ only in the homographs' forms (and "a" -> "an" before them), since
forms are drawn after and apart from everything else. Merging two lexemes' forms also merges their E
counts, which slightly lowers the E/S frequency-rank correlation for those 2 x `homographs` lexemes.

The rest of the paper's evaluation suite, each file from its own random stream (a task knob changes no
corpus and no other task):

* `wic/{train,dev}/{split}.data.txt` and `.gold.txt`, WiC in E (official layout): `lemma POS i-j
  sentence1 sentence2` with POS N or V, whitespace-tokenized sentences, i and j the 0-based indices of the
  (possibly inflected) target form; gold T (the same lexeme in both sentences) or F (the two lexemes of a
  homograph pair), balanced. Column 1 is the shared base form; the CoNLL-U LEMMA column keeps the lexemes
  apart instead, as "<base>-1" / "<base>-2" (the PDT way of numbering homonymous lemmas).
* `scandisent/S.csv` and `scandisent/en.csv`, ScandiSent layout (CSV with header `text,label`, 1 positive):
  the first `scandisent_train` rows train, the last `scandisent_eval` rows evaluate, each part balanced;
  reviews from the SST-2 polarity grammar (negation, contrast) realized in S and in E ("en": E plays
  English in all reports).
* `stsb_S/{train,dev}.tsv`, STS-B in S (GLUE STS-B layout): an S sentence and an edited copy of the same
  abstract clause, scored 5 minus the cost of the edits (paraphrase-like ones cost little, negation and role
  swaps much) plus small noise, or two unrelated sentences (score near 0); the filename column names the
  edits. Word overlap ranks the pairs only roughly (Spearman ~0.7 on dev).
* `superglue/AX-g/AX-g.jsonl`, Winogender-style AX-g in E: minimal pairs that differ only in "he"/"she",
  with the same gold label. The pronouns and the frame verbs ("told", ...) are real English words that
  occur nowhere else (not in the corpus, not in any other task). It is a pipeline check: models fine-tuned
  on RTE do not solve it, as in the paper, where every model was at chance.

`label_noise` applies to CoLA, SST-2 and RTE only.

Everything is deterministic in the config: Python's `random.Random` seeded with strings per stream (corpus E,
corpus S, each task), no hash-order dependence, so the same config gives byte-identical files.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import os
import random
import tempfile
import time
from bisect import bisect_right
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path

from stages.common import StageError, read_json, write_json

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
TASKS = ["cola", "sst2", "rte"]
GLUE_FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "rte": "RTE"}
SCANDISENT_LANGS = {"S": "S", "E": "en"}    # language -> file stem (E plays English: en.csv)


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. Every field is a plain scalar so the sweep YAML can set it.

    The task knobs trade difficulty: the defaults aim at a unigram bag-of-words baseline of 0.5-0.7
    while the grammar decides every label (minus `label_noise`).
    """

    out_dir: str
    seed: int = 0
    source_tokens: int = 2_400_000     # word tokens (punctuation not counted) of the source corpus S
    english_tokens: int = 1_000_000    # word tokens of the English-like corpus E
    train_size: int = 2000             # examples per task train split (also sentences in conllu/train)
    dev_size: int = 500                # examples per task dev split (also sentences in conllu/dev and test)
    # lexicon: lexemes per category (each has several inflected forms)
    nouns: int = 240
    transitive_verbs: int = 90
    intransitive_verbs: int = 45
    adjectives: int = 140
    adverbs: int = 30
    sentiment_words: int = 8           # positive adjectives (and as many negative); verbs: half as many
    zipf_exponent: float = 1.0         # lexeme frequency ~ 1 / (rank + 2.7) ** zipf_exponent
    topics: int = 8                    # content words belong to topics; each line (document) has one
    topic_strength: float = 0.6        # share of a document's content words drawn from its topic
    # difficulty knobs
    label_noise: float = 0.0           # share of task labels flipped (train and dev)
    cola_agreement_share: float = 0.35  # bad CoLA sentences with an agreement error (rest: order/drop/duplicate)
    cola_long_distance_share: float = 0.3  # of those, share where an attractor PP/relative clause intervenes
    cola_max_words: int = 25           # longest CoLA sentence (at least 5 words): one error is a bigger share of a short one
    cola_errors: int = 1               # errors per unacceptable sentence; the others are order/drop/duplicate
    sst_negation_rate: float = 0.3     # evaluative clauses under "not"/"never" (lexical polarity flipped)
    sst_contrast_rate: float = 0.15    # "A, but B" / "although A, B": B decides, A has the opposite polarity
    rte_negation_rate: float = 0.4     # negated premises (near 0.5, adding/removing "not" tells nothing alone)
    rte_voice_rate: float = 0.3        # hypotheses that toggle active/passive (in both classes)
    rte_hard_share: float = 0.5        # not_entailment by a bag-preserving change (role swap, wrong subject,
                                       # moved adjective) rather than by negation or number
    # evaluation-suite extras (each from its own random stream; only `homographs` touches the E corpus)
    homographs: int = 16               # pairs of E lexemes sharing their forms (ceil(h/2) noun pairs, floor(h/2)
                                       # transitive-verb pairs); 0 keeps every E form unique. WiC is built on them
    scandisent_train: int = 1500       # ScandiSent rows per language: train part (first rows of the CSV) ...
    scandisent_eval: int = 500         # ... and eval part (last rows); the loader cuts at 3/4, so keep 3:1
    axg_pairs: int = 150               # AX-g minimal pairs (two examples each, "he" and "she")


@dataclass(frozen=True)
class SyntheticResult:
    out_dir: str
    corpora: dict[str, str]     # {"E": ".../corpus_E.txt", "S": ".../corpus_S.txt"}
    glue_dir: str               # folder with CoLA/, SST-2/, RTE/ (official GLUE TSV layouts)
    tasks: list[str]            # GLUE task names written
    conllu: dict[str, str]      # {"train": ..., "dev": ..., "test": ...} gold trees of E sentences
    wic_dir: str | None         # WiC folder (train/, dev/ in the official layout) over E homographs; None if
                                # homographs=0
    scandisent: dict[str, str]  # {"S": ".../scandisent/S.csv", "en": ".../scandisent/en.csv"} (text,label CSV)
    stsb_dir: str               # STS-B in S: folder with train.tsv, dev.tsv (GLUE STS-B layout)
    axg: str                    # AX-g in E: .../superglue/AX-g/AX-g.jsonl (Winogender-style, a pipeline check)
    stats: dict                 # sizes, label balance, baselines, generation time


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


# --- realization ----------------------------------------------------------------------------------
# A token is [form, lemma, upos, feats, head, deprel]; head is a 0-based index into the sentence, -1 = root.
class RealizerE:
    """E surface order: Det (Deg) Adj* Noun [Prep NP] [that ...]; SVO; do-support negation; "is" copula."""

    def __init__(self, lex: Lexicon):
        self.lex = lex

    def sentence(self, s: Sentence) -> list[list]:
        toks: list[list] = []
        if s.conj == "although":
            m = len(toks)
            toks.append(["although", "although", "SCONJ", "_", None, "mark"])
            h1 = self.clause(s.clauses[0], toks)
            toks[m][4] = h1
            toks.append([",", ",", "PUNCT", "_", h1, "punct"])
            h2 = self.clause(s.clauses[1], toks)
            toks[h1][4], toks[h1][5] = h2, "advcl"
            root = h2
        elif s.conj:
            h1 = self.clause(s.clauses[0], toks)
            comma, cc = len(toks), len(toks) + 1
            toks.append([",", ",", "PUNCT", "_", None, "punct"])
            toks.append([FUNC_E[s.conj], FUNC_E[s.conj], "CCONJ", "_", None, "cc"])
            h2 = self.clause(s.clauses[1], toks)
            toks[comma][4] = toks[cc][4] = h2
            toks[h2][4], toks[h2][5] = h1, "conj"
            root = h1
        else:
            root = self.clause(s.clauses[0], toks)
        toks[root][4], toks[root][5] = -1, "root"
        toks.append([".", ".", "PUNCT", "_", root, "punct"])
        return toks

    def np(self, np: NP, toks: list) -> int:
        lex = self.lex
        deps = []
        if np.det is not None:
            form = DET_E[np.det][np.plural ^ np.detflip]
            if form == "a":   # "an" before a vowel, as in English
                nxt = DEG_E[np.adjs[0][1]] if np.adjs and np.adjs[0][1] >= 0 else (
                    lex.adj_e[np.adjs[0][0]][0] if np.adjs else lex.noun_e[np.noun][0])
                if nxt[0] in "aeiou":
                    form = "an"
            deps.append(len(toks))
            toks.append([form, "a" if form == "an" else form, "DET", "_", None, "det"])
        for a, g in np.adjs:
            if g >= 0:
                toks.append([DEG_E[g], DEG_E[g], "ADV", "_", len(toks) + 1, "advmod"])
            form = lex.adj_e[a][0]
            deps.append(len(toks))
            toks.append([form, form, "ADJ", "Degree=Pos", None, "amod"])
        head = len(toks)
        forms = lex.noun_e[np.noun]
        toks.append([forms[np.plural], lex.noun_lemma_e[np.noun], "NOUN", "Number=Plur" if np.plural else "Number=Sing",
                     None, None])
        for d in deps:
            toks[d][4] = head
        if np.pp is not None:
            self._pp(np.pp, toks, head, "nmod")
        if np.rc is not None:
            v = self.rc(np.rc, np, toks)
            toks[v][4], toks[v][5] = head, "acl:relcl"
        return head

    def _pp(self, pp, toks, head, deprel):
        prep, inner = pp
        c = len(toks)
        toks.append([PREP_E[prep], PREP_E[prep], "ADP", "_", None, "case"])
        n = self.np(inner, toks)
        toks[c][4] = n
        toks[n][4], toks[n][5] = head, deprel

    def _verb_group(self, forms, lemma, plural, neg, deg, toks) -> int:
        """Negation ("does not" + base form, or "never" + finite form), degree adverb and verb; returns
        the verb's index (its dependents here are already attached to it)."""
        deps = []
        finite = True
        if neg == 1:
            aux = FUNC_E["do"][plural]
            deps.append(len(toks))
            toks.append([aux, "do", "AUX", "Mood=Ind|Number=Plur|Tense=Pres|VerbForm=Fin" if plural else
                         "Mood=Ind|Number=Sing|Person=3|Tense=Pres|VerbForm=Fin", None, "aux"])
            deps.append(len(toks))
            toks.append(["not", "not", "PART", "Polarity=Neg", None, "advmod"])
            finite = False
        elif neg == 2:
            deps.append(len(toks))
            toks.append(["never", "never", "ADV", "_", None, "advmod"])
        if deg >= 0:
            deps.append(len(toks))
            toks.append([DEG_E[deg], DEG_E[deg], "ADV", "_", None, "advmod"])
        v = len(toks)
        if finite:
            feats = ("Number=Plur|Tense=Pres|VerbForm=Fin" if plural else
                     "Number=Sing|Person=3|Tense=Pres|VerbForm=Fin")
            toks.append([forms[0] if plural else forms[1], lemma, "VERB", feats, None, None])
        else:
            toks.append([forms[0], lemma, "VERB", "VerbForm=Inf", None, None])
        for d in deps:
            toks[d][4] = v
        return v

    def rc(self, rc: RC, head_np: NP, toks) -> int:
        lex = self.lex
        rel = len(toks)
        toks.append(["that", "that", "PRON", "PronType=Rel", None, "nsubj" if rc.kind != "obj" else "obj"])
        if rc.kind == "obj":
            s = self.np(rc.other, toks)
            v = self._verb_group(lex.tverb_e[rc.verb], lex.tverb_lemma_e[rc.verb], rc.other.plural ^ rc.vflip,
                                 rc.neg, -1, toks)
            toks[s][4], toks[s][5] = v, "nsubj"
        else:
            forms, lemma = ((lex.tverb_e[rc.verb], lex.tverb_lemma_e[rc.verb]) if rc.kind == "subj"
                            else (lex.iverb_e[rc.verb], lex.iverb_e[rc.verb][0]))
            v = self._verb_group(forms, lemma, head_np.plural ^ rc.vflip, rc.neg, -1, toks)
            if rc.kind == "subj":
                o = self.np(rc.other, toks)
                toks[o][4], toks[o][5] = v, "obj"
        toks[rel][4] = v
        return v

    def clause(self, c: Clause, toks) -> int:
        lex = self.lex
        s = self.np(c.subj, toks)
        plural = c.subj.plural ^ c.vflip
        if c.kind in ("tr", "in"):
            forms, lemma = ((lex.tverb_e[c.pred], lex.tverb_lemma_e[c.pred]) if c.kind == "tr"
                            else (lex.iverb_e[c.pred], lex.iverb_e[c.pred][0]))
            h = self._verb_group(forms, lemma, plural, c.neg, c.deg, toks)
            toks[s][4], toks[s][5] = h, "nsubj"
            if c.kind == "tr":
                o = self.np(c.obj, toks)
                toks[o][4], toks[o][5] = h, "obj"
        else:
            be = FUNC_E["be"][plural]
            b = len(toks)
            toks.append([be, "be", "AUX", "Mood=Ind|Number=Plur|Tense=Pres|VerbForm=Fin" if plural else
                         "Mood=Ind|Number=Sing|Person=3|Tense=Pres|VerbForm=Fin", None,
                         "cop" if c.kind == "cop" else "aux:pass"])
            deps = [b]
            if c.neg:
                deps.append(len(toks))
                toks.append([NEG_E[c.neg], NEG_E[c.neg], "PART" if c.neg == 1 else "ADV",
                             "Polarity=Neg" if c.neg == 1 else "_", None, "advmod"])
            if c.kind == "cop":
                if c.deg >= 0:
                    deps.append(len(toks))
                    toks.append([DEG_E[c.deg], DEG_E[c.deg], "ADV", "_", None, "advmod"])
                h = len(toks)
                form = lex.adj_e[c.pred][0]
                toks.append([form, form, "ADJ", "Degree=Pos", None, None])
                toks[s][4], toks[s][5] = h, "nsubj"
            else:
                h = len(toks)
                forms = lex.tverb_e[c.pred]
                toks.append([forms[2], lex.tverb_lemma_e[c.pred], "VERB", "Tense=Past|VerbForm=Part|Voice=Pass", None,
                             None])
                toks[s][4], toks[s][5] = h, "nsubj:pass"
                if c.obj is not None:
                    by = len(toks)
                    toks.append(["by", "by", "ADP", "_", None, "case"])
                    a = self.np(c.obj, toks)
                    toks[by][4] = a
                    toks[a][4], toks[a][5] = h, "obl:agent"
            for d in deps:
                toks[d][4] = h
        if c.adv >= 0:
            form = lex.adv_e[c.adv][0]
            toks.append([form, form, "ADV", "_", h, "advmod"])
        if c.pp is not None:
            self._pp(c.pp, toks, h, "obl")
        return h


class RealizerS:
    """S surface order: Det Noun Adj* (Deg after Adj) [NP Postp] [ki ... Verb]; SOV with object particle "om";
    negation particle right before the verb; copula after the adjective; subordinator "kuvan" clause-final.

    Only forms are produced (no trees): S is used for the pretraining corpus alone.
    """

    def __init__(self, lex: Lexicon):
        self.lex = lex

    def sentence(self, s: Sentence) -> list[str]:
        out: list[str] = []
        if s.conj == "although":
            self.clause(s.clauses[0], out)
            out.append(FUNC_S["although"])
            out.append(",")
            self.clause(s.clauses[1], out)
        elif s.conj:
            self.clause(s.clauses[0], out)
            out.append(",")
            out.append(FUNC_S[s.conj])
            self.clause(s.clauses[1], out)
        else:
            self.clause(s.clauses[0], out)
        out.append(".")
        return out

    def np(self, np: NP, out: list) -> None:
        lex, pl = self.lex, np.plural
        if np.det is not None:
            out.append(DET_S[np.det][pl])
        out.append(lex.noun_s[np.noun][pl])
        for a, g in np.adjs:
            out.append(lex.adj_s[a][pl])
            if g >= 0:
                out.append(DEG_S[g])
        if np.pp is not None:
            self.np(np.pp[1], out)
            out.append(PREP_S[np.pp[0]])
        if np.rc is not None:
            rc = np.rc
            out.append(FUNC_S["rel"])
            if rc.kind == "obj":
                self.np(rc.other, out)
                vpl = rc.other.plural
                forms = lex.tverb_s[rc.verb]
            elif rc.kind == "subj":
                self.np(rc.other, out)
                out.append(FUNC_S["obj"])
                vpl = pl
                forms = lex.tverb_s[rc.verb]
            else:
                vpl = pl
                forms = lex.iverb_s[rc.verb]
            if rc.neg:
                out.append(NEG_S[rc.neg])
            out.append(forms[vpl])

    def clause(self, c: Clause, out: list) -> None:
        lex = self.lex
        self.np(c.subj, out)
        pl = c.subj.plural
        if c.pp is not None:
            self.np(c.pp[1], out)
            out.append(PREP_S[c.pp[0]])
        if c.kind == "cop":
            if c.neg:
                out.append(NEG_S[c.neg])
            out.append(lex.adj_s[c.pred][pl])
            if c.deg >= 0:
                out.append(DEG_S[c.deg])
            out.append(FUNC_S["be"][pl])
            return
        if c.kind == "tr":
            self.np(c.obj, out)
            out.append(FUNC_S["obj"])
        elif c.kind == "pass" and c.obj is not None:
            self.np(c.obj, out)
            out.append(FUNC_S["by"])
        if c.adv >= 0:
            out.append(lex.adv_s[c.adv][0])
        if c.deg >= 0:
            out.append(DEG_S[c.deg])
        if c.neg:
            out.append(NEG_S[c.neg])
        if c.kind == "in":
            out.append(lex.iverb_s[c.pred][pl])
        elif c.kind == "tr":
            out.append(lex.tverb_s[c.pred][pl])
        else:
            out.append(lex.tverb_s[c.pred][2 + pl])


def detok(forms: list[str]) -> str:
    """Words joined by spaces, punctuation attached to the word before it, first letter capitalized."""
    parts = []
    for f in forms:
        if f in (",", ".") and parts:
            parts[-1] += f
        else:
            parts.append(f)
    text = " ".join(parts)
    return text[:1].upper() + text[1:]


def _words(toks) -> int:
    return sum(1 for t in toks if t[2] != "PUNCT")


# --- corpora --------------------------------------------------------------------------------------
def _surface_forms(lex: Lexicon, lang: str):
    """A function from an abstract sentence to its word forms in E or S."""
    if lang == "E":
        real = RealizerE(lex)
        return lambda s: [t[0] for t in real.sentence(s)]
    return RealizerS(lex).sentence


def _write_corpus(path: Path, lex: Lexicon, cfg: SyntheticConfig, lang: str, target_tokens: int) -> dict:
    """Lines of 1-3 sentences until `target_tokens` words; returns counts for the stats."""
    rng = random.Random(f"{cfg.seed}:corpus_{lang}")
    grammar = Grammar(lex, rng, BASE_PROFILE, cfg)
    forms = _surface_forms(lex, lang)
    n_words = n_sent = n_lines = 0
    types: set[str] = set()
    chunk: list[str] = []
    with _atomic_text(path) as f:
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


class _atomic_text:
    """Write a text file through a temp file in the same folder, renamed into place only on success.

    A file whose new content equals the old one is left untouched: downstream caches key corpora by
    mtime, and changing a task knob regenerates the world but must not look like a new corpus.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.f = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        return self.f

    def __exit__(self, exc_type, exc, tb):
        self.f.close()
        if exc_type is None and not _same_bytes(self.tmp, self.path):
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)
        return False


def _same_bytes(a: str | Path, b: str | Path) -> bool:
    if not os.path.isfile(b) or os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def _write_text(path: Path, text: str) -> None:
    with _atomic_text(path) as f:
        f.write(text)


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


# --- task helpers ---------------------------------------------------------------------------------
def _balanced_labels(rng: random.Random, n: int) -> list[int]:
    labels = [0] * (n // 2) + [1] * (n - n // 2)
    rng.shuffle(labels)
    return labels


def _unique_examples(n_total: int, make, seen: set) -> list:
    """Call make(i) until it gives an example whose text was not seen (no train/dev duplicates)."""
    out = []
    for i in range(n_total):
        for _attempt in range(200):
            ex = make(i)
            if ex is not None and ex["key"] not in seen:
                break
        else:
            raise StageError("synthetic: could not draw enough distinct task examples; lower train_size/dev_size "
                             "or raise the lexicon sizes")
        seen.add(ex["key"])
        out.append(ex)
    return out


def _apply_noise(rng: random.Random, examples: list, rate: float) -> int:
    flipped = 0
    for ex in examples:
        if rng.random() < rate:
            ex["label"] = 1 - ex["label"]
            flipped += 1
    return flipped


# --- CoLA -----------------------------------------------------------------------------------------
# shorter than the corpus average (the error is a bigger share of the sentence) but with attractors
# (PPs, relative clauses) often enough for long-distance agreement errors
COLA_PROFILE = dict(BASE_PROFILE, adj=(0.7, 0.96), np_pp=0.2, rc_subj=0.18, rc_obj=0.06, neg=0.2, adv=0.05,
                    clause_pp=0.08, conj=(("", 0.88), ("and", 0.04), ("but", 0.04), ("although", 0.04)))


def _splits(rng: random.Random, cfg: SyntheticConfig, make, kinds_of) -> tuple[dict, dict]:
    """Class-balanced train and dev splits of unique examples (dev repeats no train example), label noise
    applied, and a count of the kinds of example that `kinds_of(example)` names."""
    kinds: dict[str, int] = {}
    seen: set = set()
    splits, flipped = {}, {}
    for split, n in (("train", cfg.train_size), ("dev", cfg.dev_size)):
        labels = _balanced_labels(rng, n)
        exs = _unique_examples(n, lambda i: make(labels[i]), seen)
        for ex in exs:
            for k in kinds_of(ex):
                kinds[k] = kinds.get(k, 0) + 1
        flipped[split] = _apply_noise(rng, exs, cfg.label_noise)
        splits[split] = exs
    return splits, {"kinds": dict(sorted(kinds.items())), "noisy_labels": flipped}


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
SST_PROFILE = dict(BASE_PROFILE, neutral=True, adj=(0.75, 0.97), np_pp=0.05, rc_subj=0.03, rc_obj=0.02,
                   clause_pp=0.05, neg=0.15, adv=0.05)


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
RTE_PROFILE = dict(BASE_PROFILE, kind=(("tr", 0.55), ("pass", 0.2), ("in", 0.12), ("cop", 0.13)),
                   adj=(0.5, 0.9), np_pp=0.2, rc_subj=0.2, rc_obj=0.1, obj_animate=0.7, agent=1.0,
                   clause_pp=0.12, adv=0.1, verb_deg=0.0, adj_deg=0.0, cop_deg=0.0, neutral=True)


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


# --- baselines ------------------------------------------------------------------------------------
def baselines(train: list, dev: list, pair: bool) -> dict:
    """Dev accuracy of the majority class, a unigram and a unigram+bigram bag-of-words logistic regression.

    Pairs get separate bags for the two sentences (stronger than one bag: it sees words that appear only
    in the hypothesis). Single-letter words count (token pattern \\w+), since "a" vs "some" matters here.
    """
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    y_tr = [ex["label"] for ex in train]
    y_dev = [ex["label"] for ex in dev]
    ones = sum(y_tr) / len(y_tr)
    majority = 1 if ones >= 0.5 else 0
    out = {"majority": round(sum(1 for y in y_dev if y == majority) / len(y_dev), 4)}
    for name, ngrams in (("bow", (1, 1)), ("bigram", (1, 2))):
        cols = ["text", "text2"] if pair else ["text"]
        xs_tr, xs_dev = [], []
        for col in cols:
            vec = CountVectorizer(ngram_range=ngrams, token_pattern=r"(?u)\b\w+\b")
            xs_tr.append(vec.fit_transform([ex[col] for ex in train]))
            xs_dev.append(vec.transform([ex[col] for ex in dev]))
        x_tr, x_dev = hstack(xs_tr).tocsr(), hstack(xs_dev).tocsr()
        clf = LogisticRegression(max_iter=2000, C=1.0)
        clf.fit(x_tr, y_tr)
        out[name] = round(float((clf.predict(x_dev) == y_dev).mean()), 4)
    if pair:
        out["overlap"] = _overlap_baseline(train, dev)
    return out


def _overlap_baseline(train: list, dev: list) -> float:
    """Logistic regression on lexical overlap features (share of hypothesis words in the premise, length
    difference, new words): RTE must not be decidable this way."""
    from sklearn.linear_model import LogisticRegression

    def feats(ex):
        p, h = ex["text"].lower().rstrip(".").split(), ex["text2"].lower().rstrip(".").split()
        ps = set(p)
        new = sum(1 for w in h if w not in ps)
        return [1 - new / len(h), len(p) - len(h), new, len(h)]

    clf = LogisticRegression(max_iter=2000)
    clf.fit([feats(ex) for ex in train], [ex["label"] for ex in train])
    pred = clf.predict([feats(ex) for ex in dev])
    return round(float(sum(int(a == ex["label"]) for a, ex in zip(pred, dev)) / len(dev)), 4)


def _task_stats(splits: dict, pair: bool) -> dict:
    st = {}
    for split, exs in splits.items():
        lens = [len(ex["text"].split()) + (len(ex["text2"].split()) if pair else 0) for ex in exs]
        st[split] = {"examples": len(exs), "positive_rate": round(sum(ex["label"] for ex in exs) / len(exs), 4),
                     "mean_words": round(sum(lens) / len(lens), 2), "max_words": max(lens)}
    st["baselines"] = baselines(splits["train"], splits["dev"], pair)
    return st


# --- entry point ----------------------------------------------------------------------------------
def _same_config(stored: dict, cfg: SyntheticConfig) -> bool:
    """Every field but out_dir decides the content (a moved folder still holds the same world); the
    stored side went through JSON, so the live side does too before comparing."""
    live = json.loads(json.dumps(asdict(cfg)))
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
        stats=stats,
    )


def _outputs_exist(res: SyntheticResult) -> bool:
    paths = list(res.corpora.values()) + list(res.conllu.values()) + list(res.scandisent.values()) + [res.axg]
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
            _write_text(out / "wic" / split / f"{split}.data.txt", data)
            _write_text(out / "wic" / split / f"{split}.gold.txt", gold)
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
        _write_text(out / "scandisent" / f"{stem}.csv", _scandisent_csv(parts))
        st = {part: {"rows": len(exs), "positive_rate": round(sum(ex["label"] for ex in exs) / len(exs), 4)}
              for part, exs in parts.items()}
        st["train_rows_first"] = len(parts["train"])
        st["baselines"] = baselines(parts["train"], parts["eval"], False)
        stats["tasks"][f"scandisent_{stem}"] = st
    splits, _ = _stsb(lex, cfg)
    for split, exs in splits.items():
        _write_text(out / "stsb_S" / f"{split}.tsv", _stsb_tsv(exs))
    stats["tasks"]["stsb_S"] = _stsb_stats(splits)
    exs, extra = _axg(lex, cfg)
    _write_text(out / "superglue" / "AX-g" / "AX-g.jsonl", _axg_jsonl(exs))
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
            _write_text(out / "glue" / GLUE_FOLDERS[task] / f"{split}.tsv", to_tsv(exs))
        stats["tasks"][task] = dict(_task_stats(splits, pair), **extra)
        # what a model that knows the grammar scores on dev: every label but the flipped ones
        stats["tasks"][task]["baselines"]["grammar_oracle"] = round(1 - extra["noisy_labels"]["dev"] / cfg.dev_size, 4)
    timing["tasks"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    for split, n in (("train", cfg.train_size), ("dev", cfg.dev_size), ("test", cfg.dev_size)):
        _write_text(out / "conllu" / f"{split}.conllu", _treebank(lex, cfg, split, n))
    timing["conllu"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    _write_extras(out, lex, cfg, stats)
    timing["extras"] = round(time.perf_counter() - t, 2)
    _write_text(out / "lexicon.tsv", "category\trank\tclass\tE\tS\n" + "".join("\t".join(r) + "\n" for r in lex.rows()))
    stats["lexicon"] = {"lexemes": len(lex.rows()), "file": "lexicon.tsv",
                        "function_words_E": len(_function_words_e()), "function_words_S": len(_function_words_s())}
    timing["total"] = round(time.perf_counter() - t0, 2)
    stats["seconds"] = timing
    res = _result(cfg, stats)
    outputs = {"corpora": res.corpora, "glue_dir": res.glue_dir, "tasks": res.tasks, "conllu": res.conllu,
               "lexicon": str(out / "lexicon.tsv"), "wic_dir": res.wic_dir, "scandisent": res.scandisent,
               "stsb_dir": res.stsb_dir, "axg": res.axg}
    write_json(manifest_path, {"version": MANIFEST_VERSION, "config": asdict(cfg), "outputs": outputs,
                               "stats": stats})
    return res
