"""The sweep configuration: YAML validated strictly by the stages' own typed configs.

Each section of a sweep YAML is a stage's config type (`pretrain:` is `stages.pretrain.PretrainSettings`,
`finetune:` is `stages.finetune.FinetuneSettings` plus the sweep's task and seed lists, ...), so every
hyperparameter is defined once, in its stage, with its type, default, doc and checks. pydantic validates
(unknown keys and wrong types are errors); this module turns its errors into messages that name the
dotted key and the valid keys there, and adds the checks that span sections (every name refers to
something defined). Command-line overrides (`finetune.seeds=[1,2]`) are set into the YAML before
validation, so they pass the same checks. Relative paths are resolved against the directory `xlt` runs
in, once, in the driver: Ray trials run in other directories.
"""
from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError, create_model, field_validator, model_validator

from orchestrator.runner import KINDS, Resources
from stages.common import StageConfig, setting, with_defaults
from stages.corpus import CorpusConfig
from stages.features import FeaturesSettings
from stages.finetune import FinetuneSettings, GlueData
from stages.glue import GLUE_TASKS
from stages.pretrain import PretrainSettings
from stages.probe import ProbeSettings
from stages.source_tasks import is_source_task
from stages.tokenizer import TokenizerSettings
from stages.transfer import Architecture, FocusSettings, TransferSettings, WechselSettings
from stages.wic import WicSettings
from stages.winogender import WinogenderSettings
from synthetic import SyntheticConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
HUB_PREFIX = "hub:"   # forgetting.data values naming a hub dataset rather than a local path


class ConfigError(ValueError):
    """A sweep config that cannot run; the message names the key and what to write instead."""


# --- the sections: stage configs plus sweep-only keys ----------------------------------------------

class BuildSource(StageConfig):
    """Pretrain a source model from scratch in the sweep (used when no real one exists, e.g. the demo)."""
    corpus: str = setting(doc="name of the corpus (under `corpora`) it is pretrained on")
    vocab_size: int = setting(32000, "its own WordPiece vocabulary, learned on that corpus", ge=100)
    architecture: Architecture = setting(Architecture(), "its shape")
    pretrain: PretrainSettings = setting(PretrainSettings(), "its pretraining")


class Source(TransferSettings):
    """A monolingual source model: a hub id / local folder (`model`), or one built in the sweep (`build`)."""
    model: str | None = setting(None, "hub id or local model folder")
    build: BuildSource | None = setting(None, "instead of model: build and pretrain it in the sweep")
    lowercase: bool = setting(False, "casing of this source; the English vocabulary paired with it follows")
    label: str | None = setting(None, "name in the report (default: the key)")
    source_corpus: str | None = setting(None, "rank: counts: the source-language corpus whose token counts rank "
                                              "the source rows (a built source defaults to its build corpus)")
    source_tasks: list[str] = setting([], "forgetting: e.g. [scandisent-sv, stsb-sv] (paper 4.7)")
    wechsel_dictionary: str | None = setting(None, "vocab mode wechsel: bilingual dictionary, one 'source word<TAB>"
                                                   "English word' per line (WECHSEL's format)")
    wechsel_vectors: str | None = setting(None, "vocab mode wechsel: fastText .bin of source-language words (e.g. "
                                                "cc.sv.300.bin); null: trained on source_corpus (or the build corpus)")
    tokenizer_family: Literal["wordpiece", "bpe", "unigram"] = setting(
        "wordpiece", "the source tokenizer's family: wordpiece (BERT), bpe (byte-level, RoBERTa), unigram "
                     "(SentencePiece, XLM-R); its English vocabulary is learned in the same family")
    pretraining_tokens: int | None = setting(None, "tokens the source model was pretrained on (its paper or model "
                                                   "card), for experiments.scratch_budget: match; a built source's "
                                                   "come from its build.pretrain max_steps", ge=1)

    @model_validator(mode="after")
    def _one_model(self):
        if (self.model is None) == (self.build is None):
            raise ValueError("give either model (hub id or folder) or build, exactly one")
        if self.build is not None and self.tokenizer_family != "wordpiece":
            raise ValueError("a built source (bert, roformer) has a WordPiece vocabulary: leave tokenizer_family out")
        return self


