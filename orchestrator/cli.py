"""`xlt`: run, plan, inspect and report a sweep.

    xlt run   [SWEEP.yaml] [key=value ...]   run the sweep, or resume it (finished nodes are skipped)
    xlt plan  [SWEEP.yaml] [key=value ...]   print the trial graph without running anything
    xlt status [SWEEP.yaml] [key=value ...]  done / running / failed / pending per kind (--nodes: per node)
    xlt report [SWEEP.yaml] [key=value ...]  Table 2 / Table 7 shaped results, markdown and CSV
    xlt glue-submission [SWEEP.yaml] --model KEY --seed N   one model's GLUE test predictions as a leaderboard zip

Without SWEEP.yaml the embedded default, configs/demo.yaml, is used (a tiny offline end-to-end sweep).
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from orchestrator.config import (
    DEFAULT_CONFIG,
    ConfigError,
    check_local_data,
    load_sweep,
    to_dict,
)
from orchestrator.graph import build_graph
from orchestrator.runner import KINDS
from stages.common import StageError, write_json


def _load(args):
    sweep = load_sweep(args.sweep, args.overrides)
    return sweep, build_graph(sweep)


def _ensure_data(sweep) -> None:
    if sweep.synthetic is not None:
        from synthetic import generate

        print(f"[data] synthetic world -> {sweep.synthetic.out_dir}")
        generate(sweep.synthetic)


def cmd_plan(args) -> int:
    sweep, graph = _load(args)
    kinds = dict(sorted(graph.by_kind().items(), key=lambda kv: KINDS[kv[0]].order))
    print(f"sweep {sweep.name}: {len(graph.nodes)} nodes -> {sweep.output_dir}")
    for kind, nodes in kinds.items():
        r = nodes[0].resources
        print(f"  {kind:<10} {len(nodes):>4} node(s), each {r['cpu']:g} CPU / {r['gpu']:g} GPU")
    print("\nnodes (parents first):")
    for n in graph.nodes.values():
        if KINDS[n.kind].upstream:
            print(f"  {n.id:<45} <- {', '.join(n.parents) or '(none)'}")
    # The many per-task / per-seed / per-layer trials, counted per kind and model.
    for kind, nodes in kinds.items():
        if KINDS[kind].upstream:
            continue
        by_model: dict[str, list] = {}
        for n in nodes:
            by_model.setdefault(n.model, []).append(n)
        for model, group in by_model.items():
            parents = list(dict.fromkeys(n.parents[0] if n.parents else "(hub model)" for n in group))
            more = f" (+{len(parents) - 1} more)" if len(parents) > 1 else ""
            print(f"  {f'{kind} x{len(group)}':<15} {model:<30} <- {parents[0]}{more}")
    return 0


def cmd_status(args) -> int:
    from orchestrator.runner import node_state

    sweep, graph = _load(args)
    states = {n: node_state(graph, n) for n in graph.nodes}
    for kind, nodes in sorted(graph.by_kind().items(), key=lambda kv: KINDS[kv[0]].order):
        c = Counter(states[n.id] for n in nodes)
        print(f"{kind:<10} done {c['done']:>4}  running {c['running']:>4}  started {c['started']:>4}  "
              f"interrupted {c['interrupted']:>4}  failed {c['failed']:>4}  pending {c['pending']:>4}  "
              f"stale {c['stale']:>4}")
    for n, st in states.items():
        if args.nodes or st in ("failed", "interrupted", "running", "started"):
            msg = ""
            f = graph.node_dir(n) / "FAILED"
            if f.exists():
                msg = f.read_text().splitlines()[0]
            print(f"  {st:<11} {n}  {msg}")
    return 0


def cmd_report(args) -> int:
    from orchestrator.report import write_report

    sweep, graph = _load(args)
    text, folder = write_report(graph)
    print(text)
    print(f"(written to {folder})")
    return 0


def cmd_glue_submission(args) -> int:
    """Gather the leaderboard files one model's fine-tunes of one seed wrote (finetune.predict_test: true)."""
    from orchestrator.runner import node_state
    from stages.glue_submit import collect_submission

    sweep, graph = _load(args)
    runs = [n for n in graph.by_kind().get("finetune", []) if n.model == args.model]
    if not runs:
        models = sorted({n.model for n in graph.by_kind().get("finetune", [])})
        raise StageError(f"no GLUE fine-tunes of model {args.model!r}; models: {', '.join(models)}")
    nodes = [n for n in runs if n.params["config"]["seed"] == args.seed]
    if not nodes:
        raise StageError(f"model {args.model!r} has no fine-tunes of seed {args.seed}; seeds: {sweep.finetune.seeds}")
    done = [n for n in nodes if node_state(graph, n.id) == "done"]
    for n in nodes:
        if n not in done:
            print(f"warning: {n.id} is {node_state(graph, n.id)}, not done: its files are left out")
    out = Path(args.out) if args.out else Path(sweep.output_dir) / "glue_submission" / f"{args.model}-seed{args.seed}"
    sub = collect_submission([graph.node_dir(n.id) for n in done], out, sweep.finetune.data_dir)
    print(f"{len(sub.files)} leaderboard file(s) in {sub.folder}; upload {sub.zip_file}")
    if sub.missing:
        print(f"missing (gluebenchmark.com wants all {len(sub.files) + len(sub.missing)}): {', '.join(sub.missing)}. "
              "Fine-tune those tasks with finetune.predict_test: true and a data_dir holding their test files")
    return 0


