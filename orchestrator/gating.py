"""Dependency gating of trials, as a plain object: Tune has no trial dependencies of its own.

A node becomes ready when all its parents are done; a failed node fails its descendants with a message
naming it. Nodes already done (a DONE marker from an earlier run) count as done from the start, so a rerun
skips them and goes on where the last run stopped.
"""
from __future__ import annotations

from orchestrator.graph import Graph
from orchestrator.runner import KINDS


class Gate:
    def __init__(self, graph: Graph, done: set[str]):
        self.graph = graph
        self.done = set(done) & set(graph.nodes)
        self.failed: dict[str, str] = {}      # node id -> reason
        self.in_flight: set[str] = set()
        self.pending = [n for n in graph.nodes if n not in self.done]

    def ready(self) -> list[str]:
        return [n for n in self.pending if all(p in self.done for p in self.graph.nodes[n].parents)]

    def next_ready(self) -> str | None:
        """The next node to start: the earliest kind first (pretraining gates the most work), then plan order."""
        ready = self.ready()
        if not ready:
            return None
        nid = min(ready, key=lambda n: KINDS[self.graph.nodes[n].kind].order)
        self.pending.remove(nid)
        self.in_flight.add(nid)
        return nid

    def complete(self, node_id: str, ok: bool, error: str | None = None) -> dict[str, str]:
        """Record a finished node; returns descendants failed because of it (id -> reason)."""
        self.in_flight.discard(node_id)
        if ok:
            self.done.add(node_id)
            return {}
        self.failed[node_id] = error or "failed"
        blocked = {}
        for d in self.graph.descendants(node_id):
            if d in self.pending:
                self.pending.remove(d)
                blocked[d] = f"not run: its parent {node_id} failed"
        self.failed.update(blocked)
        return blocked

    def finished(self) -> bool:
        return not self.pending and not self.in_flight