class Target(TokenizerSettings):
    """The target vocabulary (and, through `corpus`, the target pretraining text): English in the paper, any
    language here (`language`: e.g. sv, with a Swedish corpus and Swedish tasks in the GLUE layout)."""
    corpus: str = setting(doc="name of the target-language corpus (under `corpora`)")
    language: str = setting("en", "the target language's code: in model keys (<source>-to-<language>-<mode>, "
                                  "<language>-scratch), node ids and the report's rows", pattern=r"^[a-z][a-z0-9]*$")


class Experiments(StageConfig):
    """Which rows of Table 2 to build."""
    transfer_from: list[str] = setting([], "sources moved to English")
    vocab_modes: list[Literal["keep", "frequency", "random-map", "overlap", "fvt", "random-normal", "focus",
                              "wechsel"]] = setting(["keep", "frequency"], "how each is moved (stages/transfer.py, "
                                                                           "stages/inits.py)")
    direct: list[str] = setting([], "sources fine-tuned directly ([lang], BERT-base)")
    scratch: bool = setting(True, "[en][en]: an English model from scratch")
    scratch_like: str | None = setting(None, "source whose architecture [en][en] copies (default: the first "
                                             "transfer_from)")
    scratch_lowercase: bool = setting(False, "casing of [en][en]'s vocabulary")
    scratch_budget: Literal["same", "match"] = setting(
        "same", "match: also an [en][en] per transfer_from source with that source's transfer budget plus the "
                "source's own original pretraining tokens (sources.X.pretraining_tokens): scratch at equal compute")


def _distinct_seeds(seeds: list[int]) -> list[int]:
    # [1, 1] would name the same node twice: the graph would silently run one fine-tune where two were asked for
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ValueError(f"seed(s) {', '.join(map(str, dup))} listed twice; list each seed once, e.g. [1, 2, 3]")
    return seeds


def _glue_tasks(tasks: list[str]) -> list[str]:
    for t in tasks:
        if t not in GLUE_TASKS:
            raise ValueError(f"unknown task {t!r}; choose from {', '.join(GLUE_TASKS)}"
                             + (" (WNLI is excluded, as in the paper)" if t == "wnli" else ""))
    return tasks


class FinetuneSection(FinetuneSettings, GlueData):
    """GLUE fine-tuning: every model x task x seed."""
    tasks: list[str] = setting(["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"], "GLUE tasks")
    seeds: list[int] = setting([1, 2, 3, 4, 5], "one fine-tune per seed", min_length=1)

    _tasks = field_validator("tasks")(classmethod(lambda cls, v: _glue_tasks(v)))
    _seeds = field_validator("seeds")(classmethod(lambda cls, v: _distinct_seeds(v)))


class ProbeSection(ProbeSettings):
    """Structural probe (Hewitt & Manning 2019) on English dependency trees: paper Table 3, UUAS and DSpr.

    Hidden states of `layers` are extracted once per model (a `features` node, configured by `features`) and
    every layer's probe is a trial of its own. Data: CoNLL-U files (paper: UD English-EWT train/dev/test) or
    `features.hub_dataset`."""
    layers: list[int] = setting(doc="0 = embedding output, k = output of layer k; one probe each", min_length=1)
    train: str | None = setting(None, "CoNLL-U file the probe trains on")
    dev: str | None = setting(None, "CoNLL-U file for early stopping")
    test: str | None = setting(None, "CoNLL-U file scored (null: dev is scored)")
    features: FeaturesSettings = setting(FeaturesSettings(), "how the hidden states are extracted")
    models: list[str] | None = setting(None, "model keys to probe (null: every model of the sweep)")

    @model_validator(mode="after")
    def _data(self):
        if any(k < 0 for k in self.layers) or len(set(self.layers)) != len(self.layers):
            raise ValueError("layers: list distinct layer numbers >= 0 (0 = embeddings), e.g. [0, 1, 2]")
        if self.features.hub_dataset is None and not (self.train and self.dev):
            raise ValueError("give CoNLL-U files train and dev (and test), or features.hub_dataset")
        return self


