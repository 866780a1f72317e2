"""`xlt`: run, plan, inspect and report a sweep, and serve its MLflow tracking.

    xlt run   [SWEEP.yaml] [key=value ...]   run the sweep, or resume it (finished nodes are skipped)
    xlt plan  [SWEEP.yaml] [key=value ...]   print the trial graph without running anything
    xlt status [SWEEP.yaml] [key=value ...]  done / running / failed / pending per kind (--nodes: per node)
    xlt report [SWEEP.yaml] [key=value ...]  Table 2 / Table 7 shaped results, markdown and CSV
    xlt serve [SWEEP.yaml]                   an MLflow tracking server on 127.0.0.1 (for clusters and the UI)
    xlt glue-submission [SWEEP.yaml] --model KEY --seed N   one model's GLUE test predictions as a leaderboard zip

Without SWEEP.yaml the embedded default, configs/demo.yaml, is used (a tiny offline end-to-end sweep).
`xlt status` and `xlt report` without overrides read the sweep of the last `xlt run` of that config, with
its overrides. `xlt <command> --help` lists each command's arguments.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

# The project's modules are imported where they are used: they pull in torch and transformers, which take
# seconds, and `xlt --help` should not wait for them.

LAST_RUNS_KEPT = 50          # entries of the last-run file (one per config file)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _load(args):
    from orchestrator.config import load_sweep
    from orchestrator.graph import build_graph

    sweep = load_sweep(args.sweep, args.overrides)
    return sweep, build_graph(sweep)


# --- what the parent MLflow run records about an `xlt run` ---------------------------------------------

def git_state(folder: Path = Path(__file__).resolve().parent) -> dict[str, str]:
    """The commit of the repository holding the project's code, and whether its files differ from it
    (`git status --porcelain`, untracked files included: a new module changes what runs). Both "unknown"
    without git, outside a repository, or when git refuses (e.g. a repository owned by another user)."""
    def git(*cmd: str) -> str:
        return subprocess.run(["git", "-C", str(folder), *cmd], capture_output=True, text=True, timeout=10,
                              check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = "true" if git("status", "--porcelain").strip() else "false"
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": "unknown"}
    return {"commit": commit, "dirty": dirty}


def run_record(config: str | Path, overrides: list[str]) -> tuple[dict[str, str], dict]:
    """The parent run's tags and its `overrides.json`: the config file, the command line's overrides and
    the code's commit. Tags, not params: every `xlt run` of a sweep reuses its parent run, and params
    cannot change."""
    from orchestrator.tracking import GIT_COMMIT_TAG

    git = git_state()
    tags = {"xlt.config": str(Path(config).resolve()), "xlt.overrides": " ".join(overrides) or "-",
            "xlt.git_commit": git["commit"], "xlt.git_dirty": git["dirty"], GIT_COMMIT_TAG: git["commit"]}
    invocation = {"config": tags["xlt.config"], "overrides": list(overrides), "git_commit": git["commit"],
                  "git_dirty": git["dirty"], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return tags, invocation


# --- the last `xlt run` of each config, for `xlt status` and `xlt report` --------------------------------

def last_run_file() -> Path:
    """Per user and outside the checkout: two people sharing a checkout (or its mlruns/ on a shared disk)
    do not redirect each other's `xlt status`."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "xlt" / "last_run.json"


def _read_last_runs() -> dict:
    try:
        runs = json.loads(last_run_file().read_text())
    except (OSError, ValueError):
        return {}
    return runs if isinstance(runs, dict) else {}


def record_last_run(config: str | Path, overrides: list[str], output_dir: str) -> None:
    """Remember what `xlt run CONFIG ...` ran. Never fails the run: a read-only home only costs the memory."""
    key = str(Path(config).resolve())
    runs = _read_last_runs()
    runs[key] = {"config": key, "overrides": list(overrides), "output_dir": output_dir, "cwd": str(Path.cwd()),
                 "time": time.time()}
    kept = dict(sorted(runs.items(), key=lambda kv: kv[1].get("time", 0), reverse=True)[:LAST_RUNS_KEPT])
    path = last_run_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(kept, indent=1) + "\n")
        os.replace(tmp, path)        # whole or not at all, also with two `xlt run`s at once
    except OSError as e:
        print(f"warning: could not record this run in {path} ({e}); `xlt status` will need its overrides")


