"""What the synthetic world generator is asked for (SyntheticConfig) and gives back (SyntheticResult),
and the fixed names of its outputs."""
from __future__ import annotations

from dataclasses import dataclass

from stages.common import Number, StageConfig, setting

MANIFEST = "manifest.json"
MANIFEST_VERSION = 2
TASKS = ["cola", "sst2", "rte"]
GLUE_FOLDERS = {"cola": "CoLA", "sst2": "SST-2", "rte": "RTE"}
SCANDISENT_LANGS = {"S": "S", "E": "en"}    # language -> file stem (E plays English: en.csv)


class SyntheticConfig(StageConfig):
    """What to generate. Every field is a plain scalar so the sweep YAML can set it.

    The task knobs trade difficulty: the defaults aim at a unigram bag-of-words baseline of 0.5-0.7
    while the grammar decides every label (minus `label_noise`).
    """

    out_dir: str = setting(doc="the folder the world is written to")
    seed: int = setting(0, "every random choice of the world", ge=0)
    source_tokens: int = setting(2_400_000, "word tokens (punctuation not counted) of the source corpus S", ge=0)
    english_tokens: int = setting(1_000_000, "word tokens of the English-like corpus E", ge=0)
    train_size: int = setting(2000, "examples per task train split (also sentences in conllu/train)", ge=0)
    dev_size: int = setting(500, "examples per task dev split (also sentences in conllu/dev and test)", ge=0)
    # lexicon: lexemes per category (each has several inflected forms)
    nouns: int = setting(240, "noun lexemes", ge=0)
    transitive_verbs: int = setting(90, "transitive verb lexemes", ge=0)
    intransitive_verbs: int = setting(45, "intransitive verb lexemes", ge=0)
    adjectives: int = setting(140, "adjective lexemes", ge=0)
    adverbs: int = setting(30, "manner adverb lexemes", ge=0)
    sentiment_words: int = setting(8, "positive adjectives (and as many negative); verbs: half as many", ge=0)
    zipf_exponent: Number = setting(1.0, "lexeme frequency ~ 1 / (rank + 2.7) ** zipf_exponent", ge=0)
    topics: int = setting(8, "content words belong to topics; each line (document) has one", ge=0)
    topic_strength: Number = setting(0.6, "share of a document's content words drawn from its topic", ge=0)
    # difficulty knobs
    label_noise: Number = setting(0.0, "share of task labels flipped (train and dev)", ge=0)
    cola_agreement_share: Number = setting(0.35, "bad CoLA sentences with an agreement error (rest: "
                                           "order/drop/duplicate)", ge=0)
    cola_long_distance_share: Number = setting(0.3, "of those, share where an attractor PP/relative clause "
                                               "intervenes", ge=0)
    cola_max_words: int = setting(25, "longest CoLA sentence (at least 5 words): one error is a bigger share of a "
                                  "short one", ge=0)
    cola_errors: int = setting(1, "errors per unacceptable sentence; the others are order/drop/duplicate", ge=0)
    sst_negation_rate: Number = setting(0.3, "evaluative clauses under \"not\"/\"never\" (lexical polarity "
                                        "flipped)", ge=0)
    sst_contrast_rate: Number = setting(0.15, "\"A, but B\" / \"although A, B\": B decides, A has the opposite "
                                        "polarity", ge=0)
    rte_negation_rate: Number = setting(0.4, "negated premises (near 0.5, adding/removing \"not\" tells nothing "
                                        "alone)", ge=0)
    rte_voice_rate: Number = setting(0.3, "hypotheses that toggle active/passive (in both classes)", ge=0)
    rte_hard_share: Number = setting(0.5, "not_entailment by a bag-preserving change (role swap, wrong subject, "
                                     "moved adjective) rather than by negation or number", ge=0)
    # evaluation-suite extras (each from its own random stream; only `homographs` touches the E corpus)
    homographs: int = setting(16, "pairs of E lexemes sharing their forms (ceil(h/2) noun pairs, floor(h/2) "
                              "transitive-verb pairs); 0 keeps every E form unique. WiC is built on them", ge=0)
    scandisent_train: int = setting(1500, "ScandiSent rows per language: train part (first rows of the CSV) "
                                    "...", ge=0)
    scandisent_eval: int = setting(500, "... and eval part (last rows); the loader cuts at 3/4, so keep 3:1", ge=0)
    axg_pairs: int = setting(150, "AX-g minimal pairs (two examples each, \"he\" and \"she\")", ge=0)


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
    dictionary: str             # S<TAB>E word pairs (WECHSEL's bilingual dictionary format)
    stats: dict                 # sizes, label balance, baselines, generation time
