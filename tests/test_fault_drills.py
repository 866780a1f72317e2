"""Fault drills: a small real sweep through Ray Tune, hurt from outside while it runs, then checked.

Every drill runs `xlt run` (orchestrator.cli.main, the `xlt` entry point) in a subprocess with its own Ray:
own temp dir, `address="local"`, 2 CPUs, started in a new session so that the test can kill exactly the
processes it started (the session the driver leads, plus any process whose command line names the Ray temp
dir) and nothing of other users' Rays. The sweep has six nodes:

    tokenizer/S-120-cased -> tokenize/S/S-120-cased -> pretrain/S -+-> pretrain/S-to-en-keep -> finetune/S-to-en-keep/…
                                                                   +-> finetune/S/sst2/seed1          ([S] direct)

and both pretraining nodes checkpoint every 2 steps and log every step (slow enough to be hit mid-run).
Each drill compares its outcome with the same sweep run once, uninterrupted, into another folder
(`reference`, shared by the drills of this module): on CPU with one thread per trial every result is a
function of the config, so a fault that was recovered from leaves no trace in the results.

1. kill -9 of a pretraining trial's WORKER, after its first checkpoint (`max_failures: 1`): Tune retries
   the trial, it resumes from the checkpoint, its weights and losses equal the reference's bit for bit, and
   MLflow holds one run for the node, nothing left RUNNING or SCHEDULED.
2. kill -9 of the DRIVER mid-sweep, then the same command again: no node that was DONE re-runs (DONE bytes,
   mtime and MLflow end time unchanged), one MLflow run per node, no orphan, and a report byte-identical to
   the reference's.
3. SIGINT (Ctrl-C) of the driver while trials run: the driver exits promptly, the trials stop, their MLflow
   runs end KILLED, and the same command again finishes the sweep without re-running what was DONE.
4. A finished sweep damaged at rest (a torn DONE, a parent's model/ deleted): the rerun says so and re-runs
   exactly those nodes and the parent's child; results and report equal the reference's.

All are `slow` (each takes minutes on 2 CPUs): `python -m pytest -m slow tests/test_fault_drills.py`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NAME = "drill"
SOURCE, KEEP = "pretrain/S", "pretrain/S-to-en-keep"
NODES = {"tokenizer/S-120-cased", "tokenize/S/S-120-cased", SOURCE, KEEP, "finetune/S-to-en-keep/sst2/seed1",
         "finetune/S/sst2/seed1"}
MAX_STEPS, CHECKPOINT_EVERY = 40, 2
SWEEP_TIMEOUT = 420          # one whole sweep on 2 shared CPUs takes 1-2 minutes
LIVE = ("RUNNING", "SCHEDULED")

# The driver: `xlt run CONFIG` after starting a private Ray (run_sweep joins an initialised Ray). Ray's
# default address would join a Ray some other user started on this machine, and its default temp dir is
# shared by all of them.
DRIVER = """
import sys, ray
from orchestrator.cli import main
ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=sys.argv[2],
         object_store_memory=200 * 1024 ** 2, runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
try:
    rc = main(["run", sys.argv[1]])
finally:
    ray.shutdown()
sys.exit(rc)
"""


# --- the sweep ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Corpora and a GLUE folder shared by every sweep of the module (node hashes include their stamps)."""
    from tests.conftest import write_corpus
    from tests.test_sweep_ray import WORDS_S, tiny_glue

    d = tmp_path_factory.mktemp("data")
    write_corpus(d / "e.txt", 1500, seed=1)
    write_corpus(d / "s.txt", 1500, seed=2, words=WORDS_S)
    tiny_glue(d / "glue")
    return d


