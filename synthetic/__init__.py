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

Modules: `config` (SyntheticConfig, SyntheticResult, output names), `lexicon` (words and forms), `grammar`
(abstract sentences, profiles), `realisation` (E and S surface forms), `tasks_common`, `glue_tasks` (CoLA,
SST-2, RTE), `eval_tasks` (CoNLL-U, WiC, ScandiSent, STS-B, AX-g), `baselines`, `world` (corpora, `generate`).
"""
from synthetic.config import (GLUE_FOLDERS, MANIFEST, MANIFEST_VERSION, SCANDISENT_LANGS, TASKS, SyntheticConfig,
                              SyntheticResult)
from synthetic.eval_tasks import AXG_FRAMES, AXG_PRONOUNS, _wic
from synthetic.glue_tasks import _cola_bad, _corrupt_tokens
from synthetic.grammar import BASE_PROFILE, COLA_PROFILE, RTE_PROFILE, SST_PROFILE, Grammar
from synthetic.lexicon import Lexicon
from synthetic.realisation import RealizerE, RealizerS, _words, detok
from synthetic.world import _write_corpus, generate

__all__ = ["AXG_FRAMES", "AXG_PRONOUNS", "BASE_PROFILE", "COLA_PROFILE", "GLUE_FOLDERS", "MANIFEST", "MANIFEST_VERSION",
           "RTE_PROFILE", "SCANDISENT_LANGS", "SST_PROFILE", "TASKS", "Grammar", "Lexicon", "RealizerE", "RealizerS",
           "SyntheticConfig", "SyntheticResult", "_cola_bad", "_corrupt_tokens", "_wic", "_words", "_write_corpus",
           "detok", "generate"]
