"""The trial graph of a sweep: which nodes exist, what each needs, and where it writes.

Node kinds: `tokenizer` (an English WordPiece vocabulary, or a built source's own), `pretrain` (a source
built from scratch, a transfer + continued MLM, or the [en][en] scratch model), `finetune` (one GLUE
task, one seed, one model), and the evaluation suite: `features` (a model's hidden states on the probing
treebank, computed once) -> `probe` (one layer's structural probe), `wic` (one seed), `forget` (one
source-language or English sentiment/STS task, one seed) and `winogender` (one RTE fine-tune scored on
AX-g). Every node writes to `<output_dir>/<node id>/`, so reruns find finished work.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config import HUB_PREFIX, ConfigError, Sweep

# Earlier kinds first: they gate the others (Gate.next_ready starts the lowest ready kind first).
KIND_ORDER = {"tokenizer": 0, "tokenize": 1, "pretrain": 2, "features": 3, "finetune": 4, "probe": 5, "wic": 5,
              "forget": 5, "winogender": 6}


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    parents: tuple[str, ...]
    params: dict          # everything the runner needs, JSON-able; also the MLflow params of the run
    resources: dict       # {"cpu": x, "gpu": y} for Ray
    model: str | None = None   # for pretrain/finetune: the model key (row of Table 2)
    row: tuple[str, str] | None = None  # (Lang, Vocab) as in the paper's tables
    # Fingerprint of everything that decides the node's output: its params, its local data files and its
    # parents' hashes. A DONE marker counts only for the same hash, so a changed setting re-runs the node
    # and everything downstream of it instead of silently reusing results made with the old one.
    hash: str = ""


@dataclass
class Graph:
    sweep: Sweep
    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, node: Node) -> Node:
        self.nodes.setdefault(node.id, node)
        return self.nodes[node.id]

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


def _res(r) -> dict:
    return {"cpu": r.cpu, "gpu": r.gpu}


def _casing(lowercase: bool) -> str:
    return "uncased" if lowercase else "cased"


def build_graph(s: Sweep) -> Graph:
    g = Graph(s)
    pre = dataclasses.asdict(s.pretrain)
    ft = dataclasses.asdict(s.finetune)
    tasks, seeds = ft.pop("tasks"), ft.pop("seeds")

    def english_tokenizer(lowercase: bool) -> str:
        node_id = f"tokenizer/en-{s.target.vocab_size}-{_casing(lowercase)}"
        return g.add(Node(node_id, "tokenizer", (), {
            "corpus": dataclasses.asdict(s.corpora[s.target.corpus]), "corpus_name": s.target.corpus,
            "vocab_size": s.target.vocab_size, "lowercase": lowercase, "min_frequency": s.target.min_frequency,
            "limit_alphabet": s.target.limit_alphabet, "trainer": s.target.trainer,
        }, _res(s.resources.tokenizer))).id

    def tokenized(corpus_name: str, tok: str) -> str:
        """The CPU node that writes the token cache of (corpus, tokenizer) before any pretraining node that
        reads it starts: otherwise the first of them tokenizes (Wikipedia: hours) while holding its GPU, and
        the others hold theirs waiting on the cache lock."""
        return g.add(Node(f"tokenize/{corpus_name}/{tok.split('/', 1)[1]}", "tokenize", (tok,), {
            "corpus": dataclasses.asdict(s.corpora[corpus_name]), "corpus_name": corpus_name, "tokenizer_node": tok,
        }, _res(s.resources.tokenize))).id

    def source_model(name: str) -> tuple[str | None, str | None]:
        """(hub id or folder, or None) and the node that builds the source in the sweep (or None)."""
        src = s.sources[name]
        if src.model:
            return src.model, None
        b = src.build
        tok = g.add(Node(f"tokenizer/{name}-{b.vocab_size}-{_casing(src.lowercase)}", "tokenizer", (), {
            "corpus": dataclasses.asdict(s.corpora[b.corpus]), "corpus_name": b.corpus, "vocab_size": b.vocab_size,
            "lowercase": src.lowercase, "min_frequency": s.target.min_frequency,
            "limit_alphabet": s.target.limit_alphabet, "trainer": s.target.trainer,
        }, _res(s.resources.tokenizer))).id
        node = g.add(Node(f"pretrain/{name}", "pretrain", (tok, tokenized(b.corpus, tok)), {
            "mode": "build", "source": name, "tokenizer_node": tok, "corpus": dataclasses.asdict(s.corpora[b.corpus]),
            "corpus_name": b.corpus, "architecture": dataclasses.asdict(b.architecture),
            "settings": dataclasses.asdict(b.pretrain), "seed": s.seed,
        }, _res(s.resources.pretrain), model=name, row=(label(name), label(name))))
        return None, node.id

    def label(name: str) -> str:
        return s.sources[name].label or name

    # Every model of the study, in definition order: key -> where it comes from. Fine-tunes and the
    # evaluation suite are added per model below, so each model's trials gate only on that model.
    models: dict[str, dict] = {}

    def add_model(key: str, row, model: str | None, model_node: str | None, source: str, glue: bool = True) -> None:
        models.setdefault(key, {"row": row, "model": model, "node": model_node, "source": source, "glue": glue})

    for name in s.experiments.transfer_from:
        src = s.sources[name]
        model, build_node = source_model(name)
        for mode in s.experiments.vocab_modes:
            parents = tuple(p for p in (build_node,) if p)
            tok = None
            if mode != "keep":   # keep mode's tokenizer is the source's, cut inside the trial: it tokenizes there
                tok = english_tokenizer(src.lowercase)
                parents += (tok, tokenized(s.target.corpus, tok))
            key = f"{name}-to-en-{mode}"
            vocab = label(name) if mode == "keep" else ("en" if mode == "frequency" else f"en ({mode})")
            row = (f"{label(name)}→en", vocab)
            node = g.add(Node(f"pretrain/{key}", "pretrain", parents, {
                "mode": mode, "source": name, "source_model": model, "source_node": build_node,
                "tokenizer_node": tok, "corpus": dataclasses.asdict(s.corpora[s.target.corpus]),
                "corpus_name": s.target.corpus, "keep_vocab_size": src.keep_vocab_size, "grow_embeddings": src.grow_embeddings,
                "source_corpus": dataclasses.asdict(s.corpora[src.source_corpus]) if src.source_corpus else None,
                "settings": pre, "seed": s.seed,
            }, _res(s.resources.pretrain), model=key, row=row))
            add_model(key, row, None, node.id, name)

    if s.experiments.scratch:
        like = s.experiments.scratch_like or s.experiments.transfer_from[0]
        tok = english_tokenizer(s.experiments.scratch_lowercase)
        common = {"source": like, "tokenizer_node": tok, "corpus": dataclasses.asdict(s.corpora[s.target.corpus]),
                  "corpus_name": s.target.corpus, "settings": pre, "seed": s.seed}
        if s.sources[like].build:
            # The architecture is in the config: no need to wait for the source to be pretrained.
            params = {"mode": "build", "architecture": dataclasses.asdict(s.sources[like].build.architecture), **common}
        else:
            params = {"mode": "scratch", "source_model": s.sources[like].model, "source_node": None, **common}
        node = g.add(Node("pretrain/en-scratch", "pretrain", (tok, tokenized(s.target.corpus, tok)), params,
                          _res(s.resources.pretrain), model="en-scratch", row=("en", "en")))
        add_model("en-scratch", ("en", "en"), None, node.id, "en")

    # The source models themselves: fine-tuned directly ([lang]), and the reference of the forgetting study.
    forgetting_sources = [n for n, src in s.sources.items() if src.source_tasks] if s.forgetting else []
    for name in list(s.experiments.direct) + [n for n in forgetting_sources if n not in s.experiments.direct]:
        model, build_node = source_model(name)
        add_model(name, (label(name), label(name)), model, build_node, name, glue=name in s.experiments.direct)

    def model_ref(key: str) -> dict:
        m = models[key]
        return {"model": m["model"], "model_node": m["node"]}

    def parents_of(key: str) -> tuple[str, ...]:
        return (models[key]["node"],) if models[key]["node"] else ()

    def chosen(section, what: str) -> list[str]:
        keys = section.models if section.models is not None else list(models)
        unknown = [k for k in keys if k not in models]
        if unknown:
            raise ConfigError(f"{what}.models: unknown model {unknown[0]!r}; models of this sweep: {', '.join(models)}")
        return keys

    wino_models = set(chosen(s.winogender, "winogender")) if s.winogender is not None else set()
    if wino_models:
        wino = dataclasses.asdict(s.winogender)
        wino.pop("models")
    for key in [k for k in models if models[k]["glue"]]:
        m = models[key]
        for task in tasks:
            for seed in seeds:
                # RTE models are kept when Winogender scores them (paper appendix E); other fine-tunes keep
                # only their metrics.
                settings = dict(ft, save_model=True) if task == "rte" and key in wino_models else ft
                g.add(Node(f"finetune/{key}/{task}/seed{seed}", "finetune", parents_of(key),
                           {**model_ref(key), "task": task, "seed": seed, "settings": settings},
                           _res(s.resources.finetune), model=key, row=m["row"]))
                if task == "rte" and key in wino_models:
                    g.add(Node(f"winogender/{key}/seed{seed}", "winogender", (f"finetune/{key}/rte/seed{seed}",),
                               {"finetune_node": f"finetune/{key}/rte/seed{seed}", "seed": seed, "settings": wino,
                                "data_files": [wino["data_file"]] if wino["data_file"] else []},
                               _res(s.resources.winogender), model=key, row=m["row"]))

    if s.probe is not None:
        pr = dataclasses.asdict(s.probe)
        splits = {k: pr[k] for k in ("train", "dev", "test") if pr[k]}
        extract = {k: pr[k] for k in ("hub_dataset", "hub_config", "layers", "pooling", "max_length", "max_sentences")}
        train = {k: pr[k] for k in ("rank", "punctuation", "epochs", "learning_rate", "batch_size", "patience", "seed")}
        for key in chosen(s.probe, "probe"):
            m = models[key]
            feat = g.add(Node(f"features/{key}", "features", parents_of(key),
                              {**model_ref(key), "splits": splits, "settings": extract,
                               "data_files": list(splits.values())},
                              _res(s.resources.features), model=key, row=m["row"]))
            for layer in s.probe.layers:
                g.add(Node(f"probe/{key}/layer{layer}", "probe", (feat.id,),
                           {"features_node": feat.id, "layer": layer, "settings": train},
                           _res(s.resources.probe), model=key, row=m["row"]))

    if s.wic is not None:
        w = dataclasses.asdict(s.wic)
        wic_seeds = w.pop("seeds")
        w.pop("models")
        for key in chosen(s.wic, "wic"):
            for seed in wic_seeds:
                g.add(Node(f"wic/{key}/seed{seed}", "wic", parents_of(key),
                           {**model_ref(key), "seed": seed, "settings": w,
                            "data_files": [w["data_dir"]] if w["data_dir"] else []},
                           _res(s.resources.wic), model=key, row=models[key]["row"]))

    if s.forgetting is not None:
        f = dataclasses.asdict(s.forgetting)
        data, english, f_seeds = f.pop("data"), f.pop("english_tasks"), f.pop("seeds")
        for name in forgetting_sources:
            group = [k for k in models if models[k]["source"] == name]   # [lang] and every [lang->en] model
            own = list(s.sources[name].source_tasks)
            for key in group:
                for task in own + [t for t in english if t not in own]:
                    where = data[task]
                    hub = where[len(HUB_PREFIX):] if where.startswith(HUB_PREFIX) else None
                    settings = {**f, "data_dir": None if hub else where, "hub_dataset": hub}
                    for seed in f_seeds:
                        g.add(Node(f"forget/{key}/{task}/seed{seed}", "forget", parents_of(key),
                                   {**model_ref(key), "task": task, "seed": seed, "group": name,
                                    "settings": settings, "data_files": [] if hub else [where]},
                                   _res(s.resources.forget), model=key, row=models[key]["row"]))

    # Topological order (parents first), then kind, then definition order: a stable, readable plan.
    order = {nid: i for i, nid in enumerate(g.nodes)}
    depth: dict[str, int] = {}

    def d(nid: str) -> int:
        if nid not in depth:
            depth[nid] = 1 + max((d(p) for p in g.nodes[nid].parents), default=-1)
        return depth[nid]

    g.nodes = dict(sorted(g.nodes.items(), key=lambda kv: (d(kv[0]), KIND_ORDER[kv[1].kind], order[kv[0]])))
    for nid, node in g.nodes.items():  # parents come first, so their hashes are ready
        g.nodes[nid] = dataclasses.replace(node, hash=_node_hash(node, [g.nodes[p].hash for p in node.parents]))
    return g


def _data_stamp(params: dict) -> list:
    """Sizes and modification times of the local data a node reads (a regenerated file changes it)."""
    from stages.corpus import CorpusConfig
    from stages.glue import GLUE_TASKS

    stamp = []
    for key in ("corpus", "source_corpus"):
        if params.get(key):
            stamp.append(CorpusConfig(**params[key]).fingerprint())
    data_dir = (params.get("settings") or {}).get("data_dir")
    if data_dir and params.get("task") in GLUE_TASKS:
        folder = Path(data_dir) / GLUE_TASKS[params["task"]].folder
        stamp += [[f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in sorted(folder.glob("*.tsv"))]
    for path in params.get("data_files", []):   # evaluation data: files, or folders of files
        p = Path(path)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else ([p] if p.exists() else [])
        stamp += [[str(f), f.stat().st_size, int(f.stat().st_mtime)] for f in files]
    return stamp


def _node_hash(node: Node, parent_hashes: list[str]) -> str:
    blob = json.dumps({"kind": node.kind, "params": node.params, "data": _data_stamp(node.params),
                       "parents": parent_hashes}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
