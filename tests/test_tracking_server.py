"""Tracking to an MLflow server: the experiment opens on the runs table, the parent run records the config,
overrides and git commit, a server that is down stops `xlt run` at once with one clear line, and a real
sweep through Ray tracked to a real `xlt serve` (mlflow server on loopback) keeps one run per node.

Every server and Ray here is this test's own: free ports on 127.0.0.1, files under tmp_path, a Ray temp
dir of its own, each stopped by the test that started it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["XDG_CACHE_HOME"] = str(tmp / "cache")     # the last-run record stays in the test's folder
    return env


# --- the experiment kind and the parent run's record ----------------------------------------------------

def test_experiment_opens_on_the_runs_table(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, Tracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    t = Tracker(uri, "xlt-new", str(tmp_path / "artifacts"))
    assert client.get_experiment(t.experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == \
        "custom_model_development"
    # an experiment made before (no tag), or one whose kind the UI only guessed, gets it too
    old = client.create_experiment("xlt-old")
    guessed = client.create_experiment("xlt-guessed", tags={EXPERIMENT_KIND_TAG: "genai_development_inferred"})
    chosen = client.create_experiment("xlt-chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name, exp_id in (("xlt-old", old), ("xlt-guessed", guessed)):
        Tracker(uri, name)
        assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND, name
    Tracker(uri, "xlt-chosen")          # a kind picked by hand in the UI is left alone
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_parent_run_records_config_overrides_and_commit(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import git_state, run_record
    from orchestrator.tracking import Tracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    t = Tracker(uri, "xlt-rec", str(tmp_path / "artifacts"))
    resolved = tmp_path / "sweep.resolved.json"
    resolved.write_text("{}")
    overrides = ["finetune.seeds=[1,2]", "pretrain.max_steps=10"]
    tags, invocation = run_record("configs/demo.yaml", overrides)
    run_id = t.sweep_run("rec", {"config": "demo.yaml", "seed": 0}, str(resolved), tags=tags, invocation=invocation)
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    commit = git_state()["commit"]
    assert run.data.tags["xlt.overrides"] == "finetune.seeds=[1,2] pretrain.max_steps=10"
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["xlt.git_commit"] == commit
    assert run.data.tags["xlt.git_dirty"] in ("true", "false", "unknown")
    assert run.data.tags["xlt.config"] == str((Path.cwd() / "configs/demo.yaml").resolve())
    assert run.data.params["config"] == "demo.yaml"
    assert {a.path for a in client.list_artifacts(run_id)} == {"sweep.resolved.json", "overrides.json"}
    saved = json.loads(Path(client.download_artifacts(run_id, "overrides.json", str(tmp_path / "dl"))).read_text())
    assert saved["overrides"] == overrides and saved["git_commit"] == commit

    # the next `xlt run` of the sweep reuses the parent run: its tags and overrides.json follow that run
    tags, invocation = run_record("configs/demo.yaml", [])
    assert t.sweep_run("rec", {"config": "demo.yaml", "seed": 0}, str(resolved), tags=tags,
                       invocation=invocation) == run_id
    assert client.get_run(run_id).data.tags["xlt.overrides"] == "-"
    again = json.loads(Path(client.download_artifacts(run_id, "overrides.json", str(tmp_path / "dl2"))).read_text())
    assert again["overrides"] == []


# --- a server that is down -------------------------------------------------------------------------------

def test_probe_of_a_server_that_does_not_answer():
    from orchestrator.tracking import TrackingServerDown, check_server

    port = _free_port()                          # nothing listens there
    t0 = time.time()
    with pytest.raises(TrackingServerDown, match=f"http://127.0.0.1:{port} does not answer"):
        check_server(f"http://127.0.0.1:{port}")
    # a server that accepts connections but never answers: the probe's timeout, not MLflow's minutes
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        with pytest.raises(TrackingServerDown, match="does not answer"):
            check_server(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=0.5)
    assert time.time() - t0 < 5
    check_server("sqlite:///nowhere/mlflow.db")  # nothing to probe


def test_run_against_a_stopped_server_fails_at_once_with_one_line(tmp_path):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(REPO / "configs" / "demo.yaml"),
                           f"tracking_uri={uri}", f"output_dir={tmp_path}/runs"], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    seconds = time.time() - t0
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: MLflow tracking server " + uri), proc.stderr
    assert f"xlt serve --port {port}" in err[0] and "tracking_uri=sqlite:///" in err[0]
    assert proc.stdout == ""                     # nothing started: no data generation, no Ray
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()
    assert not (tmp_path / "cache").exists()     # not recorded as the last run either
    print(f"xlt run against a stopped server: exit 2 after {seconds:.1f} s (interpreter start and imports)")
    assert seconds < 120


# --- a real sweep through Ray, tracked to a real `xlt serve` ---------------------------------------------

DRIVER = """
import sys, ray
from orchestrator.cli import main
ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=sys.argv[1],
         runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