class WicSection(WicSettings):
    """Words in Context: one fine-tune per model and seed."""
    seeds: list[int] = setting([1, 2, 3, 4, 5], "one run per seed", min_length=1)
    _seeds = field_validator("seeds")(classmethod(lambda cls, v: _distinct_seeds(v)))
    models: list[str] | None = setting(None, "model keys (null: every model of the sweep)")


ForgettingSettings = with_defaults(
    FinetuneSettings, "ForgettingSettings", "Fine-tuning on the forgetting tasks: Table 6's hyperparameters.",
    learning_rate=4e-5, batch_size=128, epochs=2.0)


class InitsSection(StageConfig):
    """Settings of the initialisations that need more than the source model (vocab modes focus, wechsel)."""
    focus: FocusSettings = setting(FocusSettings(), "FOCUS (deepfocus): overlap matching, target-token fastText")
    wechsel: WechselSettings = setting(WechselSettings(), "WECHSEL: the mix, English word vectors")
    vectors_corpus: str | None = setting(None, "corpus (under `corpora`) the English fastText vectors of focus and "
                                               "wechsel are trained on; null: target.corpus. fastText trains on one "
                                               "thread (about 200K tokens/s): name a slice of a Wikipedia-sized corpus")


class ForgettingSection(ForgettingSettings):
    """Source-language forgetting (paper 4.7 and Appendix D).

    Every source with `source_tasks` is fine-tuned on them with its own models ([lang] and each
    [lang->en] model), and on `english_tasks` too, so each group compares source and English performance.
    """
    data: dict[str, str] = setting({}, "task -> local file/folder, or hub:<dataset id>")
    english_tasks: list[str] = setting(["scandisent-en"], "English counterparts every group is also tuned on")
    seeds: list[int] = setting([1, 2, 3, 4, 5], "one fine-tune per seed", min_length=1)
    models: list[str] | None = setting(None, "model keys (null: every [lang] and [lang->en] model)")
    reattach: bool = setting(False, "also fine-tune each [lang->en] model on its source tasks with the source's own "
                                    "vocabulary and word embeddings put back (stages/reattach.py)")
    _seeds = field_validator("seeds")(classmethod(lambda cls, v: _distinct_seeds(v)))


class LearningCurveSection(StageConfig):
    """Learning curves inside the pretraining budget: each chosen model's continued pretraining runs as a chain
    of segments cut at `fractions` of its step budget (each resuming the one before from its checkpoint, so the
    last ends on the model an uninterrupted run gives), and `tasks` are fine-tuned from every cut, each node
    gated on its own segment, not on the end of pretraining. The budget's end (1.0) is the model's Table 2
    fine-tunes of the same tasks and seeds."""
    fractions: list[float] = setting([0.1, 0.25, 0.5], "shares of the pretraining budget, increasing, each in (0, 1)",
                                     min_length=1)
    tasks: list[str] = setting(["sst2"], "GLUE tasks fine-tuned at each point (among finetune.tasks)", min_length=1)
    seeds: list[int] | None = setting(None, "fine-tuning seeds (null: finetune.seeds; a subset of them)")
    models: list[str] | None = setting(None, "model keys (null: every model pretrained on English in the sweep: "
                                             "each [lang->en] and [en][en])")

    @field_validator("fractions")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in v) or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError(f"{v}: give increasing shares strictly between 0 and 1, e.g. [0.1, 0.25, 0.5] (the "
                             "budget's end is the model's own fine-tunes)")
        return v


class WinogenderSection(WinogenderSettings):
    """Winogender as NLI (SuperGLUE AX-g, paper Table 10), scored with each model's RTE fine-tunes."""
    models: list[str] | None = setting(None, "model keys (null: every model fine-tuned on GLUE)")


# One `resources.<kind>` entry per node kind of runner.KINDS, with that kind's default.
ResourceSettings = create_model(
    "ResourceSettings", __base__=StageConfig, __doc__="What one trial of each node kind asks Ray for.",
    **{kind: (Resources, setting(k.resources, f"one {kind} trial")) for kind, k in KINDS.items()})