def last_run(config: str | Path) -> dict | None:
    return _read_last_runs().get(str(Path(config).resolve()))


def _load_read_only(args):
    """The sweep `xlt status` / `xlt report` read: with the overrides given, or else with those of the last
    `xlt run` of this config (and its working directory, against which relative paths were resolved).
    The first line printed says which output folder is read and why."""
    from orchestrator.config import load_sweep
    from orchestrator.graph import build_graph

    record = None if args.overrides or args.no_last_run else last_run(args.sweep)
    if record is not None:
        cwd = Path(record.get("cwd", "."))
        sweep = load_sweep(args.sweep, record["overrides"], base_dir=cwd if cwd.is_dir() else None)
        why = (f"overrides of the last `xlt run`: {' '.join(record['overrides'])}" if record["overrides"]
               else "the last `xlt run` of this config had no overrides")
        if record.get("output_dir") and record["output_dir"] != sweep.output_dir:
            why += f"; that run wrote to {record['output_dir']}, the config has changed since"
        why += "); pass overrides to read another sweep"
    else:
        sweep = load_sweep(args.sweep, args.overrides)
        if args.overrides:
            why = f"overrides: {' '.join(args.overrides)})"
        elif args.no_last_run:
            why = "the config as written, without the overrides of its last `xlt run`)"
        else:
            why = "no overrides; no `xlt run` of this config recorded)"
    print(f"reading {sweep.output_dir} ({why}")
    return sweep, build_graph(sweep)


def _ensure_data(sweep) -> None:
    if sweep.synthetic is not None:
        from synthetic import generate

        print(f"[data] synthetic world -> {sweep.synthetic.out_dir}")
        generate(sweep.synthetic)


def cmd_plan(args) -> int:
    from orchestrator.runner import KINDS

    sweep, graph = _load(args)
    kinds = dict(sorted(graph.by_kind().items(), key=lambda kv: KINDS[kv[0]].order))
    print(f"sweep {sweep.name}: {len(graph.nodes)} nodes -> {sweep.output_dir}")
    for kind, nodes in kinds.items():
        r = nodes[0].resources
        print(f"  {kind:<10} {len(nodes):>4} node(s), each {r['cpu']:g} CPU / {r['gpu']:g} GPU")
    if args.estimate:   # the budget instead of the node listing (orchestrator/estimate.py)
        from orchestrator.config import ConfigError
        from orchestrator.estimate import plan_estimate

        try:
            print("\n" + plan_estimate(graph, args.throughput, args.gpus, args.cpus, args.corpus_tokens,
                                        args.measured, args.pretrain_tokens_per_s))
        except (OSError, ValueError) as e:
            raise ConfigError(str(e)) from None
        return 0
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
    from orchestrator.runner import KINDS, failure_message, node_state

    sweep, graph = _load_read_only(args)
    states = {n: node_state(graph, n) for n in graph.nodes}
    for kind, nodes in sorted(graph.by_kind().items(), key=lambda kv: KINDS[kv[0]].order):
        c = Counter(states[n.id] for n in nodes)
        print(f"{kind:<10} done {c['done']:>4}  running {c['running']:>4}  started {c['started']:>4}  "
              f"interrupted {c['interrupted']:>4}  failed {c['failed']:>4}  pending {c['pending']:>4}  "
              f"stale {c['stale']:>4}")
    for n, st in states.items():
        if args.nodes or st in ("failed", "interrupted", "running", "started"):
            print(f"  {st:<11} {n}  {failure_message(graph.node_dir(n)) or ''}")
    return 0


def cmd_report(args) -> int:
    from orchestrator.report import write_report

    sweep, graph = _load_read_only(args)
    text, folder = write_report(graph)
    print(text)
    print(f"(written to {folder})")
    return 0


def cmd_glue_submission(args) -> int:
    """Gather the leaderboard files one model's fine-tunes of one seed wrote (finetune.predict_test: true)."""
    from orchestrator.runner import node_state
    from stages.common import StageError
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