def sweep_yaml(root: Path, data: Path) -> Path:
    """The drills' sweep, writing into `root` (its own output folder and MLflow database)."""
    import yaml

    pretrain = {"batch_size": 8, "per_device_batch_size": 8, "block_size": 32, "max_steps": MAX_STEPS,
                "learning_rate": 1e-3, "log_every": 1, "eval_every": 20, "checkpoint_every": CHECKPOINT_EVERY}
    cfg = {
        "name": NAME, "output_dir": str(root / "runs"), "tracking_uri": f"sqlite:///{root}/mlruns/mlflow.db",
        "max_concurrent_trials": 2, "max_failures": 1,
        "corpora": {"E": {"files": [str(data / "e.txt")]}, "S": {"files": [str(data / "s.txt")]}},
        "sources": {"S": {"keep_vocab_size": None, "build": {
            "corpus": "S", "vocab_size": 120, "pretrain": pretrain,
            "architecture": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                             "max_position_embeddings": 64}}}},
        "target": {"corpus": "E", "vocab_size": 300, "min_frequency": 1},
        "experiments": {"transfer_from": ["S"], "vocab_modes": ["keep"], "direct": ["S"], "scratch": False},
        "pretrain": pretrain,
        "finetune": {"tasks": ["sst2"], "seeds": [1], "data_dir": str(data / "glue"), "epochs": 1, "batch_size": 8,
                     "max_length": 32, "learning_rate": 1e-3, "log_every": 4},
        "resources": {k: {"cpu": 1, "gpu": 0} for k in ("tokenizer", "tokenize", "pretrain", "finetune")},
    }
    root.mkdir(parents=True, exist_ok=True)
    p = root / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def graph_of(cfg: Path):
    """The sweep's graph as the driver builds it, in the directory it runs in (the config's folder): a node
    hash may hold paths relative to it (`base_dir`)."""
    from orchestrator.config import load_sweep
    from orchestrator.graph import build_graph

    with contextlib.chdir(cfg.parent):
        graph = build_graph(load_sweep(cfg))
    assert set(graph.nodes) == NODES
    return graph


def states(graph) -> dict[str, str]:
    from orchestrator.runner import node_state

    return {n: node_state(graph, n) for n in graph.nodes}


# --- the driver and its Ray: start, wait, kill exactly what was started ---------------------------------

@dataclass
class Driver:
    proc: subprocess.Popen
    ray_tmp: str
    log: Path
    started: float = field(default_factory=time.time)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_driver(cfg: Path, log_name: str) -> Driver:
    ray_tmp = tempfile.mkdtemp(prefix="xltdrill-", dir="/tmp")   # short: Ray's socket paths have a length limit
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    log = cfg.parent / log_name
    with open(log, "w") as f:   # a file, not a pipe: nobody reads a pipe while the test polls the node folders
        proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(cfg), ray_tmp], cwd=cfg.parent, env=env,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    return Driver(proc, ray_tmp, log)


def _session_of(pid: int) -> int | None:
    """The session id of a process, a zombie too (until it is reaped, `kill(pid, 0)`, which node_state asks,
    still finds it); None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[3])


def ours(driver: Driver) -> list[int]:
    """Processes this driver started: its session (the driver leads a new one; Ray's workers put themselves
    in process groups of their own, but stay in it), and Ray processes whose command lines name the private
    temp dir. Never anything of another user's Ray."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmdline = (p / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        session = _session_of(int(p.name))
        if session is not None and (session == driver.proc.pid or driver.ray_tmp in cmdline):
            pids.append(int(p.name))
    return pids


