"""What a user of `xlt` sees, without starting Ray: the progress view's lines and summary (counts, ETA),
`xlt status` / `xlt report` finding the sweep of the last `xlt run`, the git state the parent run records,
`xlt serve`'s command line and its refusal of a public host, and the subcommands' --help."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.cli import _parser, git_state, last_run, main, record_last_run, serve_plan
from orchestrator.config import DEFAULT_CONFIG, load_sweep
from orchestrator.gating import Gate
from orchestrator.graph import build_graph
from orchestrator.progress import KindProgress, ProgressView, duration, eta, key_metric, slots, summary_line

CORE = ["probe=null", "wic=null", "forgetting=null", "winogender=null", "learning_curve=null",
        "experiments.scratch_budget=same"]


# --- the summary line and its ETA (pure) --------------------------------------------------------------

def _hand_example() -> dict[str, KindProgress]:
    return {
        # mean 90 s; 2 pending -> 180 s, the running one has run 30 s of its 90 -> 60 s more
        "pretrain": KindProgress(total=5, done=2, running=1, seconds=[100.0, 80.0], running_for=[30.0]),
        # mean 10 s; 24 pending -> 240 s, the running one is past the mean -> 0 s more (never negative)
        "finetune": KindProgress(total=30, done=4, running=1, failed=1, seconds=[10.0, 12.0, 8.0, 10.0],
                                 running_for=[15.0]),
        "probe": KindProgress(total=15),   # none finished: no mean, left out of the estimate
    }


def test_eta_by_hand():
    left, unknown = eta(_hand_example(), slots=2)
    assert left == pytest.approx((180 + 60 + 240 + 0) / 2) and unknown == ["probe"]
    assert eta({"pretrain": KindProgress(total=2, running=1, running_for=[5.0])}, 2) == (None, ["pretrain"])
    assert eta({"pretrain": KindProgress(total=2, done=2, seconds=[1.0, 2.0])}, 2) == (0.0, [])


def test_summary_line_by_hand():
    line = summary_line(185.0, _hand_example(), slots=2)
    assert line == ("[progress 3m05s] 6/50 done, 2 running, 41 pending, 1 failed; ETA at least 4m00s "
                    "(no probe node finished yet) | pretrain 2 done, 1 running, 2 pending "
                    "| finetune 4 done, 1 running, 24 pending, 1 failed | probe 0 done, 15 pending")
    finished = {"pretrain": KindProgress(total=2, done=1, failed=1, seconds=[3.0])}
    assert summary_line(3725.0, finished, 2) == ("[progress 1h02m] 1/2 done, 0 running, 0 pending, 1 failed; "
                                                 "finished | pretrain 1 done, 1 failed")
    waiting = {"tokenizer": KindProgress(total=2, running=2, running_for=[1.0, 1.0])}
    assert "; ETA after the first node finishes |" in summary_line(2.0, waiting, 2)
    assert "9223372036854775807" not in line


def test_duration_and_slots():
    assert [duration(s) for s in (0.4, 59.6, 60, 3599, 3600, 7384)] == ["0s", "1m00s", "1m00s", "59m59s",
                                                                         "1h00m", "2h03m"]
    cpu_only = [{"cpu": 1, "gpu": 0}] * 4
    assert slots({"CPU": 2.0}, cpu_only, max_concurrent=8) == 2
    assert slots({"CPU": 64.0, "GPU": 8.0}, [{"cpu": 4, "gpu": 1}, {"cpu": 2, "gpu": 0.25}], 100) == 12
    assert slots({"CPU": 64.0}, cpu_only, max_concurrent=3) == 3
    assert slots({"CPU": 1.0}, [{"cpu": 4, "gpu": 0}], 8) == 1      # never 0: Ray still runs it, one at a time


def test_key_metric_per_kind():
    assert key_metric("finetune", {"task": "cola", "metrics": {"accuracy": 0.7, "mcc": 0.41}}) == ("mcc", 0.41)
    mnli = {"task": "mnli", "metrics": {"m_accuracy": 0.61, "mm_accuracy": 0.62}}
    assert key_metric("finetune", mnli) == ("accuracy", 0.61)
    assert key_metric("pretrain", {"result": {"eval_loss": 2.33, "steps": 10}}) == ("eval_loss", 2.33)
    assert key_metric("probe", {"metrics": {"uuas": 0.43, "dspr": 0.5}}) == ("uuas", 0.43)
    assert key_metric("winogender", {"metrics": {"accuracy": 0.5, "gender_parity": 1.0}}) == ("accuracy", 0.5)
    assert key_metric("tokenize", {"meta": {"tokens": 12345}}) == ("tokens", 12345.0)
    assert key_metric("pretrain", {"result": {}}) is None


# --- the progress view, fed Tune's callback events by hand --------------------------------------------

def test_progress_view_lines(tmp_path):
    graph = build_graph(load_sweep(DEFAULT_CONFIG, CORE, base_dir=tmp_path))
    gate = Gate(graph, set())
    lines: list[str] = []
    view = ProgressView(graph, gate, {"CPU": 2.0}, has_gpu=False, log=lines.append)
    assert view.slots == 2

    def trial(node_id, **result):
        return SimpleNamespace(config={"node_id": node_id}, last_result=result)

    first, second = gate.next_ready(), gate.next_ready()
    assert (first, second) == ("tokenizer/S-1000-cased", "tokenizer/en-1000-cased")
    view.on_trial_start(0, [], trial(first))
    view.on_trial_start(0, [], trial(second))
    assert lines == ["[start]  tokenizer  tokenizer/S-1000-cased", "[start]  tokenizer  tokenizer/en-1000-cased"]

    gate.complete(first, True)
    view.on_trial_complete(0, [], trial(first, seconds=3.42, **{"key/vocab_size": 1000.0}))
    assert lines[-1] == "[done]   tokenizer  tokenizer/S-1000-cased  3.4 s  vocab_size 1,000"

    # the English tokenizer fails: its error comes from its FAILED marker, its descendants count as failed
    folder = graph.node_dir(second)
    folder.mkdir(parents=True)
    (folder / "FAILED").write_text(json.dumps({"hash": "x", "error": "StageError: boom\nmore", "traceback": ""}))
    blocked = gate.complete(second, False, "trial failed")
    view.on_trial_error(0, [], trial(second))
    assert lines[-1].startswith("[failed] tokenizer  tokenizer/en-1000-cased  ") and lines[-1].endswith(
        "StageError: boom")

    counts = view.counts()
    assert list(counts) == sorted(counts, key=lambda k: ["tokenizer", "tokenize", "vectors", "pretrain", "features",
                                                         "finetune", "curve"].index(k))   # KINDS order
    assert (counts["tokenizer"].done, counts["tokenizer"].failed, counts["tokenizer"].pending) == (1, 1, 0)
    assert sum(k.failed for k in counts.values()) == 1 + len(blocked)
    view.on_experiment_end([])
    assert lines[-1].startswith(f"[progress 0s] 1/{len(graph.nodes)} done, 0 running, "
                                f"{len(graph.nodes) - 2 - len(blocked)} pending, {1 + len(blocked)} failed; ETA ")


# --- `xlt status` / `xlt report` read the sweep of the last `xlt run` -------------------------------------

def _finetune_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("finetune "))


def test_status_and_report_use_the_overrides_of_the_last_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    cfg = str(DEFAULT_CONFIG)
    ran = ["output_dir=runs/last", "finetune.seeds=[7]", *CORE]
    # as cmd_run records it: config, overrides, the output folder it resolved, and where it ran
    record_last_run(cfg, ran, str(tmp_path / "runs" / "last"))
    assert last_run(cfg)["overrides"] == ran and last_run(cfg)["cwd"] == str(tmp_path)
    assert json.loads((tmp_path / "cache" / "xlt" / "last_run.json").read_text())[cfg]["overrides"] == ran

    monkeypatch.chdir("/")      # relative paths resolve where that run ran, not here
    assert main(["status", cfg]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (f"reading {tmp_path}/runs/last (overrides of the last `xlt run`: "
                                   f"{' '.join(ran)}); pass overrides to read another sweep")
    assert "pending   27" in _finetune_line(out)         # 9 models x 3 tasks x the one seed of that run

    assert main(["status", cfg, f"output_dir={tmp_path}/other", *CORE]) == 0   # explicit overrides win
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"reading {tmp_path}/other (overrides: output_dir={tmp_path}/other {' '.join(CORE)})"
    assert "pending   81" in _finetune_line(out)         # the demo's 3 seeds

    monkeypatch.chdir(tmp_path)
    assert main(["status", cfg, "--no-last-run"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(f"reading {tmp_path}/runs/demo (the config as written")

    assert main(["report", cfg]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"reading {tmp_path}/runs/last (overrides of the last `xlt run`: ")
    assert f"(written to {tmp_path}/runs/last/report)" in out


def test_status_without_a_recorded_run_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["status", str(DEFAULT_CONFIG)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (f"reading {tmp_path}/runs/demo (no overrides; no `xlt run` "
                                                       "of this config recorded)")


# --- the git state the parent run records ----------------------------------------------------------------

def test_git_state(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = None
    state = git_state()
    if head:
        assert state["commit"] == head and state["dirty"] in ("true", "false")
    assert git_state(tmp_path) == {"commit": "unknown", "dirty": "unknown"}      # not a repository
    monkeypatch.setenv("PATH", str(tmp_path))                                     # no git at all
    assert git_state() == {"commit": "unknown", "dirty": "unknown"}


# --- xlt serve ---------------------------------------------------------------------------------------------

def test_serve_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = _parser().parse_args(["serve", "--port", "5123"])
    argv, lines = serve_plan(args)
    assert argv[1:] == ["-m", "mlflow", "server", "--host", "127.0.0.1", "--port", "5123", "--backend-store-uri",
                        f"sqlite:///{tmp_path}/mlruns/mlflow.db", "--artifacts-destination",
                        f"{tmp_path}/mlruns/artifacts"]
    text = "\n".join(lines)
    assert "tracking_uri=http://127.0.0.1:5123" in text and "ssh -N -L 5123:127.0.0.1:5123 " in text
    assert (tmp_path / "mlruns" / "artifacts").is_dir()

    # a sweep tracking to http://...:PORT sets the port; one tracking to SQLite sets the store served
    args = _parser().parse_args(["serve", str(DEFAULT_CONFIG), "tracking_uri=http://127.0.0.1:5077"])
    assert serve_plan(args)[0][7] == "5077"
    args = _parser().parse_args(["serve", str(DEFAULT_CONFIG), f"tracking_uri=sqlite:///{tmp_path}/x/m.db"])
    argv = serve_plan(args)[0]
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path}/x/m.db"
    assert argv[argv.index("--artifacts-destination") + 1] == f"{tmp_path}/x/artifacts"

    assert main(["serve", "--host", "0.0.0.0"]) == 2        # refused before anything starts
    err = capsys.readouterr().err
    assert "no authentication" in err and "--public" in err and "ssh -N -L 5000:127.0.0.1:5000" in err
    argv, lines = serve_plan(_parser().parse_args(["serve", "--host", "0.0.0.0", "--public"]))
    assert argv[argv.index("--host") + 1] == "0.0.0.0" and "WARNING" in lines[1]


# --- --help -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command, words", [
    ("run", ["SWEEP.yaml", "overrides", "key=value", "pretrain.max_steps=100", "--verbose"]),
    ("status", ["SWEEP.yaml", "overrides", "--nodes", "--no-last-run", "last `xlt run`"]),
    ("report", ["SWEEP.yaml", "overrides", "last `xlt run`"]),
    ("plan", ["SWEEP.yaml", "overrides"]),
    ("serve", ["--host", "--port", "--backend-store-uri", "--artifacts-destination", "--public", "ssh -N -L"]),
])
def test_help(command, words, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert not [w for w in words if w not in out], out


def test_tune_console_is_quiet_unless_verbose(monkeypatch):
    from orchestrator.progress import tune_console

    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    with tune_console(verbose=False) as level:   # Tune's legacy reporter at 0 prints nothing, not even a header
        assert level == 0 and os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
    assert "RAY_AIR_NEW_OUTPUT" not in os.environ
    with tune_console(verbose=True) as level:    # --verbose: Tune's own trial table
        assert level == 1 and "RAY_AIR_NEW_OUTPUT" not in os.environ
