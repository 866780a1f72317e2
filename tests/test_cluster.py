"""The cluster path of the README ("On a Ray cluster"), drilled on one machine with two Ray nodes.

`ray start --head` and `ray start --address=...` start two raylets with one CPU each, so two trials that run at
the same time must run on different nodes. Each node has its own `--temp-dir` and every port is picked free, so
nothing here meets another Ray on this machine; the cluster uses token authentication with a token of its own
(`RAY_AUTH_MODE=token`, `RAY_AUTH_TOKEN_PATH`), not `~/.ray/auth_token`: Ray's own servers listen on every
interface whatever `--node-ip-address` says, and the token keeps others out. The dashboard (job API) listens on
127.0.0.1 only. Every Ray process the tests start lives in one of the two sessions that `ray start` was started
in (`start_new_session`), and the teardown signals exactly those sessions: never `ray stop`, which stops every
Ray of the user on the machine.

- `test_sweep_spreads_over_two_nodes`: `xlt run SWEEP.yaml ray_address=HEAD:PORT`, as a driver joining the
  cluster. Which node ran a trial is told by its worker pid (written to the node's `STARTED`): Ray names every
  worker's log `worker-<worker id>-<job id>-<pid>.out` under its own node's temp dir.
- `test_ray_job_submit`: `ray job submit --working-dir . -- xlt run ...` against the head's job API, as the
  README documents it. It needs `ray[default]` (`pip install -e ".[cluster]"`) and skips without it.
- `test_cluster_yaml_binds_safely` (fast): what configs/cluster.yaml binds where, and its token settings.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_corpus
from tests.test_sweep_ray import WORDS_S, sweep_yaml, tiny_glue

REPO = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))   # the venv's ray: its processes run the venv's python

# Asks the cluster for its nodes (official API), in a subprocess: this test process may hold a Ray of its own.
NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
print(json.dumps([{"id": n["NodeID"], "alive": n["Alive"], "socket": n["RayletSocketName"],
                   "resources": n["Resources"]} for n in ray.nodes()]))
"""


@dataclass
class Cluster:
    root: Path                          # the cluster's own temp folder
    env: dict                           # what every process talking to it runs with (token, PATH, no RAY_ADDRESS)
    address: str                        # the head's GCS, for `ray_address` / `ray start --address`
    token: str
    temp_dirs: dict[str, Path]          # node name -> its --temp-dir
    sessions: list[int] = field(default_factory=list)   # session ids of the `ray start` processes
    dashboard: str | None = None        # http://127.0.0.1:PORT, None without ray[default]
    no_dashboard: str = ""              # why there is none
    node_ids: dict[str, str] = field(default_factory=dict)   # node name -> Ray node id

    def node_of_pid(self, pid: int) -> str:
        """The Ray node id of the node whose raylet started worker `pid`."""
        found = [name for name, d in self.temp_dirs.items() if list(d.glob(f"session_*/logs/worker-*-{pid}.out"))]
        assert len(found) == 1, f"worker pid {pid} found in the logs of {found or 'no node'}"
        return self.node_ids[found[0]]


