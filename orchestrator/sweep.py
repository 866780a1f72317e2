"""The sweep on Ray Tune: one Tuner, one trial per node, gated so a child starts as soon as its parent is done.

Tune has no trial dependencies. `GatedSearcher` hands Tune a node whose parents are all finished, returns
None while the rest waits, and FINISHED once nothing is left; `on_trial_complete` releases the children
or fails them with a message naming the parent. Each `xlt run` starts a fresh Tuner over the nodes that
are not DONE yet (Tune saves FINISHED with an experiment, so a restored one would never emit them):
finished nodes are skipped, interrupted ones resume from their own checkpoints.

The driver writes each node it will run to `<output_dir>/specs/<node id>.json` (id, kind, parents, its
resolved stage configs, hash); a trial reads its node from there and needs nothing else: no worker rebuilds
the graph or looks at data files, so a file touched mid-sweep cannot make a worker disagree with the driver.
"""
from __future__ import annotations

import time
from pathlib import Path

from ray import tune
from ray.tune.search import Searcher

from orchestrator.gating import Gate
from orchestrator.graph import Graph, Node
from orchestrator.progress import ProgressView, key_report, tune_console
from orchestrator.runner import done_nodes, mark_failed, node_state, run_node
from stages.common import CPU_KERNELS, read_json, write_json


def resolved_sweep_file(sweep) -> Path:
    """The validated, path-resolved config of a sweep, written by the driver (and logged to MLflow)."""
    return Path(sweep.output_dir) / "sweep.resolved.json"


def spec_file(graph: Graph, node_id: str) -> Path:
    return Path(graph.sweep.output_dir) / "specs" / f"{node_id}.json"


def _say(message: str) -> None:
    # The searcher keeps its log function and Tune pickles the searcher. Once a Ray worker has printed,
    # Ray has replaced builtins.print, and the original `print` no longer pickles by reference; a module
    # function always does.
    print(message, flush=True)


class GatedSearcher(Searcher):
    def __init__(self, gate: Gate, graph: Graph, tracker, sweep_run_id: str, has_gpu: bool, log=_say):
        super().__init__(metric=None, mode=None)
        self.gate, self.graph, self.tracker, self.sweep_run_id = gate, graph, tracker, sweep_run_id
        self.has_gpu, self.log = has_gpu, log
        self.trial_nodes: dict[str, str] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str):
        node_id = self.gate.next_ready()
        if node_id is None:
            return Searcher.FINISHED if self.gate.finished() else None
        node = self.graph.nodes[node_id]
        resources = dict(node.resources)
        if not self.has_gpu:  # CPU-only cluster: a GPU request would wait forever
            resources["gpu"] = 0
        self.trial_nodes[trial_id] = node_id
        run_id = self.tracker.node_run(node, self.sweep_run_id) if self.tracker else None
        # Kept small (Tune prints it per trial): the worker reads its node from the spec file.
        return {"node_id": node_id, "resources": resources, "run_id": run_id,
                "tracking_uri": self.tracker.uri if self.tracker else None,
                "experiment_id": self.tracker.experiment_id if self.tracker else None,
                "spec_file": str(spec_file(self.graph, node_id)), "root": self.graph.sweep.output_dir,
                "log_model_artifacts": self.graph.sweep.log_model_artifacts,
                "cpu_kernels": self.graph.sweep.cpu_kernels,
                "keep_checkpoints": self.graph.sweep.keep_checkpoints}

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        node_id = self.trial_nodes.get(trial_id)
        if node_id is None:
            return
        ok = not error and node_state(self.graph, node_id) == "done"
        blocked = self.gate.complete(node_id, ok, None if ok else "trial failed")
        for child, reason in blocked.items():
            mark_failed(self.graph, child, reason)
            if self.tracker:
                run_id = self.tracker.node_run(self.graph.nodes[child], self.sweep_run_id)
                self.tracker.finish(run_id, ok=False, error=reason)
        if blocked:
            self.log(f"[sweep] {node_id} failed: {len(blocked)} dependent node(s) not run")


