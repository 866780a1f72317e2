"""MLflow bookkeeping without Ray: a node's run is found again by its tags, and its status follows the node."""
from __future__ import annotations

from orchestrator.config import DEFAULT_CONFIG, load_sweep
from orchestrator.graph import build_graph
from orchestrator.tracking import Tracker

CORE = ["probe=null", "wic=null", "forgetting=null", "winogender=null"]


def test_node_run_is_scheduled_until_started_and_closed_if_it_never_ends(tmp_path):
    from mlflow.tracking import MlflowClient

    g = build_graph(load_sweep(DEFAULT_CONFIG, CORE, base_dir=tmp_path))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(uri, "xlt-test", str(tmp_path / "artifacts"))
    sweep_run = tracker.sweep_run("test", {"seed": 0})
    client = MlflowClient(uri)

    def status(run_id):
        return client.get_run(run_id).info.status

    a = tracker.node_run(g.nodes["pretrain/S"], sweep_run)
    b = tracker.node_run(g.nodes["pretrain/en-scratch"], sweep_run)
    assert status(a) == status(b) == "SCHEDULED"        # suggested, waiting for resources
    assert tracker.node_run(g.nodes["pretrain/S"], sweep_run) == a   # found again by its tags, not duplicated
    params = client.get_run(a).data.params
    assert (params["lang"], params["vocab"], params["model_name"], params["transfer.mode"]) == ("S", "S", "S", "build")
    tracker.start(a)
    assert status(a) == "RUNNING"
    tracker.finish(b, ok=False, error="boom")
    assert status(b) == "FAILED" and tracker.node_run(g.nodes["pretrain/en-scratch"], sweep_run) == b
    assert status(b) == "SCHEDULED"                      # suggested again for a retry
    # the driver dies: the started trial and the one that never started are both closed, the sweep run is not
    assert tracker.close_orphans() == 2
    assert status(a) == status(b) == "KILLED" and status(sweep_run) == "RUNNING"