def kill_all(driver: Driver, timeout: float = 60) -> None:
    """SIGKILL the driver and every process it started, wait until they are gone (reaped, not only dead:
    a zombie still looks alive to node_state), remove the Ray temp dir."""
    deadline = time.time() + timeout
    while True:
        driver.proc.poll()             # reaps the driver, our child, once it is dead
        pids = ours(driver)
        if not pids:
            break
        if time.time() > deadline:
            raise AssertionError(f"processes {pids} of the drill's Ray are still there {timeout:.0f} s after "
                                 "SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    shutil.rmtree(driver.ray_tmp, ignore_errors=True)


def wait_driver(driver: Driver, timeout: float = SWEEP_TIMEOUT) -> int:
    """The driver's exit status; fails the test (after killing everything) if it runs past `timeout`."""
    try:
        return driver.proc.wait(timeout=max(1.0, driver.started + timeout - time.time()))
    except subprocess.TimeoutExpired:
        kill_all(driver)
        pytest.fail(f"the driver did not finish in {timeout:.0f} s:\n" + driver.output()[-6000:])
    finally:
        if driver.proc.poll() is not None:
            kill_all(driver)   # a finished driver's Ray is gone already; this only checks and cleans up


def run_to_end(cfg: Path, log_name: str) -> tuple[str, float]:
    """The sweep run (or rerun) to its end; its output and wall time. It must succeed."""
    driver = start_driver(cfg, log_name)
    rc = wait_driver(driver)
    seconds = time.time() - driver.started
    out = driver.output()
    assert rc == 0, out[-8000:]
    return out, seconds


def poll_until(driver: Driver, what: str, condition, timeout: float = SWEEP_TIMEOUT, every: float = 0.05):
    """Poll `condition()` until it returns something true (returned); fail if the driver ends first."""
    while time.time() < driver.started + timeout:
        got = condition()
        if got:
            return got
        if driver.proc.poll() is not None:
            pytest.fail(f"the driver exited ({driver.proc.returncode}) before {what}:\n" + driver.output()[-6000:])
        time.sleep(every)
    kill_all(driver)
    pytest.fail(f"no {what} within {timeout} s:\n" + driver.output()[-6000:])


@pytest.fixture
def cleanup():
    """Drivers a test started; whatever the test's outcome, none of their processes outlive it."""
    drivers: list[Driver] = []
    yield drivers
    for d in drivers:
        kill_all(d)


# --- what a sweep left behind -----------------------------------------------------------------------------

def mlflow_runs(graph) -> tuple[dict[str, list], list]:
    """The experiment's runs: per `xlt.node_id` tag (a list: duplicates must show), and all of them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(graph.sweep.tracking_uri)
    exp = client.get_experiment_by_name(f"xlt-{NAME}")
    runs = client.search_runs([exp.experiment_id], max_results=10000)
    by_node: dict[str, list] = {}
    for r in runs:
        if "xlt.node_id" in r.data.tags:
            by_node.setdefault(r.data.tags["xlt.node_id"], []).append(r)
    return by_node, runs


def check_mlflow_clean(graph) -> dict:
    """One MLflow run per node, all FINISHED, none anywhere left RUNNING or SCHEDULED; the runs per node."""
    by_node, runs = mlflow_runs(graph)
    assert {n: len(r) for n, r in by_node.items()} == {n: 1 for n in graph.nodes}, "one run per node id"
    assert {n: r[0].info.status for n, r in by_node.items()} == {n: "FINISHED" for n in graph.nodes}
    assert not [(r.info.run_name, r.info.status) for r in runs if r.info.status in LIVE], "orphan runs"
    return {n: r[0] for n, r in by_node.items()}


def report_files(graph) -> dict[str, bytes]:
    """The report's results; cost.md / cost.csv hold wall times, which no two runs share."""
    folder = Path(graph.sweep.output_dir) / "report"
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())
             if p.suffix in (".md", ".csv") and p.stem != "cost"}
    assert "report.md" in files and any(name.endswith(".csv") for name in files), sorted(files)
    return files


def done_stamps(graph, nodes) -> dict[str, tuple[bytes, int]]:
    """Each node's DONE file: its bytes and mtime (whatever its format, a re-run would rewrite it)."""
    return {n: ((graph.node_dir(n) / "DONE").read_bytes(), (graph.node_dir(n) / "DONE").stat().st_mtime_ns)
            for n in nodes}


def failure(path: Path) -> str:
    """The error a FAILED marker records (a JSON record with `error`, or older plain text)."""
    try:
        return json.loads(path.read_text())["error"]
    except (ValueError, KeyError, TypeError):
        return path.read_text(errors="replace")[:300]


