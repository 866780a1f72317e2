"""The sweep configuration: YAML validated strictly into typed dataclasses.

Unknown keys and wrong types are errors that name the dotted key. Command-line overrides
(`finetune.seeds=[1,2]`, `pretrain.max_steps=100`) are applied to the YAML before validation, so they
are checked by the same rules. Relative paths are resolved against the directory `xlt` runs in, once,
in the driver: Ray trials run in other directories.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stages.corpus import CorpusConfig
from stages.glue import GLUE_TASKS
from stages.synthetic import SyntheticConfig
from stages.tokenizer import TRAINERS
from stages.transfer import MODES

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "demo.yaml"
TRANSFER_MODES = tuple(m for m in MODES if m != "scratch")
BUILD_MODEL_TYPES = ("bert", "roformer")   # MLM families a source can be built from scratch as
HUB_PREFIX = "hub:"   # forgetting.data values naming a hub dataset rather than a local path


class ConfigError(ValueError):
    """A sweep config that cannot run; the message names the key and what to write instead."""


@dataclass
class Architecture:
    """Shape of a BERT built from scratch inside the sweep (the demo's source model).

    `model_type` "roformer" is BERT with rotary position embeddings (Su et al., 2021) in place of learned
    absolute ones; everything else (post-LN blocks, WordPiece, tied MLM head) is BERT's. Tiny models need
    it: at hidden size 64, BERT's absolute positions are not learned within a demo budget (see README).
    """
    model_type: str = "bert"
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512


@dataclass
class PretrainSettings:
    """Continued-pretraining hyperparameters (paper Table 5 defaults)."""
    learning_rate: float = 5e-5
    batch_size: int = 128
    per_device_batch_size: int = 32
    block_size: int = 128
    mlm_probability: float = 0.15
    epochs: float = 1.0
    max_steps: int | None = None
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    eval_fraction: float = 0.01
    max_eval_blocks: int = 512
    eval_every: int = 1000
    log_every: int = 50
    checkpoint_every: int = 1000
    mixed_precision: str = "auto"


@dataclass
class BuildSource:
    """Pretrain a source model from scratch in the sweep (used when no real one exists, e.g. the demo)."""
    corpus: str
    vocab_size: int = 32000
    architecture: Architecture = field(default_factory=Architecture)
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)


@dataclass
class Source:
    """A monolingual source model: a hub id / local folder (`model`), or one built in the sweep (`build`)."""
    model: str | None = None
    build: BuildSource | None = None
    lowercase: bool = False              # casing of this source; the English vocabulary paired with it follows
    label: str | None = None             # name in the report (default: the key)
    source_corpus: str | None = None     # rank source rows by counts on this corpus instead of vocab order
    keep_vocab_size: int | None = 32000  # `keep` mode: first N tokens (null: all of them, as for Dutch)
    grow_embeddings: bool = False        # frequency modes: new random rows when English has more tokens than the source
    source_tasks: list[str] = field(default_factory=list)  # forgetting: e.g. [scandisent-sv, stsb-sv] (paper 4.7)


@dataclass
class Target:
    corpus: str
    vocab_size: int = 32000
    min_frequency: int = 2
    limit_alphabet: int | None = 1000    # characters kept as letters; Wikipedia's rare ones would fill the vocabulary
    trainer: str = "exact"               # exact (same vocabulary in every process) or tokenizers (Rust, for Wikipedia)


@dataclass
class Experiments:
    """Which rows of Table 2 to build."""
    transfer_from: list[str] = field(default_factory=list)   # sources moved to English
    vocab_modes: list[str] = field(default_factory=lambda: ["keep", "frequency"])
    direct: list[str] = field(default_factory=list)           # sources fine-tuned directly ([lang], BERT-base)
    scratch: bool = True                                      # [en][en]: English model from scratch
    scratch_like: str | None = None                           # source whose architecture [en][en] copies
    scratch_lowercase: bool = False


@dataclass
class FinetuneSettings:
    """GLUE fine-tuning (paper Table 5 defaults); data from a GLUE TSV root or the hub."""
    tasks: list[str] = field(default_factory=lambda: ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    data_dir: str | None = None
    hub_dataset: str = "nyu-mll/glue"
    learning_rate: float = 2e-5
    batch_size: int = 32
    epochs: float = 3.0
    max_length: int = 128
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    eval_batch_size: int = 128
    log_every: int = 50
    save_model: bool = False


@dataclass
class ProbeSettings:
    """Structural probe (Hewitt & Manning 2019) on English dependency trees: paper Table 3, UUAS and DSpr.

    Hidden states of `layers` are extracted once per model (a `features` node) and every layer's probe is a
    trial of its own. Data: CoNLL-U files (paper: UD English-EWT train/dev/test) or a hub dataset.
    """
    layers: list[int]                    # 0 = embedding output, k = output of layer k
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    hub_dataset: str | None = None       # instead of files, e.g. universal_dependencies
    hub_config: str = "en_ewt"
    rank: int | None = None              # null: the hidden size (a full-rank probe)
    pooling: str = "mean"                # subwords -> word: mean (Hewitt & Manning), first or last
    punctuation: str = "exclude"         # words tagged PUNCT left out of UUAS and DSpr, as Hewitt & Manning do
    epochs: int = 40
    learning_rate: float = 1.0e-3
    batch_size: int = 20                 # sentences
    patience: int = 4                    # epochs without a better dev loss before stopping
    max_length: int = 512                # longer sentences (in subwords) are skipped and counted
    max_sentences: int | None = None     # per split, for quick runs
    seed: int = 0
    models: list[str] | None = None      # model keys to probe (null: every model of the sweep)


@dataclass
class WicSettings:
    """Words in Context (paper Table 3 and 11): the target word pooled in each sentence, fine-tuned per seed."""
    data_dir: str | None = None          # the official WiC folder (train/, dev/); null: the hub
    hub_dataset: str = "super_glue"
    hub_config: str = "wic"
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    learning_rate: float = 2e-5
    batch_size: int = 32
    epochs: float = 3.0
    max_length: int = 128
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    max_train_examples: int | None = None
    models: list[str] | None = None


@dataclass
class ForgettingSettings:
    """Source-language forgetting (paper 4.7 and Appendix D, Table 6 hyperparameters).

    Every source with `source_tasks` is fine-tuned on them with its own models ([lang] and each
    [lang->en] model), and on `english_tasks` too, so each group compares source and English performance.
    """
    data: dict[str, str] = field(default_factory=dict)   # task -> local file/folder, or hub:<dataset id>
    english_tasks: list[str] = field(default_factory=lambda: ["scandisent-en"])
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    learning_rate: float = 4e-5
    batch_size: int = 128
    epochs: float = 2.0
    max_length: int = 128
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    max_train_examples: int | None = None
    log_every: int = 50


@dataclass
class WinogenderSettings:
    """Winogender as NLI (SuperGLUE AX-g, paper Table 10), scored with each model's RTE fine-tunes."""
    data_file: str | None = None         # AX-g.jsonl; null: the hub
    hub_dataset: str = "super_glue"
    hub_config: str = "axg"
    batch_size: int = 64
    max_length: int = 128
    models: list[str] | None = None


@dataclass
class Resources:
    """What one trial of a kind asks Ray for; `gpu` may be fractional (e.g. 0.25: four fine-tunes per GPU)."""
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass
class ResourceSettings:
    tokenizer: Resources = field(default_factory=lambda: Resources(cpu=1, gpu=0))
    tokenize: Resources = field(default_factory=lambda: Resources(cpu=1, gpu=0))   # corpus -> token cache
    pretrain: Resources = field(default_factory=lambda: Resources(cpu=4, gpu=1))
    finetune: Resources = field(default_factory=lambda: Resources(cpu=2, gpu=0.25))
    features: Resources = field(default_factory=lambda: Resources(cpu=2, gpu=0.25))
    probe: Resources = field(default_factory=lambda: Resources(cpu=1, gpu=0.1))
    wic: Resources = field(default_factory=lambda: Resources(cpu=2, gpu=0.25))
    forget: Resources = field(default_factory=lambda: Resources(cpu=2, gpu=0.25))
    winogender: Resources = field(default_factory=lambda: Resources(cpu=1, gpu=0.1))


@dataclass
class Sweep:
    name: str
    corpora: dict[str, CorpusConfig]
    sources: dict[str, Source]
    target: Target
    experiments: Experiments
    output_dir: str = "runs/{name}"
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_location: str | None = None   # default: `artifacts/` beside the SQLite file
    seed: int = 0
    ray_address: str | None = None          # None: start Ray locally, or join the cluster of `ray job submit`
    max_concurrent_trials: int = 8
    max_failures: int = 1                   # retries of a crashed trial (it resumes from its checkpoint)
    log_model_artifacts: bool = False       # upload model folders to MLflow (big); otherwise log their path
    synthetic: SyntheticConfig | None = None
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    # The evaluation suite; each section left out (null) is not run.
    probe: ProbeSettings | None = None
    wic: WicSettings | None = None
    forgetting: ForgettingSettings | None = None
    winogender: WinogenderSettings | None = None
    resources: ResourceSettings = field(default_factory=ResourceSettings)


# --- strict conversion ----------------------------------------------------------------------------

def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} is not a valid {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, item = typing.get_args(tp)
        return {str(k): _convert(v, item, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads 1e-3 (no dot) as a string; accept what is unmistakably a number.
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass `cls` from a mapping; unknown or missing keys are errors naming the key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]!s}; valid keys here: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {key}")
    return cls(**kwargs)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`a.b.c=value` (value parsed as YAML) set into the raw mapping."""
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
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    raw = apply_overrides(raw, overrides or [])
    sweep = from_dict(Sweep, raw)
    validate(sweep)
    return resolve_paths(sweep, base_dir or Path.cwd())


def validate(s: Sweep) -> None:
    """Cross-field checks: every name refers to something defined, every mode and task exists."""
    for name, corpus in s.corpora.items():
        if bool(corpus.files) == bool(corpus.hub_dataset):
            raise ConfigError(f"corpora.{name}: give either files or hub_dataset, exactly one")
    if s.target.corpus not in s.corpora:
        raise ConfigError(f"target.corpus: unknown corpus {s.target.corpus!r}; defined: {', '.join(s.corpora)}")
    if s.target.trainer not in TRAINERS:
        raise ConfigError(f"target.trainer: unknown {s.target.trainer!r}; choose from {', '.join(TRAINERS)}")
    if s.target.limit_alphabet is not None and s.target.limit_alphabet < 1:
        raise ConfigError(f"target.limit_alphabet: {s.target.limit_alphabet} keeps no character; use at least 1 "
                          "(1000 is the tokenizers BERT trainer's default), or null for every character")
    for name, src in s.sources.items():
        if (src.model is None) == (src.build is None):
            raise ConfigError(f"sources.{name}: give either model (hub id or folder) or build, exactly one")
        if src.build and src.build.corpus not in s.corpora:
            raise ConfigError(f"sources.{name}.build.corpus: unknown corpus {src.build.corpus!r}")
        if src.build and src.build.architecture.model_type not in BUILD_MODEL_TYPES:
            raise ConfigError(f"sources.{name}.build.architecture.model_type: unknown {src.build.architecture.model_type!r}; "
                              f"choose from {', '.join(BUILD_MODEL_TYPES)}")
        if src.source_corpus and src.source_corpus not in s.corpora:
            raise ConfigError(f"sources.{name}.source_corpus: unknown corpus {src.source_corpus!r}")
    e = s.experiments
    for key, names in (("transfer_from", e.transfer_from), ("direct", e.direct)):
        for n in names:
            if n not in s.sources:
                raise ConfigError(f"experiments.{key}: unknown source {n!r}; defined: {', '.join(s.sources)}")
    for m in e.vocab_modes:
        if m not in TRANSFER_MODES:
            raise ConfigError(f"experiments.vocab_modes: unknown vocab mode {m!r}; choose from {', '.join(TRANSFER_MODES)}")
    if e.scratch:
        like = e.scratch_like or (e.transfer_from[0] if e.transfer_from else None)
        if like is None or like not in s.sources:
            raise ConfigError("experiments.scratch_like: name the source whose architecture the [en][en] model copies")
    for t in s.finetune.tasks:
        if t not in GLUE_TASKS:
            raise ConfigError(f"finetune.tasks: unknown task {t!r}; choose from {', '.join(GLUE_TASKS)}"
                              + (" (WNLI is excluded, as in the paper)" if t == "wnli" else ""))
    if not s.finetune.seeds:
        raise ConfigError("finetune.seeds: give at least one seed")
    _validate_evaluations(s)
    for kind in RESOURCE_KINDS:
        r = getattr(s.resources, kind)
        if r.cpu <= 0 or r.gpu < 0 or (r.gpu > 1 and r.gpu != int(r.gpu)):
            raise ConfigError(f"resources.{kind}: cpu must be > 0, gpu a fraction <= 1 or a whole number")
    precisions = [s.pretrain.mixed_precision, s.finetune.mixed_precision]
    precisions += [x.mixed_precision for x in (s.wic, s.forgetting) if x is not None]
    for mp in precisions:
        if mp not in ("auto", "no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision {mp!r}: use auto, no, bf16 or fp16")


RESOURCE_KINDS = ("tokenizer", "tokenize", "pretrain", "finetune", "features", "probe", "wic", "forget", "winogender")


def _validate_evaluations(s: Sweep) -> None:
    from stages.source_tasks import is_source_task

    if s.probe is not None:
        p = s.probe
        if not p.layers or any(k < 0 for k in p.layers) or len(set(p.layers)) != len(p.layers):
            raise ConfigError("probe.layers: list distinct layer numbers >= 0 (0 = embeddings), e.g. [0, 1, 2]")
        if p.hub_dataset is None and not (p.train and p.dev):
            raise ConfigError("probe: give CoNLL-U files train and dev (and test), or hub_dataset")
        if p.pooling not in ("mean", "first", "last"):
            raise ConfigError(f"probe.pooling {p.pooling!r}: use mean, first or last")
        if p.punctuation not in ("exclude", "include"):
            raise ConfigError(f"probe.punctuation {p.punctuation!r}: use exclude or include")
    for key in ("wic", "forgetting"):
        section = getattr(s, key)
        if section is not None and not section.seeds:
            raise ConfigError(f"{key}.seeds: give at least one seed")
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


def resolve_paths(s: Sweep, base: Path) -> Sweep:
    s.output_dir = _abs(s.output_dir.format(name=s.name), base)
    if s.tracking_uri.startswith("sqlite:///") and not s.tracking_uri.startswith("sqlite:////"):
        s.tracking_uri = "sqlite:///" + _abs(s.tracking_uri[len("sqlite:///"):], base)
    elif "://" not in s.tracking_uri:
        raise ConfigError(f"tracking_uri {s.tracking_uri!r}: use sqlite:///path/mlflow.db or an http(s):// server "
                          "(MLflow 3 refuses a plain ./mlruns file store)")
    if s.artifact_location is None and s.tracking_uri.startswith("sqlite:///"):
        s.artifact_location = str(Path(s.tracking_uri[len("sqlite:///"):]).parent / "artifacts")
    else:
        s.artifact_location = _abs(s.artifact_location, base)
    s.corpora = {k: dataclasses.replace(c, files=[_abs(f, base) for f in c.files]) for k, c in s.corpora.items()}
    for src in s.sources.values():
        if src.model and _looks_local(src.model, base):
            src.model = _abs(src.model, base)
    s.finetune.data_dir = _abs(s.finetune.data_dir, base)
    if s.synthetic is not None:
        s.synthetic = dataclasses.replace(s.synthetic, out_dir=_abs(s.synthetic.out_dir, base))
    if s.probe is not None:
        for split in ("train", "dev", "test"):
            setattr(s.probe, split, _abs(getattr(s.probe, split), base))
    if s.wic is not None:
        s.wic.data_dir = _abs(s.wic.data_dir, base)
    if s.forgetting is not None:  # "hub:<id>" names a hub dataset; anything else is a local path
        s.forgetting.data = {t: (v if v.startswith(HUB_PREFIX) else _abs(v, base)) for t, v in s.forgetting.data.items()}
    if s.winogender is not None:
        s.winogender.data_file = _abs(s.winogender.data_file, base)
    return s


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
    if problems:
        shown = "\n  ".join(problems[:12]) + (f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise ConfigError(f"{len(problems)} local input(s) missing, nothing was run:\n  {shown}\nFix the paths in "
                          "the YAML or with key=value overrides (a GLUE root holds one folder per task, as "
                          "download_glue_data.py writes it; null data paths load from the hub).")


def to_dict(s: Sweep) -> dict:
    return dataclasses.asdict(s)