def _server_down(uri: str, problem: str):
    from orchestrator.config import ConfigError

    host, port = urlparse(uri).hostname or "", urlparse(uri).port or 5000
    where = "" if host in LOOPBACK else f" on {host}"
    return ConfigError(f"{problem}: start it first (`xlt serve --port {port}`{where}; see `xlt serve --help`), "
                       "or track to a local file with tracking_uri=sqlite:///mlruns/mlflow.db")


def cmd_run(args) -> int:
    from orchestrator.config import check_local_data, load_sweep, to_dict
    from orchestrator.graph import build_graph
    from orchestrator.report import write_report
    from orchestrator.sweep import resolved_sweep_file, run_sweep
    from orchestrator.tracking import Tracker, TrackingServerDown, check_server
    from stages.common import write_json

    sweep = load_sweep(args.sweep, args.overrides)
    try:   # before anything is written or started: MLflow's own client would retry for minutes
        check_server(sweep.tracking_uri)
    except TrackingServerDown as e:
        raise _server_down(sweep.tracking_uri, str(e)) from None
    _ensure_data(sweep)  # before the graph: node hashes include the data files' stamps
    check_local_data(sweep)
    graph = build_graph(sweep)
    resolved = resolved_sweep_file(sweep)
    write_json(resolved, to_dict(sweep))
    record_last_run(args.sweep, args.overrides, sweep.output_dir)
    tracker = Tracker(sweep.tracking_uri, f"xlt-{sweep.name}", sweep.artifact_location)
    tags, invocation = run_record(args.sweep, args.overrides)
    sweep_run = tracker.sweep_run(sweep.name, {"config": Path(args.sweep).name, "seed": sweep.seed}, str(resolved),
                                  tags=tags, invocation=invocation)
    tracker.start(sweep_run)
    gate, interrupted = None, None
    try:
        gate = run_sweep(graph, tracker, sweep_run, verbose=args.verbose)
    except KeyboardInterrupt as e:   # Ctrl-C: Tune stopped the trials; the report of what is done still prints
        interrupted = f"interrupted: {e}" if str(e) else "interrupted"
    finally:
        failed = gate.failed if gate else {}
        stopped = interrupted or (None if gate else "interrupted")
        tracker.finish(sweep_run, ok=not failed and not stopped, killed=bool(stopped),
                       error=stopped or (f"{len(failed)} node(s) failed" if failed else None))
        closed = tracker.close_orphans()
        if closed:
            print(f"[sweep] marked {closed} MLflow run(s) of interrupted trials as KILLED")
    text, folder = write_report(graph)
    print("\n" + text)
    ui = sweep.tracking_uri if "://" in sweep.tracking_uri and not sweep.tracking_uri.startswith("sqlite") else \
        f"mlflow ui --backend-store-uri {sweep.tracking_uri}"
    print(f"report: {folder}\nMLflow: {ui}")
    if interrupted:
        print(f"[sweep] {interrupted}; run the same command again to resume")
        return 130                   # the shell's code for SIGINT: `xlt run ... && next` does not go on
    if gate.failed:
        print(f"{len(gate.failed)} node(s) failed; see `xlt status {args.sweep}`; rerun to retry them")
        return 1
    return 0


# --- xlt serve -----------------------------------------------------------------------------------------