def tune_trial_dirs(graph) -> dict[str, set[str]]:
    """Per Tune experiment (one per `xlt run`, named by its start time), the nodes it ran a trial of."""
    root = Path(graph.sweep.output_dir) / "tune"
    return {e.name: {t.name for t in e.iterdir() if t.is_dir()} for e in sorted(root.glob("run-*"))}


def weights(node_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(node_dir / "model" / "model.safetensors"))


def assert_same_pretraining(graph, ref_graph, node_id: str) -> dict:
    """The node's final weights and pretrain_result.json losses equal the reference's bit for bit."""
    import torch

    got, want = weights(graph.node_dir(node_id)), weights(ref_graph.node_dir(node_id))
    assert got.keys() == want.keys()
    assert [k for k in want if not torch.equal(got[k], want[k])] == [], f"{node_id}: weights differ"
    res = json.loads((graph.node_dir(node_id) / "pretrain_result.json").read_text())
    ref = json.loads((ref_graph.node_dir(node_id) / "pretrain_result.json").read_text())
    keys = ("steps", "tokens_seen", "train_loss", "eval_loss", "eval_perplexity", "eval_accuracy")
    assert {k: res[k] for k in keys} == {k: ref[k] for k in keys}, node_id
    assert ref["resumed_from_step"] == 0
    return res


@dataclass
class Reference:
    graph: object
    report: dict[str, bytes]
    seconds: float


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Reference:
    """The drills' sweep run once without any fault."""
    cfg = sweep_yaml(tmp_path_factory.mktemp("reference"), data)
    out, seconds = run_to_end(cfg, "driver.log")
    print(f"uninterrupted sweep: {seconds:.0f} s")
    graph = graph_of(cfg)
    assert set(states(graph).values()) == {"done"}, states(graph)
    check_mlflow_clean(graph)
    return Reference(graph, report_files(graph), seconds)


# --- the drills ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_worker_killed_after_a_checkpoint_is_retried_and_resumes_bit_identically(tmp_path, data, reference,
                                                                                   cleanup):
    cfg = sweep_yaml(tmp_path, data)
    graph = graph_of(cfg)
    assert graph.sweep.max_failures == 1   # the sweep key Tune's FailureConfig gets: one retry
    node_dir = graph.node_dir(SOURCE)
    driver = start_driver(cfg, "driver.log")
    cleanup.append(driver)

    def checkpointed_worker():
        # checkpoint/ appears by a rename of a finished folder, so once it exists it is a whole checkpoint
        if not (node_dir / "checkpoint").is_dir() or not (node_dir / "STARTED").exists():
            return None
        pid = json.loads((node_dir / "STARTED").read_text())["pid"]
        return pid if pid in ours(driver) else None   # only ever kill a process of this drill's Ray

    pid = poll_until(driver, f"a checkpoint of {SOURCE}", checkpointed_worker)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time() - driver.started
    assert not (node_dir / "pretrain_result.json").exists(), "the kill came too late: the node had finished"

    rc = wait_driver(driver)
    print(f"sweep with its pretraining worker killed at {killed_at:.0f} s: {time.time() - driver.started:.0f} s")
    assert rc == 0, driver.output()[-8000:]
    assert set(states(graph).values()) == {"done"}, states(graph)

    # Tune retried the trial (the same trial, not a new one of a rerun), in another worker process ...
    (experiment,) = tune_trial_dirs(graph).values()
    assert SOURCE.replace("/", "_") in experiment
    assert json.loads((node_dir / "STARTED").read_text())["pid"] != pid
    # ... which resumed from the checkpoint rather than from step 0
    res = assert_same_pretraining(graph, reference.graph, SOURCE)
    assert 0 < res["resumed_from_step"] < MAX_STEPS and res["resumed_from_step"] % CHECKPOINT_EVERY == 0, res
    print(f"the retry resumed from step {res['resumed_from_step']}")

    runs = check_mlflow_clean(graph)
    # both attempts logged to the node's one run; every logged loss is the reference's at that step
    from mlflow.tracking import MlflowClient

    client = MlflowClient(graph.sweep.tracking_uri)
    ref_runs = check_mlflow_clean(reference.graph)
    ref_client = MlflowClient(reference.graph.sweep.tracking_uri)
    want = {m.step: m.value for m in ref_client.get_metric_history(ref_runs[SOURCE].info.run_id, "train/loss")}
    got = client.get_metric_history(runs[SOURCE].info.run_id, "train/loss")
    assert sorted(want) == list(range(1, MAX_STEPS + 1))
    # (steps the first attempt logged after its checkpoint come twice, the retry's equal to the first's)
    assert {m.step for m in got} == set(want) and all(m.value == want[m.step] for m in got)

    # and what follows the retried node is the reference's too
    assert_same_pretraining(graph, reference.graph, KEEP)
    assert report_files(graph) == reference.report