try:
    rc = main(["run", *sys.argv[2:]])
finally:
    ray.shutdown()
sys.exit(rc)
"""


def _stop(proc: subprocess.Popen) -> str:
    """Stop the process group the test started (the process and its children, nothing else)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    return out or ""


def _wait_healthy(uri: str, server: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            pytest.fail("the MLflow server exited:\n" + _stop(server)[-4000:])
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the MLflow server did not answer at {uri}/health within {seconds:.0f} s:\n" + _stop(server)[-4000:])


@pytest.mark.slow
def test_sweep_through_ray_tracked_to_xlt_serve(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator.cli import git_state
    from orchestrator.config import load_sweep
    from orchestrator.graph import build_graph
    from tests.conftest import write_corpus
    from tests.test_sweep_ray import WORDS_S, sweep_yaml, tiny_glue

    write_corpus(tmp_path / "e.txt", 1500, seed=1)
    write_corpus(tmp_path / "s.txt", 1500, seed=2, words=WORDS_S)
    tiny_glue(tmp_path / "glue")
    cfg = sweep_yaml(tmp_path, target_vocab=300)  # as in test_sweep_ray: the frequency transfer fails, clearly
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    t0 = time.time()
    server = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "serve", "--port", str(port), "--workers",
                               "1", "--backend-store-uri", f"sqlite:///{tmp_path}/server/mlflow.db",
                               "--artifacts-destination", str(tmp_path / "server" / "artifacts")],
                              cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    ray_tmp = tempfile.mkdtemp(prefix="xltray-", dir="/tmp")   # short: Ray's socket paths have a length limit
    driver = None
    try:
        _wait_healthy(uri, server)
        up = time.time() - t0
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, ray_tmp, str(cfg), f"tracking_uri={uri}"],
                                  cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = driver.communicate(timeout=540)
        except subprocess.TimeoutExpired:
            pytest.fail("the sweep did not finish in 540 s:\n" + _stop(driver)[-6000:])
        assert driver.returncode == 1, out[-8000:]      # 1: the frequency transfer and its fine-tune failed

        graph = build_graph(load_sweep(cfg, [f"tracking_uri={uri}"]))
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name("xlt-e2e")
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        node_runs = [r for r in runs if "xlt.node_id" in r.data.tags]
        # one run per node, every node has its run, none left RUNNING or SCHEDULED
        assert sorted(r.data.tags["xlt.node_id"] for r in node_runs) == sorted(graph.nodes)
        assert not [r.data.tags.get("xlt.node_id", "sweep") for r in runs
                    if r.info.status in ("RUNNING", "SCHEDULED")]
        status = {r.data.tags["xlt.node_id"]: r.info.status for r in node_runs}
        failed = {"pretrain/S-to-en-frequency", "finetune/S-to-en-frequency/sst2/seed1"}
        assert {n for n, st in status.items() if st == "FAILED"} == failed
        assert all(st == "FINISHED" for n, st in status.items() if n not in failed)
        (parent,) = [r for r in runs if r.data.tags.get("xlt.kind") == "sweep"]
        assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in node_runs)
        assert parent.data.tags["mlflow.source.git.commit"] == parent.data.tags["xlt.git_commit"] == \
            git_state()["commit"]
        assert parent.data.tags["xlt.overrides"] == f"tracking_uri={uri}"
        # artifacts went through the server (proxied) into its artifact folder
        assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"sweep.resolved.json",
                                                                               "overrides.json"}
        assert list((tmp_path / "server" / "artifacts").rglob("overrides.json"))

        # what the user saw: our progress lines, not Tune's trial boxes or its sys.maxsize header
        for node_id in graph.nodes:
            if node_id != "finetune/S-to-en-frequency/sst2/seed1":     # never a trial: its parent failed
                assert f" {node_id}" in out and any(line.startswith("[start]") and line.endswith(node_id)
                                                    for line in out.splitlines()), node_id
        done = [line for line in out.splitlines() if line.startswith("[done]")]
        assert any(line.split()[2] == "finetune/S/sst2/seed1" and " accuracy " in line for line in done), done
        assert any(line.split()[2] == "pretrain/S" and " eval_loss " in line for line in done), done
        assert any(line.startswith("[failed] pretrain   pretrain/S-to-en-frequency") for line in out.splitlines())
        assert "[progress " in out and "; finished |" in out
        assert "9223372036854775807" not in out and "started with configuration" not in out
        assert "Trial status:" not in out
        print(f"server up in {up:.0f} s; sweep of {len(graph.nodes)} nodes through it: {time.time() - t0:.0f} s")
    finally:
        if driver is not None:
            _stop(driver)
        _stop(server)
        shutil.rmtree(ray_tmp, ignore_errors=True)