def _free_ports(n: int) -> list[int]:
    """n ports free on every interface (Ray binds some of its servers to all of them), held at once so they differ."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _imports(env: dict, module: str) -> str:
    """'' if `module` imports under `env`, else the error."""
    p = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True)
    return "" if p.returncode == 0 else (p.stderr.strip().splitlines() or ["import failed"])[-1]


def _ray_start(args: list[str], env: dict, log: Path) -> int:
    """`ray start ARGS` in a new session; returns its pid, the session id of every process it leaves running."""
    with open(log, "w") as out:
        proc = subprocess.Popen([RAY, "start", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            rc = None
    if rc != 0:
        _kill_sessions([proc.pid])
        pytest.fail(f"ray start {' '.join(args)} -> {rc}:\n{log.read_text()[-4000:]}")
    return proc.pid


def _session_pids(sessions: list[int]) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            # field 6 of /proc/PID/stat is the session id; the command name (field 2) may hold spaces
            sid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[3])
            mine = p.stat().st_uid == os.getuid()
        except (OSError, IndexError, ValueError):   # gone meanwhile
            continue
        if sid in sessions and mine:
            pids.append(int(p.name))
    return pids


def _kill_sessions(sessions: list[int], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL, every process of the given sessions (those this test's `ray start`s created)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_pids(sessions):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and _session_pids(sessions):
            time.sleep(0.2)
        if not _session_pids(sessions):
            return


def _http_ok(url: str, token: str) -> bool:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def _nodes(cluster: Cluster) -> list[dict]:
    p = subprocess.run([sys.executable, "-c", NODES, cluster.address], env=cluster.env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="xltc-", dir="/tmp"))   # short: Ray's socket paths have a length limit
    token = secrets.token_hex(32)
    (root / "auth_token").write_text(token)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(root / "auth_token"),
                "RAY_USAGE_STATS_ENABLED": "0",
                # as `. .venv/bin/activate && ray start` does on a cluster: a job's `xlt` is the venv's
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])})
    gcs, dash, client, *node_ports = _free_ports(11)
    c = Cluster(root, env, f"127.0.0.1:{gcs}", token, {"head": root / "head", "worker": root / "worker"})
    # No --node-ip-address: Ray replaces 127.0.0.1 by the machine's address anyway (it never puts a node on
    # loopback), and both nodes get that address. Worker ports 0: the OS picks them, so the two raylets never
    # hand out the same one.
    common = ["--num-cpus=1", "--num-gpus=0", "--object-store-memory=100000000", "--min-worker-port=0",
              "--max-worker-port=0", "--disable-usage-stats"]

    def agent_ports(ports):   # defaults (52365, ...) are fixed: two nodes on one machine would collide
        return [f"--dashboard-agent-listen-port={ports[0]}", f"--dashboard-agent-grpc-port={ports[1]}",
                f"--runtime-env-agent-port={ports[2]}", f"--metrics-export-port={ports[3]}"]

    head = ["--head", f"--port={gcs}", f"--temp-dir={c.temp_dirs['head']}", '--resources={"xlt_head": 1}',
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", *common, *agent_ports(node_ports[:4])]
    c.no_dashboard = _imports(env, "ray.dashboard.optional_deps")   # what ray[default] adds; Ray checks the same
    head.append(f"--include-dashboard={'false' if c.no_dashboard else 'true'}")
    if not _imports(env, "grpc"):   # ray[client] installed: its server would take the fixed port 10001
        head.append(f"--ray-client-server-port={client}")
    try:
        c.sessions.append(_ray_start(head, env, root / "head.log"))
        c.sessions.append(_ray_start(
            [f"--address={c.address}", f"--temp-dir={c.temp_dirs['worker']}", '--resources={"xlt_worker": 1}',
             *common, *agent_ports(node_ports[4:8])], env, root / "worker.log"))
        deadline = time.time() + 60
        while True:
            nodes = [n for n in _nodes(c) if n["alive"]]
            if len(nodes) == 2 or time.time() > deadline:
                break
            time.sleep(1)
        assert len(nodes) == 2, f"not two live nodes after 60 s: {nodes}"
        for name, d in c.temp_dirs.items():
            c.node_ids[name] = next(n["id"] for n in nodes if n["socket"].startswith(str(d) + os.sep))
        assert len(set(c.node_ids.values())) == 2, nodes
        if not c.no_dashboard:
            c.dashboard = f"http://127.0.0.1:{dash}"
            deadline = time.time() + 60
            while not _http_ok(c.dashboard + "/api/version", token):
                assert time.time() < deadline, "the dashboard did not answer in 60 s:\n" + "".join(
                    f.read_text()[-3000:] for f in c.temp_dirs["head"].glob("session_latest/logs/dashboard.*"))
                time.sleep(1)
        yield c
    finally:
        _kill_sessions(c.sessions)
        shutil.rmtree(root, ignore_errors=True)


def _sweep(tmp: Path, source_steps: int = 6) -> Path:
    """The tiny sweep of test_sweep_ray with every node able to finish: 10 nodes ([en][en], [S], [S->en][en]);
    `source_steps` pretraining steps for the source model [S] (pretrain/S), 6 for the others."""
    write_corpus(tmp / "e.txt", 1500, seed=1)
    write_corpus(tmp / "s.txt", 1500, seed=2, words=WORDS_S)
    tiny_glue(tmp / "glue")
    path = sweep_yaml(tmp, target_vocab=120)   # <= the source's 120 rows: frequency mapping succeeds
    cfg = yaml.safe_load(path.read_text())
    cfg["experiments"]["vocab_modes"] = ["frequency"]
    build = cfg["sources"]["S"]["build"]   # a copy: the YAML shares one mapping (an alias) with `pretrain`
    build["pretrain"] = {**build["pretrain"], "max_steps": source_steps, "log_every": source_steps,
                         "eval_every": source_steps, "checkpoint_every": source_steps}
    path.write_text(yaml.safe_dump(cfg))
    return path


def _all_done(cfg: Path):
    from orchestrator.config import load_sweep
    from orchestrator.graph import build_graph
    from orchestrator.runner import read_done

    graph = build_graph(load_sweep(cfg))
    missing = [n for n in graph.nodes if not read_done(graph, n)]
    assert not missing, f"not DONE: {missing}"
    return graph


@pytest.mark.slow
def test_sweep_spreads_over_two_nodes(cluster, tmp_path):
    # Every trial is short but pretrain/S: 2,000 steps, 30 s on an idle core, 60 s on a busy machine. Short trials
    # alone may all run one after another in one warm trial actor: Tune (reuse_actors) hands a waiting trial to the
    # actor that just finished rather than wait for a new actor on the other node, whose start takes 6 s on an idle
    # machine (it imports torch and transformers) and 20 s or more on a busy one. If everything so far ran in one
    # actor, the gate (pretraining before fine-tuning) has handed out pretrain/S before [en][en]'s fine-tune, which
    # then waits all the while pretrain/S runs: for the other node's CPU, longer than an actor takes to start there.
    cfg = _sweep(tmp_path, source_steps=2000)
    t0 = time.time()
    driver = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(cfg),
                               f"ray_address={cluster.address}"], cwd=REPO, env=cluster.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = driver.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)   # the driver only: the cluster's processes are in other sessions
        out, _ = driver.communicate()
        pytest.fail("the sweep did not finish in 540 s:\n" + out[-6000:])
    assert driver.returncode == 0, out[-6000:]
    print(f"sweep on two nodes: {time.time() - t0:.0f} s")

    graph = _all_done(cfg)
    where = {}
    for n in graph.nodes:
        started = json.loads((graph.node_dir(n) / "STARTED").read_text())
        where[n] = cluster.node_of_pid(started["pid"])
    per_node = {node: sorted(n for n, w in where.items() if w == node) for node in cluster.node_ids.values()}
    print(json.dumps(per_node, indent=1))
    assert all(per_node.values()), f"trials ran on one node only: {per_node}\n{out[-4000:]}"
    # Both nodes ran trials and the graph is connected, so some child ran on the other node than one of its
    # parents: it read that parent's output through the shared output folder (here, trivially, one disk).
    crossed = [(p, n) for n in graph.nodes for p in graph.nodes[n].parents if where[p] != where[n]]
    assert crossed
    print("children that read a parent of the other node:", crossed)


@pytest.mark.slow
def test_ray_job_submit(cluster, tmp_path):
    if cluster.dashboard is None:
        pytest.skip(f"the Ray job API needs the dashboard, i.e. ray[default] (pip install -e '.[cluster]'): "
                    f"{cluster.no_dashboard}")
    from ray.job_submission import JobStatus, JobSubmissionClient

    cfg = _sweep(tmp_path)
    job_id = f"xlt-test-{secrets.token_hex(4)}"
    # As the README: the repository is the working dir (Ray uploads it, leaving out .git and what .gitignore
    # names), the entrypoint is the head's `xlt`, and the driver joins the cluster it runs on (ray_address null).
    submit = subprocess.run([RAY, "job", "submit", "--address", cluster.dashboard, "--submission-id", job_id,
                             "--no-wait", "--working-dir", ".", "--", "xlt", "run", str(cfg)],
                            cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=120)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    client = JobSubmissionClient(cluster.dashboard, headers={"Authorization": f"Bearer {cluster.token}"})
    deadline = time.time() + 480
    while not (status := client.get_job_status(job_id)).is_terminal():
        if time.time() > deadline:
            client.stop_job(job_id)
            pytest.fail("the job did not finish in 480 s:\n" + client.get_job_logs(job_id)[-6000:])
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, f"{status}:\n{logs[-6000:]}"
    assert "[sweep] e2e: 10 nodes, 0 already done, 10 to run" in logs
    graph = _all_done(cfg)
    assert (Path(graph.sweep.output_dir) / "report" / "report.md").is_file()


def test_cluster_yaml_binds_safely():
    """configs/cluster.yaml: the job API on the head's loopback, MLflow on the head's cluster address (workers log
    to it), token authentication on every node, and nothing bound to every interface by a flag of ours."""
    cfg = yaml.safe_load((REPO / "configs" / "cluster.yaml").read_text())
    head_ip = cfg["provider"]["head_ip"]
    head, workers = cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]
    assert not [c for c in head + workers if "0.0.0.0" in c]
    ray_head = next(c for c in head if "ray start --head" in c)
    assert "--dashboard-host=127.0.0.1" in ray_head and "RAY_AUTH_MODE=token" in ray_head
    assert "RAY_AUTH_MODE=token" in next(c for c in workers if "ray start --address" in c)
    assert f"mlflow server --host {head_ip} " in next(c for c in head if "mlflow server" in c)
    assert cfg["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
