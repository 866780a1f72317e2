"""The trial graph of a sweep: which nodes exist, what each needs, and where it writes.

Node kinds are listed once, in `orchestrator.runner.KINDS`. A node holds the stage config it runs, fully
resolved (absolute paths of its inputs and its folder `<output_dir>/<node id>/`), so a worker needs the
node and nothing else. The graph is put together by one small builder per part of the study: the models
(tokenizers, token caches, pretraining), GLUE, Winogender, the structural probe, WiC and forgetting.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config import HUB_PREFIX, ConfigError, Sweep
from orchestrator.runner import KINDS
from stages.common import StageConfig, file_digest, result_fields
from stages.corpus import CorpusConfig, TokenizeConfig
from stages.features import FeaturesConfig
from stages.finetune import FinetuneConfig
from stages.glue import GLUE_TASKS, find_test_file
from stages.pretrain import PretrainConfig
from stages.probe import ProbeConfig
from stages.reattach import ReattachConfig
from stages.tokenizer import TokenizerConfig
from stages.transfer import TransferConfig, TransferSettings
from stages.vectors import VectorsConfig
from stages.wic import WicConfig
from stages.winogender import WinogenderConfig


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    parents: tuple[str, ...]
    params: dict          # the stage config(s) it runs ("config"; pretrain also "transfer"), JSON: also MLflow params
    resources: dict       # {"cpu": x, "gpu": y} for Ray
    model: str | None = None   # the model key (row of Table 2) the node belongs to
    row: tuple[str, str] | None = None  # (Lang, Vocab) as in the paper's tables
    # Fingerprint of everything that decides the node's output: its configs' hashed fields, the identity of
    # its local data files and its parents' hashes. A DONE marker counts only for the same hash, so a changed
    # setting re-runs the node and everything downstream of it instead of silently reusing old results.
    hash: str = ""
    identity: dict = field(default_factory=dict, repr=False, compare=False)   # what `hash` is computed from

    def spec(self) -> dict:
        """What a worker needs to run the node (see `from_spec`)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "identity"}

    @classmethod
    def from_spec(cls, spec: dict) -> "Node":
        row = tuple(spec["row"]) if spec.get("row") else None
        return cls(**{**spec, "parents": tuple(spec["parents"]), "row": row})