class Sweep(StageConfig):
    name: str = setting(doc="the sweep's name (MLflow experiment xlt-<name>)")
    corpora: dict[str, CorpusConfig] = setting(doc="named text corpora")
    sources: dict[str, Source] = setting(doc="named source models")
    target: Target = setting(doc="the English vocabulary")
    experiments: Experiments = setting(doc="which models to build")
    output_dir: str = setting("runs/{name}", "every node's folder is <output_dir>/<node id>")
    tracking_uri: str = setting("sqlite:///mlruns/mlflow.db", "MLflow: sqlite:///path or http(s)://server")
    artifact_location: str | None = setting(None, "default: artifacts/ beside the SQLite file")
    seed: int = setting(0, "pretraining and vocabulary-surgery seed")
    ray_address: str | None = setting(None, "null: join the cluster of `ray job submit` or one `ray start`ed on "
                                            "this machine, else start Ray locally")
    max_concurrent_trials: int = setting(8, "trials running at once (within the cluster's resources)", ge=1)
    max_failures: int = setting(1, "retries of a crashed trial (it resumes from its checkpoint)", ge=0)
    cpu_kernels: Literal["native", "avx2", "default"] = setting(
        "native", "CPU trials' float kernels (stages.common.CPU_KERNELS): native: the CPU's best; avx2: the AVX2 "
                  "path on every x86 machine, so a seeded CPU run prints the same numbers on AVX2 and AVX-512 "
                  "machines; default: no vector instructions (slow). Not part of any node's identity")
    log_model_artifacts: bool = setting(False, "upload model folders to MLflow (big); otherwise log their path")
    keep_checkpoints: bool = setting(False, "keep a node's resumable checkpoints once its model/ and DONE exist "
                                            "(default: deleted then; at paper scale they total hundreds of GB)")
    base_dir: str | None = setting(None, "directory the config's relative paths are resolved against (default: "
                                         "where xlt runs); node hashes hold input paths relative to it")
    synthetic: SyntheticConfig | None = setting(None, "generate the synthetic world first (the demo)")
    pretrain: PretrainSettings = setting(PretrainSettings(), "continued pretraining (and [en][en])")
    inits: InitsSection = setting(InitsSection(), "settings of the focus and wechsel vocab modes")
    finetune: FinetuneSection = setting(FinetuneSection(), "GLUE fine-tuning")
    # The evaluation suite; each section left out (null) is not run.
    probe: ProbeSection | None = setting(None, "structural probe")
    wic: WicSection | None = setting(None, "WiC")
    forgetting: ForgettingSection | None = setting(None, "source-language forgetting")
    winogender: WinogenderSection | None = setting(None, "Winogender (AX-g)")
    learning_curve: LearningCurveSection | None = setting(None, "GLUE scores at shares of the pretraining budget")
    resources: ResourceSettings = setting(ResourceSettings(), "Ray resources per trial of each kind")


# --- loading ------------------------------------------------------------------------------------------

def _unwrap(tp):
    """The model type a key path walks into: through Optional, list[...] and dict[str, ...]."""
    while True:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _valid_keys(root: type, loc: tuple) -> list[str]:
    tp = root
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if origin in (list, dict):
            tp = typing.get_args(tp)[-1]
            continue
        if isinstance(tp, type) and issubclass(tp, StageConfig) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (list, dict):
        tp = _unwrap(typing.get_args(tp)[-1])
    return sorted(tp.model_fields) if isinstance(tp, type) and issubclass(tp, StageConfig) else []


