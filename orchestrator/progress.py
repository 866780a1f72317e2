"""What `xlt run` prints while the sweep runs, in place of Ray Tune's console output.

Tune prints a box with every trial's config and a table of trials; with a thousand trials that hides what
matters. `ProgressView` (a Tune callback, run in the driver) prints instead one line per started and per
finished node (kind, full node id, seconds, the number its kind is judged by) and, every
`SUMMARY_EVERY_S` seconds and at the end, one summary line: done / running / pending / failed per kind and
an estimate of the time left. Counting and formatting are plain functions (`summary_line`, `eta`), which
need no Ray. `tune_console` turns Tune's own output off unless `xlt run --verbose` asks for it.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

from ray.tune import Callback

from orchestrator.runner import KINDS, failure_message

SUMMARY_EVERY_S = 30.0
KEY_PREFIX = "key/"      # the trial's final report carries its key metric as "key/<name>"


# --- the key metric of a node: what its progress line shows --------------------------------------------

def key_metric(kind: str, summary: dict) -> tuple[str, float] | None:
    """The one number a finished node is judged by, from its summary (the runner's DONE contents)."""
    metrics = summary.get("metrics") or {}
    result = summary.get("result") or {}
    if kind in ("finetune", "curve", "forget"):
        from stages.glue import primary_metric

        name = primary_metric(summary["task"])
        # MNLI scores two dev splits, keyed m_accuracy and mm_accuracy: show the first
        value = metrics.get(name, next((v for k, v in metrics.items() if k.endswith("_" + name)), None))
    elif kind == "pretrain":
        name, value = "eval_loss", result.get("eval_loss")
    elif kind == "probe":
        name, value = "uuas", metrics.get("uuas")
    elif kind == "tokenizer":
        name, value = "vocab_size", result.get("vocab_size")
    elif kind == "tokenize":
        name, value = "tokens", (summary.get("meta") or {}).get("tokens")
    elif kind == "features":
        name, value = "sentences", sum((result.get("sentences") or {}).values())
    elif "accuracy" in metrics:      # wic, winogender
        name, value = "accuracy", metrics["accuracy"]
    else:                            # a kind added later: its first metric
        name, value = next(iter(metrics.items()), (None, None))
    if name is None or not isinstance(value, (int, float)):
        return None
    return name, float(value)


def key_report(kind: str, summary: dict) -> dict[str, float]:
    """The key metric as an entry of the trial's final `tune.report` ({} when the kind has none)."""
    key = key_metric(kind, summary)
    return {KEY_PREFIX + key[0]: key[1]} if key else {}


def _key_text(result: dict | None) -> str:
    for k, v in (result or {}).items():
        if k.startswith(KEY_PREFIX):
            name = k[len(KEY_PREFIX):]
            if v != v:   # NaN: an undefined metric (e.g. the correlation of constant predictions)
                return f"{name} n/d"
            return f"{name} {int(v):,}" if float(v).is_integer() and abs(v) >= 10 else f"{name} {v:.4f}"
    return ""


# --- counts and the estimate of time left (pure) --------------------------------------------------------

@dataclass
class KindProgress:
    """The nodes of one kind that this `xlt run` set out to run (not those done before it)."""
    total: int = 0
    done: int = 0
    running: int = 0
    failed: int = 0                                          # failed, or not run because a parent failed
    seconds: list[float] = field(default_factory=list)       # of each node finished in this run
    running_for: list[float] = field(default_factory=list)   # how long each running node has been running

    @property
    def pending(self) -> int:
        return self.total - self.done - self.running - self.failed


def eta(kinds: dict[str, KindProgress], slots: int) -> tuple[float | None, list[str]]:
    """Seconds left, and the kinds the estimate leaves out.

    Estimate: the work left is, per kind, the mean seconds of its nodes finished in this run times its
    pending nodes, plus for each running node what is left of that mean (never below 0). It is divided by
    `slots`, the trials that run at once. Gating is ignored: at the end a few long nodes (the pretraining
    of the last model) may run alone, so the true time is longer. A kind with nodes left and none finished
    has no mean yet: it is left out, and returned by name so the caller can say the estimate is a lower
    bound. None when no kind with nodes left has a mean."""
    work, unknown, known = 0.0, [], False
    for kind, k in kinds.items():
        if k.pending + k.running == 0:
            continue
        if not k.seconds:
            unknown.append(kind)
            continue
        mean = sum(k.seconds) / len(k.seconds)
        work += mean * k.pending + sum(max(mean - t, 0.0) for t in k.running_for)
        known = True
    if not known:
        return (0.0 if not unknown else None), unknown
    return work / max(1, slots), unknown


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _kind_counts(k: KindProgress) -> str:
    parts = [f"{k.done} done"] + [f"{n} {what}" for n, what in
                                  ((k.running, "running"), (k.pending, "pending"), (k.failed, "failed")) if n]
    return ", ".join(parts)


def summary_line(elapsed: float, kinds: dict[str, KindProgress], slots: int) -> str:
    """`[progress 3m05s] 45/98 done, 2 running, 50 pending, 1 failed; ETA 3m10s | pretrain 3 done, ...`"""
    total = KindProgress(total=sum(k.total for k in kinds.values()), done=sum(k.done for k in kinds.values()),
                         running=sum(k.running for k in kinds.values()),
                         failed=sum(k.failed for k in kinds.values()))
    head = (f"[progress {duration(elapsed)}] {total.done}/{total.total} done, {total.running} running, "
            f"{total.pending} pending, {total.failed} failed")
    left, unknown = eta(kinds, slots)
    if total.pending + total.running == 0:
        head += "; finished"
    elif left is None:
        head += "; ETA after the first node finishes"
    else:
        head += f"; ETA {'at least ' if unknown else ''}{duration(left)}"
        if unknown:
            head += f" (no {', '.join(unknown)} node finished yet)"
    return head + " | " + " | ".join(f"{kind} {_kind_counts(k)}" for kind, k in kinds.items() if k.total)


def slots(cluster: dict[str, float], requests: list[dict[str, float]], max_concurrent: int) -> int:
    """Trials that can run at once: max_concurrent_trials, or fewer when the cluster holds fewer trials of
    the average request (per resource: its cluster total over the mean request; CPU and GPU)."""
    n = max_concurrent
    for res, key in (("CPU", "cpu"), ("GPU", "gpu")):
        asked = [r[key] for r in requests if r.get(key)]
        if asked and cluster.get(res):
            n = min(n, int(cluster[res] // (sum(asked) / len(asked))))
    return max(1, n)


# --- Tune's console, and the callback ------------------------------------------------------------------

@contextlib.contextmanager
def tune_console(verbose: bool):
    """Yields the `verbose` level for tune.RunConfig. Quiet: Tune's legacy reporter at verbose=0 prints
    nothing, while the new one (Ray's default) still prints its experiment header, whose "Number of
    trials" reads 9223372036854775807 for an open-ended search; so RAY_AIR_NEW_OUTPUT=0 while Tune runs.
    --verbose keeps the new reporter at verbose=1: the trial table and each trial's config."""
    if verbose:
        yield 1
        return
    saved = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield 0
    finally:
        if saved is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved


def _print(message: str) -> None:
    print(message, flush=True)   # a module function: Tune pickles its callbacks with the run config


class ProgressView(Callback):
    """Prints node starts, ends and a periodic summary. `gate` is the searcher's: it knows the nodes that
    failed because a parent failed (they never become trials). Runs in the driver."""

    def __init__(self, graph, gate, cluster: dict[str, float], has_gpu: bool, log=_print,
                 every_s: float = SUMMARY_EVERY_S):
        self.graph, self.gate, self.log, self.every_s = graph, gate, log, every_s
        self.todo = list(gate.pending)          # the nodes this run sets out to run
        requests = [{"cpu": graph.nodes[n].resources["cpu"], "gpu": graph.nodes[n].resources["gpu"] * has_gpu}
                    for n in self.todo]
        self.slots = slots(cluster, requests, graph.sweep.max_concurrent_trials)
        self.started: dict[str, float] = {}     # node id -> when its (current attempt's) trial started
        self.seconds: dict[str, float] = {}     # node id -> seconds, for nodes finished ok in this run
        self.t0 = self.last_summary = time.time()

    def _node(self, trial):
        node_id = trial.config["node_id"]
        return node_id, self.graph.nodes[node_id].kind

    def _line(self, tag: str, kind: str, node_id: str, rest: str = "") -> None:
        self.log(f"{tag:<8} {kind:<10} {node_id}" + (f"  {rest}" if rest else ""))

    def on_trial_start(self, iteration, trials, trial, **info):
        node_id, kind = self._node(trial)
        self.started[node_id] = time.time()
        self._line("[start]", kind, node_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        node_id, kind = self._node(trial)
        seconds = time.time() - self.started.pop(node_id, time.time())
        result = trial.last_result or {}
        if node_id in self.gate.failed:         # the trial returned, but the node wrote no DONE
            self._line("[failed]", kind, node_id, f"{seconds:.1f} s  {self._error(node_id)}")
            return
        seconds = float(result.get("seconds", seconds))
        self.seconds[node_id] = seconds
        self._line("[done]", kind, node_id, f"{seconds:.1f} s  {_key_text(result)}".rstrip())

    def on_trial_error(self, iteration, trials, trial, **info):
        node_id, kind = self._node(trial)
        seconds = time.time() - self.started.pop(node_id, time.time())
        self._line("[failed]", kind, node_id, f"{seconds:.1f} s  {self._error(node_id)}")

    def on_trial_recover(self, iteration, trials, trial, **info):
        node_id, kind = self._node(trial)
        seconds = time.time() - self.started.pop(node_id, time.time())
        self._line("[retry]", kind, node_id, f"crashed after {seconds:.1f} s; retried (max_failures "
                                             f"{self.graph.sweep.max_failures})")

    def _error(self, node_id: str) -> str:
        return failure_message(self.graph.node_dir(node_id)) or "(no error recorded: the trial process died; " \
            "see Ray's log above)"

    def on_step_end(self, iteration, trials, **info):
        if time.time() - self.last_summary >= self.every_s:
            self.log(self.summary())
            self.last_summary = time.time()

    def on_experiment_end(self, trials, **info):
        self.log(self.summary())

    def counts(self) -> dict[str, KindProgress]:
        now = time.time()
        kinds: dict[str, KindProgress] = {}
        for node_id in self.todo:
            k = kinds.setdefault(self.graph.nodes[node_id].kind, KindProgress())
            k.total += 1
            if node_id in self.gate.failed:
                k.failed += 1
            elif node_id in self.seconds:
                k.done += 1
                k.seconds.append(self.seconds[node_id])
            elif node_id in self.started:
                k.running += 1
                k.running_for.append(now - self.started[node_id])
        return dict(sorted(kinds.items(), key=lambda kv: KINDS[kv[0]].order))

    def summary(self) -> str:
        return summary_line(time.time() - self.t0, self.counts(), self.slots)

