"""MLflow bookkeeping (the only module that imports mlflow).

One experiment per sweep, one parent run per sweep, one child run per node. Runs are found by tags
(`xlt.sweep`, `xlt.node_id`), never by remembering ids, so retries, reruns and a restarted driver reuse
the run they had instead of adding duplicates. Runs are created in the driver (SQLite must not see
concurrent schema work) and trials only log to the run id they are given.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

NODE_TAG, SWEEP_TAG, KIND_TAG, HASH_TAG = "xlt.node_id", "xlt.sweep", "xlt.kind", "xlt.node_hash"
PARENT_TAG = "mlflow.parentRunId"
GIT_COMMIT_TAG = "mlflow.source.git.commit"   # MLflow's own: the UI shows it as the run's source version
MAX_PARAM_LEN = 6000
# MLflow 3's UI opens an experiment without this tag on its GenAI traces page; "custom_model_development"
# (the UI's "machine learning" kind) opens it on the runs table. The UI may itself store a guess, marked
# "_inferred", which we replace; a kind chosen by hand in the UI is left alone.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
PROBE_TIMEOUT_S = 3.0


class TrackingServerDown(RuntimeError):
    """The tracking URI names an HTTP server that does not answer."""


def check_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise TrackingServerDown unless the http(s) tracking server at `uri` answers within `timeout` seconds.

    MlflowClient retries a refused connection with backoff for minutes before it fails, so without this a
    sweep pointed at a stopped server would hang before its first trial. Any HTTP answer counts as up (a
    proxy may answer /health with 401 or 404); only no answer at all is an error. sqlite:/// needs nothing."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingServerDown(f"MLflow tracking server {uri} does not answer ({reason})") from None


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:MAX_PARAM_LEN]
    return out


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None = None):
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            # An absolute artifact root: trials run in other directories than the driver.
            loc = Path(artifact_location).resolve().as_uri() if artifact_location and "://" not in artifact_location \
                else artifact_location
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=loc,
                                                               tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        else:
            self.experiment_id = exp.experiment_id
            kind = exp.tags.get(EXPERIMENT_KIND_TAG)
            if kind is None or kind.endswith("_inferred") or kind == "no_inferred_type":
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)

    @classmethod
    def for_worker(cls, tracking_uri: str, experiment_id: str) -> "Tracker":
        self = cls.__new__(cls)
        self.uri, self.client, self.experiment_id = tracking_uri, MlflowClient(tracking_uri), experiment_id
        return self

    def _find(self, tags: dict[str, str]):
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=2,
                                       order_by=["attributes.start_time ASC"])
        return runs[0] if runs else None

    def sweep_run(self, sweep_name: str, params: dict, config_file: str | None = None,
                  tags: dict[str, str] | None = None, invocation: dict | None = None) -> str:
        """The sweep's parent run. Every `xlt run` of the sweep reuses it, so what differs between runs (the
        overrides, the git commit) goes into tags, which are overwritten, not params, which are immutable;
        `invocation` (config, overrides, commit) is also kept as the artifact `overrides.json`."""
        run = self._find({SWEEP_TAG: sweep_name})
        if run is None:
            run = self.client.create_run(self.experiment_id, run_name=sweep_name,
                                         tags={SWEEP_TAG: sweep_name, KIND_TAG: "sweep"})
        run_id = run.info.run_id
        self._log_params(run_id, params)
        if tags:
            self.set_tags(run_id, tags)
        if config_file:
            self.client.log_artifact(run_id, config_file)
        if invocation is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "overrides.json"
                path.write_text(json.dumps(invocation, indent=2) + "\n")
                self.client.log_artifact(run_id, str(path))
        return run_id

    def node_run(self, node, sweep_run_id: str) -> str:
        """The node's run for its current settings, created on first use (MLflow params are immutable, so
        a node re-run with other settings gets a new run; the old one stays as history)."""
        run = self._find({NODE_TAG: node.id, HASH_TAG: node.hash})
        if run is not None:
            if run.info.status != "RUNNING":   # a retry waits again (its run said FAILED or KILLED until now)
                self.client.update_run(run.info.run_id, status="SCHEDULED")
            return run.info.run_id
        tags = {NODE_TAG: node.id, HASH_TAG: node.hash, KIND_TAG: node.kind, PARENT_TAG: sweep_run_id,
                "xlt.parents": ",".join(node.parents) or "-"}
        if node.model:
            tags["xlt.model"] = node.model
        if node.row:
            tags["xlt.lang"], tags["xlt.vocab"] = node.row
        run = self.client.create_run(self.experiment_id, run_name=node.id, tags=tags)
        # created when the trial is suggested, which may wait for resources: RUNNING only once it starts
        self.client.update_run(run.info.run_id, status="SCHEDULED")
        # lang / vocab / model_name as params too, so the UI's compare view and search_runs("params.vocab = ...")
        # can group by them next to the hyperparameters
        row = {"lang": node.row[0], "vocab": node.row[1]} if node.row else {}
        named = {"model_name": node.model} if node.model else {}
        self._log_params(run.info.run_id, {k: v for k, v in node.params.items() if k != "corpus"}
                         | row | named | {"resources": node.resources})
        return run.info.run_id

    def _log_params(self, run_id: str, params: dict) -> None:
        existing = self.client.get_run(run_id).data.params
        new = [Param(k, v) for k, v in _flatten(params).items() if k not in existing]
        for i in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[i:i + 100])

    def start(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")
        self.client.set_tag(run_id, "xlt.host", os.uname().nodename)

    def log_metrics(self, run_id: str, step: int, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()
                                               if v == v])  # NaN (e.g. no held-out set) is not logged

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(run_id, str(p), artifact_path)
        elif p.exists():
            self.client.log_artifact(run_id, str(p), artifact_path)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def finish(self, run_id: str, ok: bool, error: str | None = None, killed: bool = False) -> None:
        """FINISHED, FAILED, or KILLED for work stopped from outside (Ctrl-C): it did not fail, it was cut short."""
        if error:
            self.set_tags(run_id, {"xlt.error": error})
        self.client.set_terminated(run_id, status="KILLED" if killed else "FINISHED" if ok else "FAILED")

    def runs(self) -> list:
        return self.client.search_runs([self.experiment_id], max_results=10000)

    def close_orphans(self) -> int:
        """Runs still RUNNING (or SCHEDULED: suggested, never started) when the driver ends belong to trials
        that died with it or never ran: mark them KILLED."""
        n = 0
        for status in ("RUNNING", "SCHEDULED"):
            for run in self.client.search_runs([self.experiment_id], filter_string=f"attributes.status = '{status}'",
                                               max_results=10000):
                if run.data.tags.get(KIND_TAG) != "sweep":
                    self.client.set_terminated(run.info.run_id, status="KILLED")
                    n += 1
        return n