@dataclass
class Graph:
    sweep: Sweep
    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, node: Node) -> Node:
        """Add `node`; an id that comes back must come with the same parameters (it is the same work)."""
        old = self.nodes.get(node.id)
        if old is None:
            self.nodes[node.id] = node
            return node
        if (old.kind, old.parents, old.params) != (node.kind, node.parents, node.params):
            raise ConfigError(f"two different nodes of this sweep would write to {node.id}; give the sources "
                              "involved distinct names (the node id is built from them)")
        return old

    def node_dir(self, node_id: str) -> Path:
        return Path(self.sweep.output_dir) / node_id

    def children(self, node_id: str) -> list[str]:
        return [n.id for n in self.nodes.values() if node_id in n.parents]

    def descendants(self, node_id: str) -> list[str]:
        out, stack = [], [node_id]
        while stack:
            for c in self.children(stack.pop()):
                if c not in out:
                    out.append(c)
                    stack.append(c)
        return out

    def by_kind(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes.values():
            out.setdefault(n.kind, []).append(n)
        return out

    # --- building ---------------------------------------------------------------------------------

    def emit(self, node_id: str, kind: str, parents: tuple[str, ...], config: StageConfig, *,
             model: str | None = None, row=None, data: list[str] | tuple = (), **extra) -> Node:
        """A node running `config` (an instance of its kind's config type). `data`: the local files and
        folders it reads, whose sizes and mtimes enter the hash; `extra`: further stage configs or values."""
        assert isinstance(config, KINDS[kind].config), (kind, type(config))
        params = {"config": config.model_dump(), **{k: _dump(v) for k, v in extra.items()}}
        identity = {"config": result_fields(config), **{k: _identity(v) for k, v in extra.items()}}
        out_root, base = Path(self.sweep.output_dir), Path(self.sweep.base_dir or Path.cwd())
        local = _local_inputs(identity, out_root)
        # Local inputs enter the hash by content, not place: each is stamped (unless `data` stamps files in it,
        # as it does per GLUE task under the GLUE root, or it is a corpus file, which the corpus fingerprint
        # covers) and its path is left out.
        covered = [Path(d) for d in data] + [Path(f) for c in (config, *extra.values())
                                             for f in getattr(getattr(c, "corpus", None), "files", None) or []]
        unstamped = [p for p in local if not any(c == Path(p) or Path(p) in c.parents for c in covered)]
        identity = _portable(identity, out_root, base, set(local))
        identity["data"] = _data_stamp(config, extra, [*data, *unstamped])
        r = getattr(self.sweep.resources, kind)
        return self.add(Node(node_id, kind, tuple(parents), params, {"cpu": r.cpu, "gpu": r.gpu}, model,
                             row, identity=identity))


def _dump(v):
    return v.model_dump() if isinstance(v, StageConfig) else v


# TransferConfig fields read by one mode only: left out of every other mode's identity, so settings of focus or
# wechsel never make a frequency node stale (nor did adding them make finished nodes of older sweeps stale).
_MODE_FIELDS = {"focus": ("focus", "focus_vectors"),
                "wechsel": ("wechsel", "wechsel_dictionary", "wechsel_source_vectors", "wechsel_target_vectors")}


def _identity(v):
    if not isinstance(v, StageConfig):
        return v
    out = result_fields(v)
    if isinstance(v, TransferConfig):
        for mode, names in _MODE_FIELDS.items():
            if v.mode != mode:
                for name in names:
                    out.pop(name, None)
    return out


def _local_inputs(value, out_root: Path) -> list[str]:
    """Absolute paths in the identity that exist on this machine outside the output folder: the node's inputs."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in _local_inputs(v, out_root)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _local_inputs(v, out_root)]
    if isinstance(value, str) and value.startswith("/") and out_root not in Path(value).parents \
            and Path(value) != out_root and Path(value).exists():
        return [value]
    return []


def _portable(value, out_root: Path, base: Path, local: set[str]):
    """The identity without absolute paths: a path under the output folder relative to it (`$OUT/...`), a
    local input as `$LOCAL` (its content is stamped instead), any other path relative to the directory the
    config's relative paths are resolved against (`base_dir`). So an output folder copied or moved, or the
    same data mounted elsewhere, keeps every node done."""
    if isinstance(value, dict):
        return {k: _portable(v, out_root, base, local) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v, out_root, base, local) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        p = Path(value)
        if p == out_root or out_root in p.parents:
            return "$OUT/" + p.relative_to(out_root).as_posix()
        return "$LOCAL" if value in local else os.path.relpath(p, base)
    return value


def _file_stamps(path: str) -> list:
    """Name (within the folder), size and content digest of each file: the data by content, not location."""
    p = Path(path)
    if p.is_dir():
        return [[f.relative_to(p).as_posix(), f.stat().st_size, file_digest(f)]
                for f in sorted(f for f in p.rglob("*") if f.is_file())]
    return [[p.name, p.stat().st_size, file_digest(p)]] if p.is_file() else [[p.name, None, None]]


def _data_stamp(config: StageConfig, extra: dict, data) -> list:
    """The content of the local data a node reads (a regenerated file with other bytes changes it)."""
    stamp = [c.corpus.fingerprint() for c in (config, *extra.values()) if isinstance(getattr(c, "corpus", None),
                                                                                    CorpusConfig)]
    for path in data:
        stamp += _file_stamps(path)
    return stamp


def _node_hash(node: Node, parent_hashes: list[str]) -> str:
    blob = json.dumps({"kind": node.kind, "identity": node.identity, "parents": parent_hashes}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _casing(lowercase: bool) -> str:
    return "uncased" if lowercase else "cased"


@dataclass(frozen=True)
class Model:
    """A model of the study (a row of Table 2) that fine-tunes and evaluations run on."""
    key: str
    row: tuple[str, str]
    path: str               # its folder (or hub id), as the stages load it
    node: str | None        # the pretrain node that writes it; None for a hub / local model
    source: str             # the source it comes from ("en" for [en][en])
    glue: bool = True       # fine-tuned on GLUE ([lang] models only when listed in experiments.direct)

    @property
    def parents(self) -> tuple[str, ...]:
        return (self.node,) if self.node else ()


# --- models: tokenizers, token caches, pretraining ------------------------------------------------------

class _ModelBuilder:
    def __init__(self, g: Graph):
        self.g, self.s = g, g.sweep
        self.models: dict[str, Model] = {}

    def label(self, name: str) -> str:
        return self.s.sources[name].label or name

    def tok_dir(self, tokenizer_node: str) -> str:
        return str(self.g.node_dir(tokenizer_node) / "tokenizer")

    @property
    def cache_dir(self) -> str:
        return str(Path(self.s.output_dir) / "cache")

    def tokenizer(self, name: str, corpus: str, vocab_size: int, lowercase: bool, family: str = "wordpiece") -> str:
        # one English vocabulary per casing and tokenizer family: a RoBERTa source needs byte-level BPE
        node_id = f"tokenizer/{name}-{vocab_size}-{_casing(lowercase)}" + ("" if family == "wordpiece" else
                                                                          f"-{family}")
        settings = self.s.target.model_dump(exclude={"corpus", "language"}) | {"vocab_size": vocab_size}
        cfg = TokenizerConfig(**settings, corpus=self.s.corpora[corpus], lowercase=lowercase,
                              output_dir=self.tok_dir(node_id), family=family)
        return self.g.emit(node_id, "tokenizer", (), cfg, corpus_name=corpus).id

    def english_tokenizer(self, lowercase: bool, family: str = "wordpiece") -> str:
        return self.tokenizer(self.s.target.language, self.s.target.corpus, self.s.target.vocab_size, lowercase,
                              family)

    def tokenized(self, corpus: str, tokenizer: str, label: str, parents: tuple[str, ...]) -> str:
        """The CPU node that writes the token cache and counts of (corpus, tokenizer) before any pretraining
        node that reads them starts: otherwise the first of them tokenizes (Wikipedia: hours) while holding
        its GPU, and the others hold theirs waiting on the cache lock."""
        node_id = f"tokenize/{corpus}/{label}"
        cfg = TokenizeConfig(corpus=self.s.corpora[corpus], tokenizer=tokenizer,
                             cache_dir=self.cache_dir, output_dir=str(self.g.node_dir(node_id)),
                             name=corpus)
        return self.g.emit(node_id, "tokenize", parents, cfg).id

    def tokenized_by(self, corpus: str, tokenizer_node: str) -> str:
        return self.tokenized(corpus, self.tok_dir(tokenizer_node),
                              tokenizer_node.split("/", 1)[1], (tokenizer_node,))

    def counts(self, tokenize_node: str) -> str:
        return str(self.g.node_dir(tokenize_node) / "token_counts.npy")

    def vectors(self, corpus: str, unit: str, settings, tokenizer_node: str | None = None,
                lowercase: bool = False) -> str:
        """The fastText vectors node of (corpus, unit): target tokens for focus (tokenized by `tokenizer_node`),
        words for wechsel. One per corpus and unit, shared by every node that reads it."""
        label = tokenizer_node.split("/", 1)[1] if tokenizer_node else f"words-{_casing(lowercase)}"
        node_id = f"vectors/{corpus}/{label}"
        cfg = VectorsConfig(**settings.model_dump(), corpus=self.s.corpora[corpus], unit=unit, lowercase=lowercase,
                            tokenizer=self.tok_dir(tokenizer_node) if tokenizer_node else None,
                            output_dir=str(self.g.node_dir(node_id)))
        return self.g.emit(node_id, "vectors", (tokenizer_node,) if tokenizer_node else (), cfg).id

    def vectors_file(self, node_id: str) -> str:
        return str(self.g.node_dir(node_id) / "vectors.bin")

    def _init_inputs(self, name: str, mode: str, tok: str) -> tuple[tuple[str, ...], dict]:
        """The vectors nodes and TransferConfig fields of the focus and wechsel modes."""
        s, src = self.s, self.s.sources[name]
        if mode == "focus":
            vec = self.vectors(s.inits.vectors_corpus or s.target.corpus, "tokens", s.inits.focus.vectors, tok)
            return (vec,), {"focus": s.inits.focus, "focus_vectors": self.vectors_file(vec)}
        if mode != "wechsel":
            return (), {}
        w, parents = s.inits.wechsel, ()
        src_vec, tgt_vec = src.wechsel_vectors, w.target_vectors
        if src_vec is None:
            node = self.vectors(src.source_corpus or src.build.corpus, "words", w.vectors, lowercase=src.lowercase)
            parents, src_vec = parents + (node,), self.vectors_file(node)
        if tgt_vec is None:
            node = self.vectors(s.inits.vectors_corpus or s.target.corpus, "words", w.vectors, lowercase=src.lowercase)
            parents, tgt_vec = parents + (node,), self.vectors_file(node)
        return parents, {"wechsel": w, "wechsel_dictionary": src.wechsel_dictionary,
                         "wechsel_source_vectors": src_vec, "wechsel_target_vectors": tgt_vec}

    def pretrain(self, key: str, parents: tuple[str, ...], transfer: TransferConfig, corpus: str, settings,
                 row, curve: bool = False, extra_tokens: int = 0) -> str:
        """The pretraining node of model `key`. With `curve` (learning_curve), a chain of segment nodes cut at
        the curve's fractions comes first: the first runs the transfer into its init/ and trains to the first
        cut, each next one resumes from the checkpoint before it, and `pretrain/<key>` finishes the budget."""
        node_id = f"pretrain/{key}"
        cuts = self.s.learning_curve.fractions if curve else []
        first = self.g.node_dir(curve_point(key, cuts[0]) if cuts else node_id)
        transfer = transfer.model_copy(update={"output_dir": str(first / "init"), "seed": self.s.seed})
        prev = None
        for start, stop in zip([0.0, *cuts], [*cuts, None]):
            nid = node_id if stop is None else curve_point(key, stop)
            d = self.g.node_dir(nid)
            cfg = PretrainConfig(**settings.model_dump(), init_model=str(first / "init"),
                                 corpus=self.s.corpora[corpus], output_dir=str(d), cache_dir=self.cache_dir,
                                 seed=self.s.seed, stop_at_fraction=stop, extra_tokens=extra_tokens,
                                 resume_from=str(self.g.node_dir(prev) / "checkpoint") if prev else None)
            segment = {"segment": [start, stop or 1.0]} if cuts else {}
            prev = self.g.emit(nid, "pretrain", (prev,) if prev else parents, cfg, model=key, row=row,
                               transfer=transfer, **segment).id
        return prev

    def curve(self, key: str) -> bool:
        lc = self.s.learning_curve
        return lc is not None and (lc.models is None or key in lc.models)

    def source(self, name: str) -> tuple[str, str | None]:
        """The source's model folder (or hub id) and the node that builds it in the sweep (or None)."""
        src = self.s.sources[name]
        if src.model:
            return src.model, None
        b = src.build
        tok = self.tokenizer(name, b.corpus, b.vocab_size, src.lowercase)
        build = TransferConfig(mode="build", architecture=b.architecture, target_tokenizer=self.tok_dir(tok),
                               output_dir="-")
        node = self.pretrain(name, (tok, self.tokenized_by(b.corpus, tok)), build, b.corpus, b.pretrain,
                             (self.label(name), self.label(name)))
        return str(self.g.node_dir(node) / "model"), node

    def add(self, model: Model) -> None:
        self.models.setdefault(model.key, model)

    def transfers(self, name: str) -> None:
        src, s = self.s.sources[name], self.s
        path, build_node = self.source(name)
        built = (build_node,) if build_node else ()
        for mode in s.experiments.vocab_modes:
            parents, tok_dir, target_counts, source_counts, extra = built, None, None, None, {}
            if mode != "keep":   # keep mode's tokenizer is the source's, cut inside the trial: it tokenizes there
                tok = self.english_tokenizer(src.lowercase, src.tokenizer_family)
                english = self.tokenized_by(s.target.corpus, tok)
                parents += (tok, english)
                tok_dir = self.tok_dir(tok)
            if mode in ("frequency", "random-map"):   # the row maps rank by token counts
                target_counts = self.counts(english)
                if src.rank == "counts":   # rank the source rows by their counts on a source corpus
                    counted = self._source_counts(name, path, build_node)
                    parents += (counted,)
                    source_counts = self.counts(counted)
            if mode in ("focus", "wechsel"):
                needs, extra = self._init_inputs(name, mode, tok)
                parents += needs
            lang = s.target.language
            key = moved_key(s, name, mode)
            vocab = self.label(name) if mode == "keep" else (lang if mode == "frequency" else f"{lang} ({mode})")
            row = (f"{self.label(name)}→{lang}", vocab)
            # Every TransferSettings field of the source flows through: a new one needs no edit here.
            transfer = TransferConfig(**src.model_dump(include=set(TransferSettings.model_fields)), mode=mode,
                                      source=path, target_tokenizer=tok_dir, target_counts=target_counts,
                                      source_counts=source_counts, output_dir="-", **extra)
            node = self.pretrain(key, parents, transfer, s.target.corpus, s.pretrain, row, self.curve(key))
            self.add(Model(key, row, str(self.g.node_dir(node) / "model"), node, name))

    def _source_counts(self, name: str, path: str, build_node: str | None) -> str:
        """The tokenize node counting the source's tokens on its `source_corpus` (with the source's own
        tokenizer: a built source's tokenizer node, or the model folder / hub id). A built source without one
        is counted on its build corpus: the node its own pretraining already reads."""
        src = self.s.sources[name]
        if build_node:   # the built source's tokenizer node (already in the graph: add returns it)
            return self.tokenized_by(src.source_corpus or src.build.corpus,
                                     self.tokenizer(name, src.build.corpus, src.build.vocab_size, src.lowercase))
        return self.tokenized(src.source_corpus, path, f"{name}-source", ())

    def scratch(self) -> None:
        s = self.s
        like = s.experiments.scratch_like or s.experiments.transfer_from[0]
        tok = self.english_tokenizer(s.experiments.scratch_lowercase, s.sources[like].tokenizer_family)
        tok_dir = self.tok_dir(tok)
        if s.sources[like].build:
            # The architecture is in the config: no need to wait for the source to be pretrained.
            init = TransferConfig(mode="build", architecture=s.sources[like].build.architecture,
                                  target_tokenizer=tok_dir, output_dir="-")
        else:
            init = TransferConfig(mode="scratch", source=s.sources[like].model, target_tokenizer=tok_dir,
                                  output_dir="-")
        parents = (tok, self.tokenized_by(s.target.corpus, tok))
        lang, key = s.target.language, scratch_key(s)
        node = self.pretrain(key, parents, init, s.target.corpus, s.pretrain, (lang, lang), self.curve(key))
        self.add(Model(key, (lang, lang), str(self.g.node_dir(node) / "model"), node, lang))
        if s.experiments.scratch_budget != "match":
            return
        for name in s.experiments.transfer_from:
            # [en][en] at the compute of [name->en][en]: the same English budget plus what the source model was
            # pretrained on before the transfer began.
            key, row = scratch_key(s, name), (lang, f"{lang} (+{self.label(name)} budget)")
            node = self.pretrain(key, parents, init, s.target.corpus, s.pretrain, row, self.curve(key),
                                 extra_tokens=self.source_tokens(name))
            self.add(Model(key, row, str(self.g.node_dir(node) / "model"), node, lang))

    def source_tokens(self, name: str) -> int:
        """The tokens source `name` was pretrained on: its pretraining_tokens, or its build budget."""
        src = self.s.sources[name]
        if src.pretraining_tokens is not None:
            return src.pretraining_tokens
        p = src.build.pretrain
        return p.max_steps * p.batch_size * p.block_size


def moved_key(s: Sweep, source: str, mode: str) -> str:
    """The model key of `source` moved to the target language by `mode`: sv-to-en-frequency."""
    return f"{source}-to-{s.target.language}-{mode}"


def scratch_key(s: Sweep, matched: str | None = None) -> str:
    """The key of the target-language model from scratch ([en][en]: en-scratch), or of its equal-compute twin
    for source `matched` (en-scratch-match-sv)."""
    return f"{s.target.language}-scratch" + (f"-match-{matched}" if matched is not None else "")


def curve_point(key: str, fraction: float) -> str:
    """The id of model `key`'s pretraining segment that ends at `fraction` of the budget: pretrain/<key>@25pct."""
    return f"pretrain/{key}@{fraction * 100:g}pct"


def _models(g: Graph) -> dict[str, Model]:
    """Every model of the study, in definition order. Fine-tunes and the evaluation suite are added per
    model, so each model's trials gate only on that model."""
    s, b = g.sweep, _ModelBuilder(g)
    for name in s.experiments.transfer_from:
        b.transfers(name)
    if s.experiments.scratch:
        b.scratch()
    # The source models themselves: fine-tuned directly ([lang]), and the reference of the forgetting study.
    for name in list(s.experiments.direct) + [n for n in _forgetting_sources(s) if n not in s.experiments.direct]:
        path, node = b.source(name)
        b.add(Model(name, (b.label(name), b.label(name)), path, node, name, glue=name in s.experiments.direct))
    return b.models


def _forgetting_sources(s: Sweep) -> list[str]:
    return [n for n, src in s.sources.items() if src.source_tasks] if s.forgetting else []


def _chosen(models: dict[str, Model], keys: list[str] | None, what: str) -> list[Model]:
    keys = list(models) if keys is None else keys
    unknown = [k for k in keys if k not in models]
    if unknown:
        raise ConfigError(f"{what}.models: unknown model {unknown[0]!r}; models of this sweep: {', '.join(models)}")
    return [models[k] for k in keys]


def _winogender_models(s: Sweep, models: dict[str, Model]) -> set[str]:
    return {m.key for m in _chosen(models, s.winogender.models, "winogender")} if s.winogender else set()


# --- the fine-tunes and evaluations of each model -------------------------------------------------------

def _glue_files(ft, task: str) -> list[str]:
    """The local files a fine-tune of `task` reads (train and dev TSVs: exactly what the stage opens), whose
    contents enter its hash; none for hub data."""
    spec = GLUE_TASKS[task]
    files = ["train.tsv", *(d.tsv_file for d in spec.dev_splits)]
    return [str(Path(ft.data_dir) / spec.folder / f) for f in files] if ft.data_dir else []


def _glue(g: Graph, models: dict[str, Model]) -> None:
    s, ft = g.sweep, g.sweep.finetune
    keep_rte = _winogender_models(s, models)   # Winogender scores the RTE models (paper appendix E)
    settings = ft.model_dump(exclude={"tasks", "seeds"})
    for m in (m for m in models.values() if m.glue):
        for task in ft.tasks:
            data = _glue_files(ft, task)
            if ft.data_dir and ft.predict_test:   # the test file read for the leaderboard predictions, if any
                data += [str(f) for t in GLUE_TASKS[task].test_splits if (f := find_test_file(t, ft.data_dir))]
            for seed in ft.seeds:
                node_id = f"finetune/{m.key}/{task}/seed{seed}"
                cfg = FinetuneConfig(**settings | {"save_model": ft.save_model or (task == "rte" and m.key in keep_rte)},
                                     model=m.path, task=task, seed=seed, output_dir=str(g.node_dir(node_id)))
                g.emit(node_id, "finetune", m.parents, cfg, model=m.key, row=m.row, data=data)


def _winogender(g: Graph, models: dict[str, Model]) -> None:
    s = g.sweep
    if s.winogender is None:
        return
    settings = s.winogender.model_dump(exclude={"models"})
    for m in _chosen(models, s.winogender.models, "winogender"):
        if not m.glue:
            continue
        for seed in s.finetune.seeds:
            rte = f"finetune/{m.key}/rte/seed{seed}"
            node_id = f"winogender/{m.key}/seed{seed}"
            cfg = WinogenderConfig(**settings, model=str(g.node_dir(rte) / "model"), output_dir=str(g.node_dir(node_id)))
            g.emit(node_id, "winogender", (rte,), cfg, model=m.key, row=m.row,
                   data=[settings["data_file"]] if settings["data_file"] else [], seed=seed)


def _probe(g: Graph, models: dict[str, Model]) -> None:
    p = g.sweep.probe
    if p is None:
        return
    splits = {k: getattr(p, k) for k in ("train", "dev", "test") if getattr(p, k)}
    training = p.model_dump(exclude={"train", "dev", "test", "models", "layers", "features"})
    for m in _chosen(models, p.models, "probe"):
        feat_id = f"features/{m.key}"
        feat = FeaturesConfig(**p.features.model_dump(), model=m.path, splits=splits, layers=p.layers,
                              output_dir=str(g.node_dir(feat_id) / "features"))
        g.emit(feat_id, "features", m.parents, feat, model=m.key, row=m.row, data=list(splits.values()))
        for layer in p.layers:
            node_id = f"probe/{m.key}/layer{layer}"
            cfg = ProbeConfig(**training, features_dir=feat.output_dir, layer=layer, output_dir=str(g.node_dir(node_id)))
            g.emit(node_id, "probe", (feat_id,), cfg, model=m.key, row=m.row)


def _wic(g: Graph, models: dict[str, Model]) -> None:
    w = g.sweep.wic
    if w is None:
        return
    settings = w.model_dump(exclude={"seeds", "models"})
    for m in _chosen(models, w.models, "wic"):
        for seed in w.seeds:
            node_id = f"wic/{m.key}/seed{seed}"
            cfg = WicConfig(**settings, model=m.path, seed=seed, output_dir=str(g.node_dir(node_id)))
            g.emit(node_id, "wic", m.parents, cfg, model=m.key, row=m.row, data=[w.data_dir] if w.data_dir else [])


def _forgetting(g: Graph, models: dict[str, Model]) -> None:
    s, f = g.sweep, g.sweep.forgetting
    if f is None:
        return
    settings = f.model_dump(exclude={"data", "english_tasks", "seeds", "models", "reattach"})
    chosen = {m.key for m in _chosen(models, f.models, "forgetting")}

    def tune(m: Model, tasks: list[str], group: str, parents: tuple[str, ...], **extra) -> None:
        for task in tasks:
            where = f.data[task]
            hub = where[len(HUB_PREFIX):] if where.startswith(HUB_PREFIX) else None
            for seed in f.seeds:
                node_id = f"forget/{m.key}/{task}/seed{seed}"
                cfg = FinetuneConfig(**settings, data_dir=None if hub else where, hub_dataset=hub, model=m.path,
                                     task=task, seed=seed, output_dir=str(g.node_dir(node_id)))
                g.emit(node_id, "forget", parents, cfg, model=m.key, row=m.row, data=[] if hub else [where],
                       group=group, **extra)

    for name in _forgetting_sources(s):
        group = [m for m in models.values() if m.source == name and m.key in chosen]   # [lang], [lang->en] models
        own = list(s.sources[name].source_tasks)
        for m in group:
            tune(m, own + [t for t in f.english_tasks if t not in own], name, m.parents)
        if not f.reattach:
            continue
        src, label = models[name], s.sources[name].label or name
        moved = moved_key(s, name, "")
        for m in (m for m in group if m.key.startswith(moved)):
            # The trained body with the source's vocabulary and word embeddings back, tuned on the source's tasks
            # only (it reads the source language): [lang] - this = what the body forgot.
            node_id = f"reattach/{m.key}"
            cfg = ReattachConfig(trained=m.path, source=src.path, output_dir=str(g.node_dir(node_id) / "model"))
            mode = m.key[len(moved):]
            back = Model(f"{m.key}-reattached", (m.row[0], f"{label} re-attached ({mode})"), cfg.output_dir,
                         node_id, name, glue=False)
            g.emit(node_id, "reattach", tuple(dict.fromkeys(m.parents + src.parents)), cfg, model=back.key,
                   row=back.row)
            tune(back, own, name, (node_id,), reattached=m.key)


def _learning_curves(g: Graph, models: dict[str, Model]) -> None:
    """GLUE fine-tunes from each learning-curve segment (kind `curve`), gated on that segment alone. The end
    of the budget is the model's own `finetune` nodes of the same tasks and seeds (the report reads them)."""
    s, lc = g.sweep, g.sweep.learning_curve
    if lc is None:
        return
    for key in lc.models or []:
        if key not in models:
            raise ConfigError(f"learning_curve.models: unknown model {key!r}; models of this sweep: "
                              f"{', '.join(models)}")
        if models[key].source == key or not models[key].node:
            raise ConfigError(f"learning_curve.models: {key!r} is a source model, not pretrained on English in this "
                              f"sweep; name [lang->{s.target.language}] models or {scratch_key(s)}")
    ft = s.finetune
    settings = ft.model_dump(exclude={"tasks", "seeds", "predict_test", "save_model"})
    for m in models.values():
        if m.node is None or m.source == m.key or not (lc.models is None or m.key in lc.models):
            continue
        for fraction in lc.fractions:
            point = curve_point(m.key, fraction)
            for task in lc.tasks:
                data = _glue_files(ft, task)
                for seed in lc.seeds or ft.seeds:
                    node_id = f"curve/{m.key}@{fraction * 100:g}pct/{task}/seed{seed}"
                    cfg = FinetuneConfig(**settings, model=str(g.node_dir(point) / "model"), task=task, seed=seed,
                                         output_dir=str(g.node_dir(node_id)))
                    g.emit(node_id, "curve", (point,), cfg, model=m.key, row=m.row, data=data, fraction=fraction)


BUILDERS = (_glue, _winogender, _probe, _wic, _forgetting, _learning_curves)


def build_graph(s: Sweep) -> Graph:
    g = Graph(s)
    models = _models(g)
    for builder in BUILDERS:
        builder(g, models)
    # Topological order (parents first), then kind, then definition order: a stable, readable plan.
    order = {nid: i for i, nid in enumerate(g.nodes)}
    depth: dict[str, int] = {}

    def d(nid: str) -> int:
        if nid not in depth:
            depth[nid] = 1 + max((d(p) for p in g.nodes[nid].parents), default=-1)
        return depth[nid]

    g.nodes = dict(sorted(g.nodes.items(), key=lambda kv: (d(kv[0]), KINDS[kv[1].kind].order, order[kv[0]])))
    for nid, node in g.nodes.items():  # parents come first, so their hashes are ready
        g.nodes[nid] = dataclasses.replace(node, hash=_node_hash(node, [g.nodes[p].hash for p in node.parents]))
    return g
