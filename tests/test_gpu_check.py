"""benchmarks/gpu_check.py: the MFU formula against a hand computation, the GPU-name peaks, the memory cap that
a fractional GPU share sets in orchestrator/runner.py (with CUDA faked), one failing section not stopping the
others, and the CPU dry run, which must report every row with sane values."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GIB = 2 ** 30


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_mfu_formula_matches_a_hand_computation_for_bert_base():
    from transformers import BertConfig, BertForMaskedLM

    gc = _load()
    with torch.device("meta"):   # the shapes only: no memory, no time
        model = BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                           num_attention_heads=12, intermediate_size=3072))
    # one layer by hand: Q, K, V and the attention output (4 x (768^2 + 768)), FFN in (768 x 3072 + 3072) and
    # out (3072 x 768 + 768), two LayerNorms (2 x 2 x 768)
    per_layer = 4 * (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768) + 4 * 768
    assert per_layer == 7_087_872 == 12 * 768 ** 2 + 13 * 768
    n = gc.layer_params(model)
    assert n == 12 * per_layer == 85_054_464
    fpt = gc.flops_per_token(n, layers=12, hidden=768, seq=128)
    assert fpt == 6 * 85_054_464 + 12 * 12 * 768 * 128 == 524_482_560
    assert gc.flops_per_token(n, 12, 768, 512) == 6 * 85_054_464 + 12 * 12 * 768 * 512
    # 100K tokens/s on an H200: 5.2448e13 FLOP/s of 9.89e14
    assert gc.mfu(100_000, fpt, 989.0) == pytest.approx(100_000 * 524_482_560 / 989e12)
    assert gc.mfu(100_000, fpt, 989.0) == pytest.approx(0.053031, abs=1e-6)


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H200 NVL", 835.0), ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A100-PCIE-40GB", 312.0),
    ("Tesla V100-SXM2-32GB", 125.0), ("NVIDIA L4", 121.0), ("NVIDIA L40S", 362.0), ("NVIDIA A10", 125.0),
    ("Tesla T4", 65.0), ("NVIDIA GeForce RTX 3090", None),
])
def test_peak_is_detected_from_the_device_name(name, peak):
    found = _load().gpu_peak(name)
    assert (found[0] if found else None) == peak


class FakeCuda:
    """torch.cuda as a machine with one 80 GiB GPU would answer it."""

    def __init__(self, monkeypatch, available=True):
        self.calls = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                            lambda fraction, device=None: self.calls.append((fraction, device)))
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: SimpleNamespace(total_memory=80 * GIB))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * GIB)


def _node(gpu: float):
    from orchestrator.graph import Node

    return Node(id="finetune/m/sst2/seed1", kind="finetune", parents=(), params={"config": {}},
                resources={"cpu": 1.0, "gpu": gpu}, hash="h")


def test_a_fractional_gpu_share_caps_the_trials_cuda_memory_before_its_stage_runs(monkeypatch, tmp_path):
    from orchestrator import runner

    cuda = FakeCuda(monkeypatch)
    seen_by_stage = []
    fake = dataclasses.replace(runner.KINDS["finetune"], run=lambda t: seen_by_stage.append(list(cuda.calls)) or {})
    monkeypatch.setitem(runner.KINDS, "finetune", fake)
    lines = []
    summary = runner.run_node(_node(0.25), tmp_path, log=lines.append)
    assert cuda.calls == [(0.25, 0)] and seen_by_stage == [[(0.25, 0)]]   # set before the stage built anything
    assert summary["gpu_memory"] == {"fraction": 0.25, "device": "Fake GPU", "cap_bytes": 20 * GIB,
                                     "max_memory_allocated": 3 * GIB}
    done = json.loads((tmp_path / "finetune/m/sst2/seed1" / "DONE").read_text())
    assert done["gpu_memory"]["fraction"] == 0.25
    assert any("GPU share 0.25" in line and "capped at 20.0 of 80.0 GiB" in line for line in lines)

    # a whole GPU: no cap, and a cap a fractional trial left in this (reused) worker is lifted; no GPU or no
    # CUDA: nothing is touched
    for gpu, calls in ((1.0, [(1.0, 0)]), (0.0, [])):
        cuda.calls.clear()
        assert "gpu_memory" not in runner.run_node(_node(gpu), tmp_path / f"g{gpu}", log=lines.append)
        assert cuda.calls == calls
    FakeCuda(monkeypatch, available=False)
    assert runner._cap_gpu_memory(_node(0.25), print) is None


def test_a_failing_section_is_a_failed_row_and_the_exit_code(monkeypatch, tmp_path):
    gc = _load()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")   # main sets it for the dry run; restored after the test

    def broken(ctx):
        raise ValueError("planted failure")

    monkeypatch.setitem(gc.RUNNERS, "wic", broken)
    monkeypatch.setitem(gc.RUNNERS, "probe", lambda ctx: {"details": "fine", "device": "cpu"})
    out = tmp_path / "r.json"
    assert gc.main(["--cpu-dry-run", "--sections", "wic,probe", "--out", str(out)]) == 1
    rows = {r["check"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == list(gc.SECTIONS)
    assert rows["wic"]["status"] == "FAILED" and rows["wic"]["error"] == "ValueError: planted failure"
    assert rows["probe"]["status"] == "ok"                      # ran after the failure
    assert {rows[k]["status"] for k in gc.SECTIONS if k not in ("wic", "probe")} == {"SKIPPED"}
    md = out.with_suffix(".md").read_text()
    assert "| wic | FAILED |" in md and "planted failure" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine the full check would run")
def test_without_cuda_only_the_dry_run_runs(tmp_path):
    assert _load().main(["--out", str(tmp_path / "r.json")]) == 2
    assert not (tmp_path / "r.json").exists()


def _dry_run(tmp_path, *extra) -> tuple[dict, str]:
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-dry-run", "--out",
                           str(out), *extra], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(out.read_text()), out.with_suffix(".md").read_text()


def _check_local_rows(gc, rows: dict) -> None:
    for name in ("pretrain-bf16", "pretrain-fp16"):
        r = rows[name]
        assert r["status"] == "ok" and r["device"] == "cpu" and r["precision"] == "fp32"
        assert r["tokens_per_s"] > 0 and r["timed_steps"] == 6 and r["warmup_steps"] == 2
        assert r["mfu_text"] == "n/a (cpu)" and r["peak_memory"] == "n/a (cpu)"
        assert r["padding_fraction"] == 0.0
        # the dry-run model: 2 layers, hidden 64 (FFN 256 = 4H), blocks of 64
        assert r["layer_params"] == 2 * (12 * 64 ** 2 + 13 * 64)
        assert r["flops_per_token"] == 6 * r["layer_params"] + 12 * 2 * 64 * 64
    for name in ("features", "probe", "wic", "winogender"):
        assert rows[name]["status"] == "ok" and rows[name]["device"] == "cpu" and rows[name]["seconds"] > 0, rows[name]
    assert 0 <= rows["probe"]["uuas"] <= 1 and "the features section" in rows["probe"]["details"]
    assert 0 <= rows["wic"]["accuracy"] <= 1 and 0 <= rows["winogender"]["accuracy"] <= 1


def test_cpu_dry_run_without_the_sweep(tmp_path):
    gc = _load()
    report, md = _dry_run(tmp_path, "--sections", ",".join(s for s in gc.SECTIONS if s != "finetune-sweep"))
    rows = {r["check"]: r for r in report["rows"]}
    assert list(rows) == list(gc.SECTIONS) and report["failed"] == 0
    assert rows["finetune-sweep"]["status"] == "SKIPPED"
    _check_local_rows(gc, rows)
    assert "6*N + 12*L*H*S" in report["mfu_formula"] and "N = 99,968" in report["mfu_formula"]
    for name in gc.SECTIONS:
        assert f"| {name} |" in md


def test_cpu_dry_run_with_the_sweep(tmp_path):
    """The whole dry run, the four fine-tunes through `xlt run` and a Ray of its own included (about a minute on
    2 contended cores, so not marked slow)."""
    gc = _load()
    report, md = _dry_run(tmp_path)
    rows = {r["check"]: r for r in report["rows"]}
    assert list(rows) == list(gc.SECTIONS) and report["failed"] == 0
    _check_local_rows(gc, rows)
    sweep = rows["finetune-sweep"]
    assert sweep["status"] == "ok" and sweep["exit_code"] == 0
    trials = sweep["trials"]
    assert len(trials) == 4 and all(t["done"] and t["error"] is None for t in trials)
    assert len({t["pid"] for t in trials}) == 4                 # four processes
    assert sweep["overlap_seconds"] > 0                         # all four were running at one moment
    assert max(t["started_at"] for t in trials) < min(t["finished_at"] for t in trials)
    assert all(t["gpu_memory"] is None for t in trials)         # CPU: no cap
    assert sweep["peak_memory"] == "n/a (cpu)" and sweep["tokens_per_s"] > 0
    assert report["total_seconds"] < 120
