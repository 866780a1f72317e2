"""The trial graph of a sweep: which nodes exist, what each needs, and where it writes.

Node kinds: `tokenizer` (an English WordPiece vocabulary, or a built source's own), `pretrain` (a source
built from scratch, a transfer + continued MLM, or the [en][en] scratch model) and `finetune` (one GLUE
task, one seed, one model). Every node writes to `<output_dir>/<node id>/`, so reruns find finished work.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config import Sweep

KIND_ORDER = {"tokenizer": 0, "pretrain": 1, "finetune": 2}  # earlier kinds first: they gate the others


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
        }, _res(s.resources.tokenizer))).id

    def source_model(name: str) -> tuple[str | None, str | None]:
        """(hub id or folder, or None) and the node that builds the source in the sweep (or None)."""
        src = s.sources[name]
        if src.model:
            return src.model, None
        b = src.build
        tok = g.add(Node(f"tokenizer/{name}-{b.vocab_size}-{_casing(src.lowercase)}", "tokenizer", (), {
            "corpus": dataclasses.asdict(s.corpora[b.corpus]), "corpus_name": b.corpus, "vocab_size": b.vocab_size,
            "lowercase": src.lowercase, "min_frequency": s.target.min_frequency,
        }, _res(s.resources.tokenizer))).id
        node = g.add(Node(f"pretrain/{name}", "pretrain", (tok,), {
            "mode": "build", "source": name, "tokenizer_node": tok, "corpus": dataclasses.asdict(s.corpora[b.corpus]),
            "corpus_name": b.corpus, "architecture": dataclasses.asdict(b.architecture),
            "settings": dataclasses.asdict(b.pretrain), "seed": s.seed,
        }, _res(s.resources.pretrain), model=name, row=(label(name), label(name))))
        return None, node.id

    def label(name: str) -> str:
        return s.sources[name].label or name

    def finetunes(model_key: str, row, model: str | None, model_node: str | None):
        for task in tasks:
            for seed in seeds:
                g.add(Node(f"finetune/{model_key}/{task}/seed{seed}", "finetune",
                           (model_node,) if model_node else (),
                           {"model": model, "model_node": model_node, "task": task, "seed": seed, "settings": ft},
                           _res(s.resources.finetune), model=model_key, row=row))

    for name in s.experiments.transfer_from:
        src = s.sources[name]
        model, build_node = source_model(name)
        for mode in s.experiments.vocab_modes:
            parents = tuple(p for p in (build_node,) if p)
            tok = None
            if mode != "keep":
                tok = english_tokenizer(src.lowercase)
                parents += (tok,)
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
            finetunes(key, row, None, node.id)

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
        node = g.add(Node("pretrain/en-scratch", "pretrain", (tok,), params, _res(s.resources.pretrain),
                          model="en-scratch", row=("en", "en")))
        finetunes("en-scratch", ("en", "en"), None, node.id)

    for name in s.experiments.direct:
        model, build_node = source_model(name)
        finetunes(name, (label(name), label(name)), model, build_node)

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
    return stamp


def _node_hash(node: Node, parent_hashes: list[str]) -> str:
    blob = json.dumps({"kind": node.kind, "params": node.params, "data": _data_stamp(node.params),
                       "parents": parent_hashes}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