def cmd_run(args) -> int:
    from orchestrator.report import write_report
    from orchestrator.sweep import resolved_sweep_file, run_sweep
    from orchestrator.tracking import Tracker

    sweep = load_sweep(args.sweep, args.overrides)
    _ensure_data(sweep)  # before the graph: node hashes include the data files' stamps
    check_local_data(sweep)
    graph = build_graph(sweep)
    resolved = resolved_sweep_file(sweep)
    write_json(resolved, to_dict(sweep))
    tracker = Tracker(sweep.tracking_uri, f"xlt-{sweep.name}", sweep.artifact_location)
    sweep_run = tracker.sweep_run(sweep.name, {"config": Path(args.sweep).name, "seed": sweep.seed}, str(resolved))
    tracker.start(sweep_run)
    gate = None
    try:
        gate = run_sweep(graph, tracker, sweep_run)
    finally:
        failed = gate.failed if gate else {"sweep": "interrupted"}
        tracker.finish(sweep_run, ok=not failed, error=f"{len(failed)} node(s) failed" if failed else None)
        closed = tracker.close_orphans()
        if closed:
            print(f"[sweep] marked {closed} MLflow run(s) of interrupted trials as KILLED")
    text, folder = write_report(graph)
    print("\n" + text)
    print(f"report: {folder}\nMLflow: mlflow ui --backend-store-uri {sweep.tracking_uri}")
    if gate.failed:
        print(f"{len(gate.failed)} node(s) failed; see `xlt status {args.sweep}`; rerun to retry them")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xlt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("run", cmd_run), ("plan", cmd_plan), ("status", cmd_status), ("report", cmd_report)):
        p = sub.add_parser(name)
        p.add_argument("sweep", nargs="?", default=str(DEFAULT_CONFIG))
        p.add_argument("overrides", nargs="*", help="key=value, e.g. pretrain.max_steps=100")
        if name == "status":
            p.add_argument("--nodes", action="store_true", help="list every node with its state")
        p.set_defaults(fn=fn)
    p = sub.add_parser("glue-submission", help="one model's GLUE test predictions as a leaderboard zip")
    p.add_argument("sweep", nargs="?", default=str(DEFAULT_CONFIG))
    p.add_argument("overrides", nargs="*", help="key=value, as for run")
    p.add_argument("--model", required=True, help="model key, as in `xlt plan` (e.g. S-to-en-frequency)")
    p.add_argument("--seed", type=int, required=True, help="the fine-tuning seed whose models are submitted")
    p.add_argument("--out", help="folder for the files (default <output_dir>/glue_submission/<model>-seed<N>); "
                                 "the zip is written beside it")
    p.set_defaults(fn=cmd_glue_submission)
    args = parser.parse_args(argv)
    if args.sweep and "=" in args.sweep:  # `xlt run a=b`: overrides on the default config
        args.overrides.insert(0, args.sweep)
        args.sweep = str(DEFAULT_CONFIG)
    try:
        return args.fn(args)
    except (ConfigError, StageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
