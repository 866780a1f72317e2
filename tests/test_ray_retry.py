"""A pretraining trial that crashes after writing a checkpoint is retried by Ray Tune (`max_failures: 1`) and
resumes from that checkpoint, and the resumed run is bit-identical to one that never crashed.

The crash needs no hook in production code: Ray's `worker_process_setup_hook` runs
`install_fault_injection` (below) in every worker process, and it wraps `stages.pretrain.pretrain` so that the
node named in XLT_TEST_FAULTS dies at the given step, once (a marker file remembers it), before that step is
logged. Two kinds of crash, one per pretraining node of the same sweep: `exit` kills the worker process
(`os._exit`, as an OOM kill or a lost machine would), `raise` fails the trial with an exception.

The sweep runs in a subprocess with its own Ray (own temp dir, random ports, `address="local"`): the worker
setup hook is a job-level runtime_env setting, which a Ray already started by another test would lack.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

FAULTS_ENV, FAULT_DIR_ENV = "XLT_TEST_FAULTS", "XLT_TEST_FAULT_DIR"
REPO = Path(__file__).resolve().parent.parent
CRASH_STEP, CHECKPOINT_EVERY, MAX_STEPS = 5, 3, 6
FAULTS = {"pretrain/S": "exit", "pretrain/S-to-en-keep": "raise"}


def install_fault_injection() -> None:
    """Ray worker setup hook. XLT_TEST_FAULTS: `node id=exit|raise@step` entries, `;`-separated."""
    spec = os.environ.get(FAULTS_ENV)
    if not spec:
        return
    import stages.pretrain

    faults = {}
    for entry in spec.split(";"):
        node_id, how = entry.split("=")
        kind, step = how.split("@")
        faults[node_id] = (kind, int(step))
    real = stages.pretrain.pretrain

    def pretrain(cfg, on_log=None, log=print):
        out = Path(cfg.output_dir)
        hit = [(n, f) for n, f in faults.items() if out.as_posix().endswith("/" + n)]
        if not hit or on_log is None:
            return real(cfg, on_log=on_log, log=log)
        node_id, (kind, crash_step) = hit[0]

        def crashing_on_log(step, metrics):
            if step == crash_step:
                marker = Path(os.environ[FAULT_DIR_ENV]) / (node_id.replace("/", "_") + ".crashed")
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    fd = None                      # crashed once already: this is the retry
                if fd is not None:
                    state = out / "checkpoint" / "trainer_state.json"
                    ckpt = json.loads(state.read_text())["step"] if state.exists() else None
                    os.write(fd, json.dumps({"pid": os.getpid(), "step": step, "kind": kind,
                                             "checkpoint_step": ckpt}).encode())
                    os.close(fd)
                    if kind == "exit":
                        os._exit(3)
                    raise RuntimeError(f"injected fault in {node_id} at step {step}")
            on_log(step, metrics)

        return real(cfg, on_log=crashing_on_log, log=log)

    stages.pretrain.pretrain = pretrain


DRIVER = """
import sys, ray
from orchestrator.cli import main
ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=sys.argv[2],
         runtime_env={"worker_process_setup_hook": "tests.test_ray_retry.install_fault_injection",
                      "env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
try:
    rc = main(["run", sys.argv[1]])
finally:
    ray.shutdown()
sys.exit(rc)
"""


def _sweep_yaml(tmp: Path) -> Path:
    import yaml

    small = {"batch_size": 8, "per_device_batch_size": 8, "block_size": 32, "max_steps": MAX_STEPS,
             "learning_rate": 1e-3, "log_every": 1, "eval_every": 3, "checkpoint_every": CHECKPOINT_EVERY}
    cfg = {
        "name": "retry", "output_dir": str(tmp / "runs"), "tracking_uri": f"sqlite:///{tmp}/mlruns/mlflow.db",
        "max_concurrent_trials": 2, "max_failures": 1,
        "corpora": {"E": {"files": [str(tmp / "e.txt")]}, "S": {"files": [str(tmp / "s.txt")]}},
        "sources": {"S": {"keep_vocab_size": None, "build": {
            "corpus": "S", "vocab_size": 120, "pretrain": small,
            "architecture": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                             "max_position_embeddings": 64}}}},
        "target": {"corpus": "E", "vocab_size": 300, "min_frequency": 1},
        "experiments": {"transfer_from": ["S"], "vocab_modes": ["keep"], "direct": [], "scratch": False},
        "pretrain": small,
        "finetune": {"tasks": ["sst2"], "seeds": [1], "data_dir": str(tmp / "glue"), "epochs": 1, "batch_size": 8,
                     "max_length": 32, "learning_rate": 1e-3, "log_every": 4},
        "resources": {k: {"cpu": 1, "gpu": 0} for k in ("tokenizer", "tokenize", "pretrain", "finetune")},
    }
    p = tmp / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _run_driver(cfg: Path, fault_dir: Path) -> tuple[int, str, float]:
    ray_tmp = tempfile.mkdtemp(prefix="xltray-", dir="/tmp")   # short: Ray's socket paths have a length limit
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                FAULTS_ENV: ";".join(f"{n}={k}@{CRASH_STEP}" for n, k in FAULTS.items()),
                FAULT_DIR_ENV: str(fault_dir)})
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(cfg), ray_tmp], cwd=cfg.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)    # the driver and the Ray processes it started, nothing else
        out, _ = proc.communicate()
        pytest.fail("the sweep did not finish in 540 s:\n" + out[-6000:])
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return proc.returncode, out, time.time() - t0


def _uninterrupted(node, out_dir: Path):
    """The same node's pretraining run in this process without Ray or crash: the losses of every step, result."""
    import torch

    from stages.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig.model_validate({**node.params["config"], "output_dir": str(out_dir), "num_threads": 1})
    history: dict[int, dict] = {}
    threads = torch.get_num_threads()
    try:
        res = pretrain(cfg, on_log=lambda step, m: history.setdefault(step, dict(m)), log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    return history, res


def _weights(model_dir: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


@pytest.mark.slow
def test_crashed_pretraining_trial_is_retried_and_resumes_from_its_checkpoint(tmp_path):
    import torch
    from mlflow.tracking import MlflowClient

    from orchestrator.config import load_sweep
    from orchestrator.graph import build_graph
    from orchestrator.runner import read_done
    from tests.conftest import write_corpus
    from tests.test_sweep_ray import WORDS_S, tiny_glue

    write_corpus(tmp_path / "e.txt", 1500, seed=1)
    write_corpus(tmp_path / "s.txt", 1500, seed=2, words=WORDS_S)
    tiny_glue(tmp_path / "glue")
    cfg = _sweep_yaml(tmp_path)
    fault_dir = tmp_path / "faults"
    fault_dir.mkdir()
    sweep = load_sweep(cfg)
    assert sweep.max_failures == 1   # the YAML key the sweep hands to tune.FailureConfig(max_failures=...)

    rc, out, seconds = _run_driver(cfg, fault_dir)
    print(f"sweep with two injected crashes: {seconds:.0f} s")
    assert rc == 0, out[-8000:]

    graph = build_graph(sweep)
    assert set(graph.nodes) == {"tokenizer/S-120-cased", "tokenize/S/S-120-cased", "pretrain/S",
                                "pretrain/S-to-en-keep", "finetune/S-to-en-keep/sst2/seed1"}
    done = {n: read_done(graph, n) for n in graph.nodes}
    assert all(done.values()), {n: (graph.node_dir(n) / "FAILED").read_text()[:1500]
                                for n, d in done.items() if not d and (graph.node_dir(n) / "FAILED").exists()}

    client = MlflowClient(sweep.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("xlt-retry").experiment_id], max_results=100)
    node_runs = {r.data.tags["xlt.node_id"]: r for r in runs if "xlt.node_id" in r.data.tags}
    assert sorted(node_runs) == sorted(graph.nodes)             # a retry reuses its node's run
    assert all(r.info.status == "FINISHED" for r in node_runs.values())

    for node_id, kind in FAULTS.items():
        # the first attempt did crash, at step 5, with the step-3 checkpoint already on disk
        crash = json.loads((fault_dir / (node_id.replace("/", "_") + ".crashed")).read_text())
        assert crash == {"pid": crash["pid"], "step": CRASH_STEP, "kind": kind, "checkpoint_step": CHECKPOINT_EVERY}
        result = done[node_id]["result"]
        # the retry started at the checkpoint, not at step 0, and finished the budget
        assert result["resumed_from_step"] == CHECKPOINT_EVERY and result["steps"] == MAX_STEPS, result
        assert not (graph.node_dir(node_id) / "FAILED").exists()
        # MLflow saw steps 1-4 from the first attempt and 4-6 from the retry: step 4 twice, nothing from 0 again
        history = client.get_metric_history(node_runs[node_id].info.run_id, "train/loss")
        assert sorted(m.step for m in history) == [1, 2, 3, 4, 4, 5, 6], (node_id, [m.step for m in history])
        # Tune's own record of the trial says the same: one trial, its results restarting at step 4
        (tune_results,) = (Path(sweep.output_dir) / "tune").glob(f"run-*/{node_id.replace('/', '_')}/result.json")
        reported = [json.loads(line) for line in tune_results.read_text().splitlines()]
        # Its training reports restart at step 4; each attempt of a transfer first reports its init's diagnostics
        # (init/*, step 0); the trial ends with the weight movement from the init (movement/*, at the last step)
        # and the final report (no step).
        assert [r["step"] for r in reported if "train/loss" in r] == [1, 2, 3, 4, 4, 5, 6]
        assert "movement/body" in reported[-2] and reported[-2]["step"] == MAX_STEPS and "step" not in reported[-1]
        k = next(i for i, r in enumerate(reported) if i and r["training_iteration"] == 1)   # the retry's first
        assert [r["training_iteration"] for r in reported] == [*range(1, k + 1), *range(1, len(reported) - k + 1)]
        transfer = "init/copied" in reported[0]
        assert transfer == ("init/copied" in reported[k]) == (node_id != "pretrain/S")
        if kind == "exit":
            assert {r["pid"] for r in reported[:k]} == {crash["pid"]} and reported[k]["pid"] != crash["pid"]

        # Batch order, masks and (restored from the checkpoint) dropout RNG are functions of (seed, step):
        # on CPU with one thread the resumed run is bit-identical to one that never crashed.
        ref_history, ref = _uninterrupted(graph.nodes[node_id], tmp_path / "uninterrupted" / node_id)
        assert ref.resumed_from_step == 0 and sorted(ref_history) == list(range(1, MAX_STEPS + 1))
        for m in history:   # both attempts' losses, step 4 included, equal the uninterrupted run's
            assert m.value == ref_history[m.step]["train/loss"], (node_id, m.step)
        assert (result["train_loss"], result["eval_loss"]) == (ref.train_loss, ref.eval_loss), node_id
        got, want = _weights(result["model_dir"]), _weights(ref.model_dir)
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), node_id
    # the os._exit crash took its worker process with it: the retry ran in another one
    exit_started = json.loads((graph.node_dir("pretrain/S") / "STARTED").read_text())
    assert exit_started["pid"] != json.loads((fault_dir / "pretrain_S.crashed").read_text())["pid"]

    # gating held through the retries: children started only after the retried parent had succeeded
    for child, parent in (("pretrain/S-to-en-keep", "pretrain/S"),
                          ("finetune/S-to-en-keep/sst2/seed1", "pretrain/S-to-en-keep")):
        assert done[child]["started_at"] >= done[parent]["finished_at"], (child, parent)
