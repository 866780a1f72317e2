"""Surface realization of abstract sentences: E with dependency trees (RealizerE), S as word forms
(RealizerS), detokenization and word counting."""
from __future__ import annotations

from synthetic.grammar import NP, RC, Clause, Sentence
from synthetic.lexicon import DEG_E, DEG_S, DET_E, DET_S, FUNC_E, FUNC_S, NEG_E, NEG_S, PREP_E, PREP_S, Lexicon


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


def _surface_forms(lex: Lexicon, lang: str):
    """A function from an abstract sentence to its word forms in E or S."""
    if lang == "E":
        real = RealizerE(lex)
        return lambda s: [t[0] for t in real.sentence(s)]
    return RealizerS(lex).sentence