def serve_plan(args) -> tuple[list[str], list[str]]:
    """The `mlflow server` command line of `xlt serve`, and what to print before it starts.

    Defaults: the store a sweep with the default tracking_uri writes (mlruns/mlflow.db, artifacts in
    mlruns/artifacts, under the working directory), so the UI also shows the runs tracked to SQLite. With
    SWEEP.yaml: its SQLite store and artifact folder, or the port of its http:// tracking_uri."""
    from orchestrator.config import ConfigError, load_sweep

    backend, artifacts, port = None, None, None
    if args.sweep:
        sweep = load_sweep(args.sweep, args.overrides)
        uri = sweep.tracking_uri
        if uri.startswith("sqlite:///"):
            backend = uri
            loc = sweep.artifact_location
            artifacts = loc if loc and "://" not in loc else None
        elif urlparse(uri).port:
            port = urlparse(uri).port
    backend = args.backend_store_uri or backend or f"sqlite:///{Path.cwd() / 'mlruns' / 'mlflow.db'}"
    artifacts = args.artifacts_destination or artifacts or str(Path.cwd() / "mlruns" / "artifacts")
    port = args.port or port or 5000
    host = args.host
    public = not (host in LOOPBACK or host.startswith("127."))
    if public and not args.public:
        raise ConfigError(f"--host {host} makes the MLflow server reachable from the network, and it has no "
                          "authentication: anyone who reaches the port can read, change and delete runs. Keep "
                          f"--host 127.0.0.1 and reach it through an SSH tunnel (ssh -N -L {port}:127.0.0.1:{port} "
                          "user@head), or add --public to bind it anyway (then restrict who can reach it)")
    if backend.startswith("sqlite:///"):
        Path(backend[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
            "--backend-store-uri", backend, "--artifacts-destination", artifacts]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    reach = socket.gethostname() if host in ("0.0.0.0", "::") else host
    sweep_arg = args.sweep or "SWEEP.yaml"
    lines = [f"MLflow tracking server on http://{host}:{port} (runs: {backend}; artifacts: {artifacts})",
             f"  track a sweep to it:   xlt run {sweep_arg} tracking_uri=http://{reach}:{port}",
             f"  from another machine:  ssh -N -L {port}:127.0.0.1:{port} {getpass.getuser()}@{socket.gethostname()}"
             f"   then open http://127.0.0.1:{port}",
             "  Ctrl-C stops it"]
    if public:
        lines.insert(1, f"  WARNING: bound to {host} without authentication (--public)")
    return argv, lines


def cmd_serve(args) -> int:
    argv, lines = serve_plan(args)
    print("\n".join(lines), flush=True)
    os.execv(argv[0], argv)   # the server in the foreground, as this process: Ctrl-C and kill reach it
    return 0                  # not reached


# --- the command line ----------------------------------------------------------------------------------

SWEEP_HELP = "the sweep config (default: configs/demo.yaml, the offline demo)"
OVERRIDES_HELP = ("overrides of the YAML's settings: dotted keys, values parsed as YAML and checked like the file, "
                  "e.g. pretrain.max_steps=100 finetune.seeds=[1,2] probe=null tracking_uri=http://127.0.0.1:5000")
READ_ONLY_EPILOG = ("Without overrides it reads the sweep of the last `xlt run` of this config, with that run's "
                    "overrides; its first line names the output folder it reads.")
RUN_EPILOG = """examples:
  xlt run                                               the demo, configs/demo.yaml
  xlt run configs/demo.yaml finetune.seeds=[1,2,3] pretrain.max_steps=3000
  xlt run configs/paper.yaml tracking_uri=http://127.0.0.1:5000   track to a server (see `xlt serve`)

While it runs it prints one line per node started and finished (kind, node id, seconds, key metric) and a
summary with an estimate of the time left every 30 s; --verbose adds Ray Tune's own trial table."""
SERVE_EPILOG = """The server binds 127.0.0.1: reach it from your laptop through an SSH tunnel,
  ssh -N -L 5000:127.0.0.1:5000 user@head      then open http://127.0.0.1:5000
and point sweeps at it with tracking_uri=http://127.0.0.1:5000 (on the head node, or through the tunnel)."""


def _sweep_args(p: argparse.ArgumentParser, overrides_help: str = OVERRIDES_HELP) -> None:
    p.add_argument("sweep", nargs="?", metavar="SWEEP.yaml", help=SWEEP_HELP)   # None: main() fills it in
    p.add_argument("overrides", nargs="*", metavar="key=value", help=overrides_help)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xlt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("run", help="run the sweep, or resume it", formatter_class=raw, epilog=RUN_EPILOG,
                       description="Run the sweep, or resume it: finished nodes are skipped, failed and "
                                   "interrupted ones are run again.")
    _sweep_args(p)
    p.add_argument("--verbose", action="store_true", help="also print Ray Tune's own trial table and each "
                                                          "trial's config")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("plan", help="print the trial graph without running anything",
                       description="Print the trial graph, node counts and resources per kind; runs nothing.")
    _sweep_args(p)
    p.add_argument("--estimate", action="store_true",
                   help="print device-hours per kind, the critical path and a simulated wall-clock time instead of "
                        "the node listing")
    p.add_argument("--throughput", metavar="FILE", help="measured throughput: a benchmarks/gpu_check.py JSON "
                                                        "(default runs/gpu_check/gpu_check.json when it exists)")
    p.add_argument("--measured", metavar="RUN_DIR",
                   help="a previous run's output_dir: its finished nodes' measured tokens/s replace the rates "
                        "(default: this sweep's output_dir, when its nodes recorded any)")
    p.add_argument("--pretrain-tokens-per-s", type=float, metavar="N",
                   help="a stated pretraining rate, tokens/s per GPU for BERT-base at S = 128 (overrides the others)")
    p.add_argument("--gpus", type=int, default=8, help="GPUs the estimate schedules on (default 8)")
    p.add_argument("--cpus", type=float, default=96, help="CPUs the estimate schedules on (default 96)")
    p.add_argument("--corpus-tokens", action="append", metavar="NAME=TOKENS",
                   help="a corpus size the estimate uses instead of its assumption, e.g. wiki_en=4.5e9 (repeatable)")
    p.set_defaults(fn=cmd_plan)

    for name, fn, text in (("status", cmd_status, "done / running / interrupted / failed / pending / stale "
                                                  "per kind, and failed nodes with their error"),
                           ("report", cmd_report, "Table 2 / Table 7 shaped results and the evaluation tables, "
                                                  "markdown and CSV under <output_dir>/report")):
        p = sub.add_parser(name, help=text.split(",")[0], description=text[0].upper() + text[1:] + ".",
                           epilog=READ_ONLY_EPILOG)
        _sweep_args(p, OVERRIDES_HELP + "; without them, those of the last `xlt run` of this config")
        p.add_argument("--no-last-run", action="store_true",
                       help="read the config as written, not with the overrides of its last `xlt run`")
        if name == "status":
            p.add_argument("--nodes", action="store_true", help="list every node with its state")
        p.set_defaults(fn=fn)

    p = sub.add_parser("serve", help="an MLflow tracking server on 127.0.0.1", formatter_class=raw,
                       epilog=SERVE_EPILOG,
                       description="Start `mlflow server` in the foreground with a SQLite store and an artifact "
                                   "folder, and print the tracking_uri a sweep should use.")
    p.add_argument("sweep", nargs="?", default=None, metavar="SWEEP.yaml",
                   help="optional: serve this sweep's SQLite store, or listen on the port of its http tracking_uri")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of that config, as for run")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; another one "
                                                       "needs --public)")
    p.add_argument("--port", type=int, help="port (default 5000, or the port of the sweep's tracking_uri)")
    p.add_argument("--backend-store-uri", help="where runs are stored (default sqlite:///mlruns/mlflow.db "
                                               "under the working directory, or the sweep's SQLite file)")
    p.add_argument("--artifacts-destination", help="where uploaded artifacts are stored (default mlruns/artifacts)")
    p.add_argument("--workers", type=int, help="server worker processes (default: mlflow's)")
    p.add_argument("--public", action="store_true", help="allow a --host other than loopback: the server has "
                                                         "no authentication")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("glue-submission", help="one model's GLUE test predictions as a leaderboard zip",
                       description="Gather one model's GLUE test predictions of one seed into a leaderboard zip "
                                   "(needs finetune.predict_test: true).")
    _sweep_args(p, "overrides, as for run")
    p.add_argument("--model", required=True, help="model key, as in `xlt plan` (e.g. S-to-en-frequency)")
    p.add_argument("--seed", type=int, required=True, help="the fine-tuning seed whose models are submitted")
    p.add_argument("--out", help="folder for the files (default <output_dir>/glue_submission/<model>-seed<N>); "
                                 "the zip is written beside it")
    p.set_defaults(fn=cmd_glue_submission)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from orchestrator.config import DEFAULT_CONFIG, ConfigError
    from stages.common import StageError

    if args.sweep and "=" in args.sweep:  # `xlt run a=b`: overrides on the default config
        args.overrides.insert(0, args.sweep)
        args.sweep = str(DEFAULT_CONFIG)
    if args.sweep is None and args.command != "serve":   # serve without a config serves the default store
        args.sweep = str(DEFAULT_CONFIG)
    try:
        return args.fn(args)
    except (ConfigError, StageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