def _some_done_and_a_checkpointed_pretraining_running(graph):
    """Mid-sweep: the source is DONE and its keep transfer is running with a checkpoint on disk."""
    def condition():
        if not (graph.node_dir(KEEP) / "checkpoint").is_dir():
            return None
        st = states(graph)
        return st if st[SOURCE] == "done" and st[KEEP] == "running" else None
    return condition


class Invariants:
    """The invariants a drill found broken, all of them: one run of a drill takes minutes, and the first broken
    one should not hide the next. `check` records, `assert_held` fails once with the whole list."""

    def __init__(self):
        self.broken: list[str] = []

    def check(self, held: bool, invariant: str, detail="") -> bool:
        if not held:
            self.broken.append(f"{invariant}: {detail}"[:2000])
        return held

    def assert_held(self) -> None:
        assert not self.broken, f"{len(self.broken)} invariant(s) broken:\n- " + "\n- ".join(self.broken)


def check_rerun(inv: Invariants, graph, reference: Reference, done: list[str], stamps, ends) -> None:
    """After a rerun of an interrupted sweep: everything DONE, nothing that was DONE before re-run, one
    FINISHED MLflow run per node and no orphan, the interrupted pretraining resumed, the reference's report."""
    st = states(graph)
    inv.check(set(st.values()) == {"done"}, "every node is done after the rerun", st)
    # a node that was DONE is not re-run: its DONE file is the same file, its MLflow run untouched, and the
    # rerun's Tune experiment (the newer of the two) has no trial of it
    inv.check(done_stamps(graph, done) == stamps, "DONE files of nodes done before the rerun are unchanged")
    experiments = list(tune_trial_dirs(graph).values())
    rerun_trials = experiments[-1] if len(experiments) == 2 else set()
    inv.check(len(experiments) == 2, "two Tune experiments: the interrupted run and the rerun", experiments)
    inv.check(not {n.replace("/", "_") for n in done} & rerun_trials, "the rerun runs no trial of a DONE node",
              sorted(rerun_trials))
    by_node, runs = mlflow_runs(graph)
    inv.check({n: len(r) for n, r in by_node.items()} == {n: 1 for n in graph.nodes}, "one MLflow run per node",
              {n: len(r) for n, r in by_node.items()})
    inv.check({n: [r.info.status for r in rs] for n, rs in by_node.items()} == {n: ["FINISHED"] for n in graph.nodes},
              "every node's run FINISHED", {n: [r.info.status for r in rs] for n, rs in by_node.items()})
    live = [(r.info.run_name, r.info.status) for r in runs if r.info.status in LIVE]
    inv.check(not live, "no MLflow run left RUNNING or SCHEDULED", live)
    now = {n: [(r.info.run_id, r.info.status, r.info.end_time) for r in by_node.get(n, [])] for n in done}
    inv.check(now == ends, "the runs of nodes done before the rerun are untouched (status, end time)",
              {n: (ends[n], now[n]) for n in done if ends[n] != now[n]})
    res = json.loads((graph.node_dir(KEEP) / "pretrain_result.json").read_text())
    inv.check(res["resumed_from_step"] > 0, f"{KEEP} resumed from its checkpoint", res)
    try:
        assert_same_pretraining(graph, reference.graph, KEEP)
    except AssertionError as e:
        inv.check(False, f"{KEEP} ends bit-identical to the reference", e)
    got = report_files(graph)
    inv.check(got == reference.report, "the report is byte-identical to the uninterrupted run's",
              {k: (got.get(k), reference.report.get(k)) for k in set(got) | set(reference.report)
               if got.get(k) != reference.report.get(k)})