def _trial(config: dict) -> None:
    """One Tune trial = one node, run in a Ray worker."""
    from orchestrator.tracking import Tracker

    node = Node.from_spec(read_json(config["spec_file"]))
    tracker = Tracker.for_worker(config["tracking_uri"], config["experiment_id"]) if config["run_id"] else None
    threads = max(1, int(config["resources"]["cpu"]))
    summary = run_node(node, config["root"], tracker, config["run_id"], report=tune.report, threads=threads,
                       log_model_artifacts=config["log_model_artifacts"],
                       keep_checkpoints=config.get("keep_checkpoints", False),
                       cpu_kernels=config.get("cpu_kernels", "native"), gpu_share=config["resources"]["gpu"])
    final = {k: v for k, v in (summary.get("metrics") or {}).items() if isinstance(v, (int, float))}
    tune.report({"done": 1, "seconds": summary["seconds"], **final, **key_report(node.kind, summary)})


def run_sweep(graph: Graph, tracker=None, sweep_run_id: str | None = None, log=_say, verbose: bool = False) -> Gate:
    import ray

    s = graph.sweep
    write_json(resolved_sweep_file(s), s.model_dump())
    gate = Gate(graph, done_nodes(graph))
    for node_id in gate.pending:
        write_json(spec_file(graph, node_id), graph.nodes[node_id].spec())
    todo = len(gate.pending)
    log(f"[sweep] {s.name}: {len(graph.nodes)} nodes, {len(gate.done)} already done, {todo} to run")
    if gate.finished():
        return gate
    if not ray.is_initialized():
        # the kernel pin reaches every worker before its first torch operation (run_node checks it took)
        env = {"TOKENIZERS_PARALLELISM": "false", **CPU_KERNELS[s.cpu_kernels]}
        ray.init(address=s.ray_address, include_dashboard=False, ignore_reinit_error=True,
                 runtime_env={"env_vars": env})
    elif s.ray_address:
        log(f"[sweep] Ray was already initialised in this process: ray_address {s.ray_address} is not used")
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    if not has_gpu and any(n.resources["gpu"] for n in graph.nodes.values()):
        log("[sweep] no GPU in the Ray cluster: trials run on CPU only")
    searcher = GatedSearcher(gate, graph, tracker, sweep_run_id, has_gpu, log=log)
    trainable = tune.with_resources(_trial, lambda cfg: {"cpu": cfg["resources"]["cpu"], "gpu": cfg["resources"]["gpu"]})
    name = time.strftime("run-%Y%m%d-%H%M%S")
    view = ProgressView(graph, gate, ray.cluster_resources(), has_gpu, log=log)
    with tune_console(verbose) as tune_verbose:
        tuner = tune.Tuner(
            trainable,
            # num_samples: each node is one trial (a retry is the same trial), so `todo` bounds the trials;
            # -1 would do too, but Tune's header then announces sys.maxsize trials
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=todo,
                                        max_concurrent_trials=s.max_concurrent_trials, reuse_actors=True,
                                        trial_name_creator=lambda t: t.config["node_id"].replace("/", ":"),
                                        trial_dirname_creator=lambda t: t.config["node_id"].replace("/", "_")),
            run_config=tune.RunConfig(name=name, storage_path=str(Path(s.output_dir) / "tune"),
                                      failure_config=tune.FailureConfig(max_failures=s.max_failures),
                                      verbose=tune_verbose, callbacks=[view]),
        )
        tuner.fit()
    if not gate.finished():
        # Tune catches Ctrl-C itself, stops the trials and returns as if the sweep were over: say it was cut short
        raise KeyboardInterrupt(f"{len(gate.in_flight)} node(s) stopped, {len(gate.pending)} not started")
    return gate