def config_error(e: ValidationError, root: type = None, prefix: str = "") -> ConfigError:
    """pydantic's errors as one message per problem, each naming the dotted key (and the valid keys there)."""
    root = root or Sweep
    lines = []
    for err in e.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc)) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {key}; valid keys here: {', '.join(_valid_keys(root, loc[:-1]))}")
        elif err["type"] == "missing":
            lines.append(f"missing required key {key}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = "" if err["type"] == "value_error" else f", got {err['input']!r}"
            lines.append(f"{key}: {msg}{got}")
    return ConfigError(lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n  " + "\n  ".join(lines))


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`a.b.c=value` (value parsed as YAML) set into the raw mapping, before validation."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. pretrain.max_steps=100)")
        path, value = item.split("=", 1)
        node = raw
        parts = path.strip().split(".")
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a mapping")
        node[parts[-1]] = yaml.safe_load(value)
    return raw


def parse_sweep(raw: dict) -> Sweep:
    """Validate a raw mapping (YAML, or the driver's resolved JSON) into a Sweep."""
    try:
        return Sweep.model_validate(raw)
    except ValidationError as e:
        raise config_error(e) from None


def _abs(path: str | None, base: Path) -> str | None:
    if path is None or "://" in path:
        return path
    return str((base / Path(path).expanduser()).resolve())


def _looks_local(model: str, base: Path) -> bool:
    return model.startswith((".", "/", "~")) or (base / model).exists()


def load_sweep(path: str | Path, overrides: list[str] | None = None, base_dir: Path | None = None) -> Sweep:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep config {path} does not exist; pass a YAML file such as configs/demo.yaml")
    try:
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_error(path, e)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    sweep = parse_sweep(apply_overrides(raw, overrides or []))
    validate(sweep)
    return resolve_paths(sweep, base_dir or Path.cwd())


def _yaml_error(path: Path, e: yaml.YAMLError) -> str:
    """One line with file, line and column (1-based, as editors count) instead of yaml's traceback."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    return f"{where}: YAML syntax error: {problem}" + (f" ({context})" if context else "") + \
        "; fix the file there (indentation and ':' after each key are the usual causes)"


def validate(s: Sweep) -> None:
    """The checks that span sections: every name refers to something defined."""
    if s.target.corpus not in s.corpora:
        raise ConfigError(f"target.corpus: unknown corpus {s.target.corpus!r}; defined: {', '.join(s.corpora)}")
    if s.inits.vectors_corpus and s.inits.vectors_corpus not in s.corpora:
        raise ConfigError(f"inits.vectors_corpus: unknown corpus {s.inits.vectors_corpus!r}; defined: "
                          f"{', '.join(s.corpora)}")
    for name, src in s.sources.items():
        if src.build and src.build.corpus not in s.corpora:
            raise ConfigError(f"sources.{name}.build.corpus: unknown corpus {src.build.corpus!r}")
        if src.source_corpus and src.source_corpus not in s.corpora:
            raise ConfigError(f"sources.{name}.source_corpus: unknown corpus {src.source_corpus!r}")
        moved = name in s.experiments.transfer_from and set(s.experiments.vocab_modes) - {"keep"}
        if moved and src.rank == "counts" and not (src.source_corpus or src.build):
            raise ConfigError(f"sources.{name}.rank: counts ranks the source rows by their token counts on a "
                              f"source-language corpus: set sources.{name}.source_corpus to one (e.g. the source "
                              f"language's Wikipedia under `corpora`), or set sources.{name}.rank: vocab-order")
        if src.source_corpus and src.rank != "counts" and not (moved and "wechsel" in s.experiments.vocab_modes
                                                                and not src.wechsel_vectors):
            raise ConfigError(f"sources.{name}.source_corpus is only read with rank: counts (rank is {src.rank}) "
                              "or to train wechsel's source vectors; remove it or set rank: counts")
    e = s.experiments
    if "wechsel" in e.vocab_modes:
        for name in e.transfer_from:
            src = s.sources.get(name)
            if src is None:
                continue
            if not src.wechsel_dictionary:
                raise ConfigError(f"sources.{name}.wechsel_dictionary: vocab mode wechsel aligns the two languages "
                                  "with a bilingual dictionary; give a text file with one 'source word<TAB>English "
                                  "word' per line (WECHSEL's own dicts/data/<language>.txt put the English word "
                                  "first: swap their columns)")
            if not src.wechsel_vectors and not (src.source_corpus or src.build):
                raise ConfigError(f"sources.{name}.wechsel_vectors: vocab mode wechsel needs source-language word "
                                  f"vectors: a fastText .bin (e.g. cc.<lang>.300.bin), or sources.{name}.source_corpus "
                                  "to train them on")
    for key, names in (("transfer_from", e.transfer_from), ("direct", e.direct)):
        for n in names:
            if n not in s.sources:
                raise ConfigError(f"experiments.{key}: unknown source {n!r}; defined: {', '.join(s.sources)}")
    if e.scratch:
        like = e.scratch_like or (e.transfer_from[0] if e.transfer_from else None)
        if like is None or like not in s.sources:
            raise ConfigError("experiments.scratch_like: name the source whose architecture the [en][en] model copies")
    if e.scratch_budget == "match":
        for n in e.transfer_from:
            src = s.sources[n]
            if src.pretraining_tokens is None and not (src.build and src.build.pretrain.max_steps):
                raise ConfigError(f"experiments.scratch_budget: match needs the tokens {n!r} was pretrained on: set "
                                  f"sources.{n}.pretraining_tokens (from its paper or model card)")
    if s.forgetting is not None:
        f = s.forgetting
        wanted = set(f.english_tasks) | {t for src in s.sources.values() for t in src.source_tasks}
        for t in sorted(wanted):
            if not is_source_task(t):
                raise ConfigError(f"source-language task {t!r}: use scandisent-<lang> or stsb-<lang>")
            if t not in f.data:
                raise ConfigError(f"forgetting.data: no data for task {t!r}; map it to a local file/folder or to "
                                  "hub:<dataset id>, e.g. scandisent-sv: data/ScandiSent/sv.csv")
        if not any(src.source_tasks for src in s.sources.values()):
            raise ConfigError("forgetting: no source lists source_tasks; add e.g. sources.sv.source_tasks: "
                              "[scandisent-sv] or remove the forgetting section")
    if s.winogender is not None and "rte" not in s.finetune.tasks:
        raise ConfigError("winogender: it is scored with RTE fine-tunes; add rte to finetune.tasks")
    if s.learning_curve is not None:
        lc = s.learning_curve
        for t in lc.tasks:
            if t not in s.finetune.tasks:
                raise ConfigError(f"learning_curve.tasks: {t!r} is not in finetune.tasks ({', '.join(s.finetune.tasks)}"
                                  "): the budget's end is read from the model's own fine-tunes of the task; add it "
                                  "there, change learning_curve.tasks, or leave the curves out (learning_curve=null)")
        extra = [x for x in (lc.seeds or []) if x not in s.finetune.seeds]
        if extra:
            raise ConfigError(f"learning_curve.seeds: {extra} not in finetune.seeds {s.finetune.seeds}: the budget's "
                              "end is read from the model's own fine-tunes of those seeds")


def resolve_paths(s: Sweep, base: Path) -> Sweep:
    """Relative paths made absolute against `base` (the directory `xlt` runs in)."""
    base = Path(_abs(s.base_dir, base)) if s.base_dir else base
    up: dict = {"output_dir": _abs(s.output_dir.format(name=s.name), base), "base_dir": str(base.resolve())}
    uri = s.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + _abs(uri[len("sqlite:///"):], base)
    elif "://" not in uri:
        raise ConfigError(f"tracking_uri {uri!r}: use sqlite:///path/mlflow.db or an http(s):// server "
                          "(MLflow 3 refuses a plain ./mlruns file store)")
    up["tracking_uri"] = uri
    if s.artifact_location is None and uri.startswith("sqlite:///"):
        up["artifact_location"] = str(Path(uri[len("sqlite:///"):]).parent / "artifacts")
    else:
        up["artifact_location"] = _abs(s.artifact_location, base)
    up["corpora"] = {k: c.model_copy(update={"files": [_abs(f, base) for f in c.files]}) for k, c in s.corpora.items()}
    up["sources"] = {k: src.model_copy(update={"model": _abs(src.model, base) if src.model and
                                               _looks_local(src.model, base) else src.model,
                                               "wechsel_dictionary": _abs(src.wechsel_dictionary, base),
                                               "wechsel_vectors": _abs(src.wechsel_vectors, base)})
                     for k, src in s.sources.items()}
    w = s.inits.wechsel
    up["inits"] = s.inits.model_copy(update={"wechsel": w.model_copy(update={"target_vectors":
                                                                              _abs(w.target_vectors, base)})})
    up["finetune"] = s.finetune.model_copy(update={"data_dir": _abs(s.finetune.data_dir, base)})
    if s.synthetic is not None:
        up["synthetic"] = s.synthetic.model_copy(update={"out_dir": _abs(s.synthetic.out_dir, base)})
    if s.probe is not None:
        up["probe"] = s.probe.model_copy(update={k: _abs(getattr(s.probe, k), base) for k in ("train", "dev", "test")})
    if s.wic is not None:
        up["wic"] = s.wic.model_copy(update={"data_dir": _abs(s.wic.data_dir, base)})
    if s.forgetting is not None:  # "hub:<id>" names a hub dataset; anything else is a local path
        up["forgetting"] = s.forgetting.model_copy(update={"data": {
            t: (v if v.startswith(HUB_PREFIX) else _abs(v, base)) for t, v in s.forgetting.data.items()}})
    if s.winogender is not None:
        up["winogender"] = s.winogender.model_copy(update={"data_file": _abs(s.winogender.data_file, base)})
    return s.model_copy(update=up)


def check_local_data(s: Sweep) -> None:
    """Every local input file and folder the sweep names exists (and no corpus file is empty), checked
    before the first trial starts: otherwise a typo in, say, the GLUE root only shows once a fine-tuning
    trial runs, hours of pretraining later. Called by `xlt run` after the synthetic world is written;
    `xlt plan` and `xlt status` work without the data. Hub ids are not checked (there may be no network)."""
    problems: list[str] = []

    def need(key: str, path: str | None, kind: str = "file") -> None:
        if path is None:
            return
        p = Path(path)
        if kind == "file" and not p.is_file():
            problems.append(f"{key}: no file {p}")
        elif kind == "dir" and not p.is_dir():
            problems.append(f"{key}: no folder {p}")
        elif kind == "any" and not p.exists():
            problems.append(f"{key}: {p} does not exist")

    for name, c in s.corpora.items():
        for f in c.files:
            need(f"corpora.{name}.files", f)
            if Path(f).is_file() and Path(f).stat().st_size == 0:
                problems.append(f"corpora.{name}.files: {f} is empty")
    for name, src in s.sources.items():
        if src.model and src.model.startswith("/"):   # resolve_paths made local folders absolute
            need(f"sources.{name}.model", src.model, "dir")
    if s.finetune.data_dir is not None:
        for task in s.finetune.tasks:
            spec = GLUE_TASKS[task]
            for f in ["train.tsv", *(d.tsv_file for d in spec.dev_splits)]:
                need(f"finetune.data_dir ({task})", str(Path(s.finetune.data_dir) / spec.folder / f))
    if s.probe is not None:
        for split in ("train", "dev", "test"):
            need(f"probe.{split}", getattr(s.probe, split))
    if s.wic is not None and s.wic.data_dir is not None:
        for split in ("train", "dev"):
            need(f"wic.data_dir ({split})", str(Path(s.wic.data_dir) / split), "dir")
    if s.forgetting is not None:
        for task, v in s.forgetting.data.items():
            if not v.startswith(HUB_PREFIX):
                need(f"forgetting.data.{task}", v, "any")
    if s.winogender is not None:
        need("winogender.data_file", s.winogender.data_file)
    if "wechsel" in s.experiments.vocab_modes:
        from stages.common import StageError
        from stages.inits import check_wechsel_files

        for name in s.experiments.transfer_from:
            src = s.sources[name]
            try:
                check_wechsel_files(src.wechsel_dictionary, src.wechsel_vectors, s.inits.wechsel.target_vectors)
            except StageError as e:
                problems.append(f"sources.{name} (wechsel): {e}")
    if problems:
        shown = "\n  ".join(problems[:12]) + (f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise ConfigError(f"{len(problems)} local input(s) missing, nothing was run:\n  {shown}\nFix the paths in "
                          "the YAML or with key=value overrides (a GLUE root holds one folder per task, as "
                          "download_glue_data.py writes it; null data paths load from the hub).")


def to_dict(s: Sweep) -> dict:
    return s.model_dump()