def snapshot_done(graph) -> tuple[list[str], dict, dict]:
    """The nodes DONE now, their DONE files (bytes, mtime) and their MLflow runs (id, status, end time)."""
    done = sorted(n for n, s in states(graph).items() if s == "done")
    by_node, _ = mlflow_runs(graph)
    ends = {n: [(r.info.run_id, r.info.status, r.info.end_time) for r in by_node.get(n, [])] for n in done}
    return done, done_stamps(graph, done), ends


@pytest.mark.slow
def test_driver_killed_mid_sweep_then_rerun_redoes_nothing_that_was_done(tmp_path, data, reference, cleanup):
    cfg = sweep_yaml(tmp_path, data)
    graph = graph_of(cfg)
    driver = start_driver(cfg, "driver.log")
    cleanup.append(driver)
    poll_until(driver, "a DONE node and a running checkpointed pretraining",
               _some_done_and_a_checkpointed_pretraining_running(graph))
    os.kill(driver.proc.pid, signal.SIGKILL)
    killed_at = time.time() - driver.started
    # Ray's processes may outlive their driver for a while: the rerun must not race them in the node folders
    kill_all(driver)

    before = states(graph)
    assert before[SOURCE] == "done" and before[KEEP] == "interrupted", before   # the drill hit mid-sweep
    assert "running" not in before.values(), before
    done, stamps, ends = snapshot_done(graph)
    inv = Invariants()
    inv.check(all(len(ends[n]) == 1 and ends[n][0][1] == "FINISHED" for n in done),
              "a node that is DONE has one FINISHED MLflow run, also when its driver was killed", ends)

    _, seconds = run_to_end(cfg, "rerun.log")
    print(f"driver killed at {killed_at:.0f} s with {done} done; rerun: {seconds:.0f} s")
    check_rerun(inv, graph, reference, done, stamps, ends)
    inv.assert_held()


@pytest.mark.slow
def test_ctrl_c_stops_the_sweep_and_a_rerun_finishes_it(tmp_path, data, reference, cleanup):
    cfg = sweep_yaml(tmp_path, data)
    graph = graph_of(cfg)
    driver = start_driver(cfg, "driver.log")
    cleanup.append(driver)
    running = poll_until(driver, "a DONE node and a running checkpointed pretraining",
                         _some_done_and_a_checkpointed_pretraining_running(graph))
    # Ctrl-C in a terminal: SIGINT to the driver (Ray's own processes block SIGINT)
    os.kill(driver.proc.pid, signal.SIGINT)
    t_int = time.time()
    try:
        rc = driver.proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the driver did not exit within 90 s of SIGINT:\n" + driver.output()[-6000:])
    exit_seconds = time.time() - t_int
    out = driver.output()
    kill_all(driver)   # the driver's ray.shutdown() stopped its Ray: this only checks that, and cleans up

    after = states(graph)
    # the nodes Ctrl-C cut short: started (STARTED is written first thing), not done
    interrupted = sorted(n for n, s in after.items() if s != "done" and (graph.node_dir(n) / "STARTED").exists())
    assert KEEP in interrupted and running[KEEP] == "running", (running, after)   # the drill hit mid-sweep
    print(f"SIGINT at {t_int - driver.started:.0f} s with {interrupted} running: the driver exited in "
          f"{exit_seconds:.1f} s with status {rc}; states after: {after}")
    inv = Invariants()
    # the trials stopped with the driver: no node is still running, and Ctrl-C failed none of them
    inv.check("running" not in after.values(), "no trial is still running once the driver is gone", after)
    failed = {n: failure(graph.node_dir(n) / "FAILED") for n in graph.nodes
              if (graph.node_dir(n) / "FAILED").exists()}
    inv.check(not failed, "Ctrl-C marks no node FAILED (an interrupted node is `interrupted`)", failed)
    # the interrupted nodes' MLflow runs ended KILLED; nothing is left RUNNING or SCHEDULED, nothing FAILED
    by_node, runs = mlflow_runs(graph)
    statuses = {n: [r.info.status for r in by_node.get(n, [])] for n in interrupted}
    inv.check(statuses == {n: ["KILLED"] for n in interrupted}, "the interrupted nodes' runs end KILLED", statuses)
    live = [(r.info.run_name, r.info.status) for r in runs if r.info.status in LIVE]
    inv.check(not live, "no MLflow run left RUNNING or SCHEDULED", live)
    # an interrupted sweep is not a finished one: neither for the shell (`xlt run ... && xlt report`) nor for
    # the sweep's MLflow run
    (sweep_run,) = [r for r in runs if r.data.tags.get("xlt.kind") == "sweep"]
    inv.check(rc != 0, "the interrupted driver exits with a non-zero status", rc)
    inv.check(sweep_run.info.status != "FINISHED", "the interrupted sweep's MLflow run does not say FINISHED",
              (sweep_run.info.status, [line for line in out.splitlines() if "interrupted" in line][-3:]))

    # the same command again finishes the sweep, re-running nothing that was DONE
    done, stamps, ends = snapshot_done(graph)
    _, seconds = run_to_end(cfg, "rerun.log")
    print(f"rerun after SIGINT: {seconds:.0f} s")
    check_rerun(inv, graph, reference, done, stamps, ends)
    inv.assert_held()



@pytest.mark.slow
def test_a_torn_done_and_a_deleted_parent_output_rerun_exactly_those_nodes(tmp_path, data, reference):
    """A finished sweep, damaged at rest: one node's DONE torn (a crash mid-write on a filesystem without
    atomic renames), one parent's model/ deleted after it was DONE. The same command again notices both,
    says so, and re-runs the torn node, the parent and the parent's child, and nothing else; the results and
    the report equal the reference's."""
    shutil.copytree(reference.graph.sweep.output_dir, tmp_path / "runs")
    shutil.copytree(Path(reference.graph.sweep.tracking_uri[len("sqlite:///"):]).parent, tmp_path / "mlruns")
    cfg = sweep_yaml(tmp_path, data)
    graph = graph_of(cfg)
    assert set(states(graph).values()) == {"done"}          # a copied output folder stays done
    torn, child = "finetune/S/sst2/seed1", "finetune/S-to-en-keep/sst2/seed1"
    text = (graph.node_dir(torn) / "DONE").read_text()
    (graph.node_dir(torn) / "DONE").write_text(text[: len(text) // 2])
    shutil.rmtree(graph.node_dir(KEEP) / "model")
    rerun = {torn, KEEP, child}
    assert {n for n, s in states(graph).items() if s != "done"} == rerun
    untouched = {n: (graph.node_dir(n) / "DONE").read_bytes() for n in graph.nodes if n not in rerun}

    out, _ = run_to_end(cfg, "rerun.log")
    assert f"{torn}: its DONE marker is unreadable (a torn write)" in out
    assert f"{KEEP}: its output {KEEP}/model/" in out and "starting this node over" in out
    assert f"{child}: its parent {KEEP} was made again since it read it; starting this node over" in out
    ran = list(tune_trial_dirs(graph).values())[-1]            # this run's Tune experiment (the newest)
    assert ran == {n.replace("/", "_") for n in rerun}
    assert set(states(graph).values()) == {"done"}
    assert {n: (graph.node_dir(n) / "DONE").read_bytes() for n in untouched} == untouched
    assert_same_pretraining(graph, reference.graph, KEEP)
    assert report_files(graph) == reference.report
    by_node, runs = mlflow_runs(graph)
    assert {n: len(r) for n, r in by_node.items()} == {n: 1 for n in graph.nodes}
    assert not [r for r in runs if r.info.status in LIVE]
