"""`xlt plan --estimate`: the FLOPs formula, node seconds, device-hours, critical path and the list-scheduling
simulation, each against a computation done by hand (the literals below), never against the code's own output."""
from __future__ import annotations

import dataclasses
import json

import pytest

from orchestrator.cli import main
from orchestrator.config import DEFAULT_CONFIG, load_sweep
from orchestrator.estimate import (BERT_BASE, Job, Shape, Work, _first_seed_only, assumed_rates, critical_path,
                                   estimate, flops_per_token, read_throughput, simulate, tokens_per_s)
from orchestrator.graph import build_graph

TINY = Shape(layers=2, hidden=64, intermediate=256)      # the demo's RoFormer
# The demo without its evaluation suite, one vocabulary mode (no keep node: it would tokenize in its trial).
CORE = ["probe=null", "wic=null", "forgetting=null", "winogender=null", "learning_curve=null",
        "experiments.scratch_budget=same",
        "experiments.vocab_modes=[frequency]"]


# --- FLOPs and throughput -------------------------------------------------------------------------------

def test_layer_params_and_flops_per_token_by_hand():
    # per layer: attention 4*768^2 + 4*768, FFN 2*768*3072 + 3072 + 768, two LayerNorms 4*768
    per_layer = 2_359_296 + 3_072 + 4_718_592 + 3_072 + 768 + 3_072
    assert per_layer == 7_087_872
    assert BERT_BASE.layer_params == 12 * 7_087_872 == 85_054_464
    # 6N + 12*L*H*S = 510,326,784 + 14,155,776
    assert flops_per_token(BERT_BASE, 128) == 524_482_560
    assert flops_per_token(BERT_BASE, 128, training=False) == pytest.approx(524_482_560 / 3)
    # tiny: per layer 4*4096 + 256 + 2*64*256 + 256 + 64 + 256 = 49,984; 6N + 12*2*64*64 = 599,808 + 98,304
    assert TINY.layer_params == 99_968
    assert flops_per_token(TINY, 64) == 698_112


def test_layer_params_match_a_real_bert():
    """N counts what transformers' BertModel holds in its encoder (an independent count)."""
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                                 vocab_size=100))
    assert sum(p.numel() for p in model.encoder.parameters()) == TINY.layer_params


def test_mfu_to_tokens_per_s_by_hand():
    # 40% of 989 TFLOP/s = 395.6e12 FLOP/s, / 524,482,560 FLOPs per token: 524,482,560 x 754,267 =
    # 395,599,887,083,520, and the remaining 112,916,480 is 0.215 of a token: 754,267.215 tokens/s
    assert tokens_per_s(0.40, 989.0, 524_482_560) == pytest.approx(754_267.215, abs=0.001)
    r = assumed_rates()
    assert r.pretrain_flops == pytest.approx(395.6e12)
    # fine-tuning: 200,000 tokens/s x (510,326,784 + 12*12*768*64 = 517,404,672) FLOPs/token
    assert r.finetune_flops == pytest.approx(200_000 * 517_404_672)
    assert any("754,267 tokens/s" in n for n in r.notes)   # the derivation is printed, not hard-coded


# --- node seconds and device-hours ------------------------------------------------------------------------

def _fake_check(tmp_path, **rows) -> str:
    """A gpu_check.json with the given rows (status ok unless given)."""
    report = {"cpu_dry_run": False, "device": "NVIDIA H200", "peak_tflops": 989.0,
              "sizes": {"layers": 12, "hidden": 768, "ffn": 3072, "seq": 128, "gpu_share": 0.25, "ft_max_length": 64,
                        "probe_epochs": 5},
              "rows": [{"check": name, "status": "ok", "seconds": 1.0, **values} for name, values in rows.items()]}
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps(report))
    return str(path)


def test_pretraining_device_hours_of_the_demo_graph(tmp_path):
    """Pretraining on one GPU each, at a measured rate: seconds = tokens / (tokens/s), summed by hand."""
    g = build_graph(load_sweep(DEFAULT_CONFIG, CORE + ["resources.pretrain.gpu=1"], base_dir=tmp_path))
    # measured as if on the tiny model itself: 36,864 tokens/s at 698,112 FLOPs/token
    check = _fake_check(tmp_path, **{"pretrain-bf16": {"tokens_per_s": 36_864.0, "flops_per_token": 698_112.0}})
    rates = dataclasses.replace(read_throughput(check), gpu_overhead_s=0.0)
    est = estimate(g, rates, gpus=8, cpus=8)
    seconds = {j.id: j.seconds for j in est.jobs if j.kind == "pretrain"}
    # pretrain/S: 2,000 steps x 32 x 64 = 4,096,000 tokens -> 111.11 s; the other two: 800 steps -> 44.44 s
    assert seconds == pytest.approx({"pretrain/S": 4_096_000 / 36_864, "pretrain/S-to-en-frequency": 1_638_400 / 36_864,
                                     "pretrain/en-scratch": 1_638_400 / 36_864})
    # every other node has GPU share 0: the GPU-hours are the pretraining ones
    assert est.gpu_hours == pytest.approx((4_096_000 + 2 * 1_638_400) / 36_864 / 3600)


def test_glue_fine_tune_seconds_by_hand(tmp_path):
    """MNLI from the hub: official size, assumed mean length and padding, dev scored every epoch."""
    over = CORE + ["finetune.tasks=[mnli]", "finetune.data_dir=null", "finetune.seeds=[1]", "finetune.epochs=3",
                   "finetune.max_length=128", "resources.finetune.gpu=0.25"]
    g = build_graph(load_sweep(DEFAULT_CONFIG, over, base_dir=tmp_path))
    job = next(j for j in Work(g, assumed_rates()).jobs() if j.id == "finetune/S/mnli/seed1")
    # tiny model at S = 40: training 599,808 + 12*2*64*40 = 661,248 FLOPs/token, forward a third: 220,416
    # 3 epochs x 44 token slots (40 + 10% padding) x (392,702 train x 661,248 + 19,647 dev x 220,416)
    flops = 3 * 44 * (392_702 * 661_248 + 19_647 * 220_416)
    # at a quarter of 200,000 x 517,404,672 FLOP/s, plus 20 s per trial
    assert job.seconds == pytest.approx(flops / (0.25 * 200_000 * 517_404_672) + 20)
    assert job.gpu == 0.25


def test_throughput_file_overrides_the_assumptions(tmp_path):
    check = _fake_check(tmp_path, **{
        "pretrain-bf16": {"tokens_per_s": 500_000.0, "flops_per_token": 524_482_560.0, "mfu": 0.265},
        "finetune-sweep": {"tokens_per_s": 400_000.0, "trials": [{"done": True}] * 4},
        "features": {"words": {"train": 1000, "dev": 300, "test": 300}, "seconds": 2.0},
        "probe": {"seconds": 10.0}})
    r = read_throughput(check)
    assert r.pretrain_flops == pytest.approx(500_000 * 524_482_560)
    # four trials at 0.25 hold one GPU: 400,000 tokens/s per GPU, at 6N + 12*12*768*64 = 517,404,672
    assert r.finetune_flops == pytest.approx(400_000 * 517_404_672)
    assert r.padding == 0.0                  # a measured rate already pays for its padding
    # 1,600 words x 1.3 tokens in 2 s, forward (6N + 12*12*768*32) / 3 = (510,326,784 + 3,538,944) / 3 FLOPs
    assert r.forward_flops == pytest.approx(1600 * 1.3 * 513_865_728 / 3 / 2)
    assert r.probe_words_per_s == pytest.approx(1000 * 5 / 10)   # 1,000 train words x 5 epochs in 10 s
    assert r.device == "NVIDIA H200" and any("measured" in n for n in r.notes)
    assert not any(n.startswith("pretraining: MFU 40%") for n in r.notes)   # the replaced assumption is gone
    base = assumed_rates()
    # a FAILED row is not a measurement, nor is a CPU dry run
    failed = _fake_check(tmp_path, **{"pretrain-bf16": {"status": "FAILED", "tokens_per_s": 1.0}})
    assert read_throughput(failed).pretrain_flops == base.pretrain_flops
    report = json.loads(open(check).read())
    report["cpu_dry_run"] = True
    (tmp_path / "dry.json").write_text(json.dumps(report))
    dry = read_throughput(tmp_path / "dry.json")
    assert (dry.pretrain_flops, dry.finetune_flops) == (base.pretrain_flops, base.finetune_flops)


# --- the critical path and the schedule ---------------------------------------------------------------------

def _job(jid, seconds, gpu=0.0, cpu=1.0, parents=(), priority=0):
    return Job(jid, "x", seconds, gpu, cpu, tuple(parents), (priority,))


def test_critical_path_by_hand():
    jobs = [_job("A", 10), _job("B", 5, parents=["A"]), _job("C", 20, parents=["A"]),
            _job("D", 1, parents=["B", "C"]), _job("E", 30)]
    # A -> C -> D = 10 + 20 + 1 = 31 beats E alone (30) and A -> B -> D (16)
    assert critical_path(jobs) == (31, ["A", "C", "D"])


def test_list_scheduling_by_hand():
    # 2 GPUs. Three whole-GPU jobs of 10 s; four half-GPU children of P1 of 4 s, started after every P.
    jobs = [_job(f"P{i}", 10, gpu=1) for i in (1, 2, 3)]
    jobs += [_job(f"F{i}", 4, gpu=0.5, parents=["P1"], priority=1) for i in (1, 2, 3, 4)]
    # t=0: P1, P2. t=10: P3 and F1, F2 (sharing the other GPU). t=14: F3, F4. t=18: F done. t=20: P3 done.
    s = simulate(jobs, gpus=2, cpus=96)
    assert s.makespan == 20
    assert s.start == {"P1": 0, "P2": 0, "P3": 10, "F1": 10, "F2": 10, "F3": 14, "F4": 14}
    # two trials at once: t=10 P3 and F1; F2 at 14, F3 at 18, F4 at 20 (when P3 frees its GPU), done at 24
    s = simulate(jobs, gpus=2, cpus=96, max_concurrent=2)
    assert s.makespan == 24 and s.start["F4"] == 20


def test_shares_cpus_and_whole_gpus_by_hand():
    # ten 0.1 shares fill one GPU exactly (fixed point): 1 s; an eleventh waits for a second round
    assert simulate([_job(f"w{i}", 1, gpu=0.1) for i in range(10)], gpus=1, cpus=96).makespan == 1
    assert simulate([_job(f"w{i}", 1, gpu=0.1) for i in range(11)], gpus=1, cpus=96).makespan == 2
    # CPU jobs of 4 CPUs on 8: two at a time, three jobs of 5 s take 10 s
    assert simulate([_job(f"c{i}", 5, cpu=4) for i in range(3)], gpus=0, cpus=8).makespan == 10
    # a 2-GPU job waits for two free GPUs: A holds half of one for 10 s, B (1 s) starts at 10
    s = simulate([_job("A", 10, gpu=0.5), _job("B", 1, gpu=2, priority=1)], gpus=2, cpus=96)
    assert (s.start["B"], s.makespan) == (10, 11)
    with pytest.raises(ValueError, match="more than"):
        simulate([_job("big", 1, cpu=16)], gpus=1, cpus=8)


def test_first_seed_only():
    jobs = [_job("pretrain/M", 1), _job("finetune/M/rte/seed1", 1), _job("finetune/M/rte/seed2", 1),
            _job("winogender/M/seed2", 1), _job("probe/M/layer3", 1)]
    assert [j.id for j in _first_seed_only(jobs)] == ["pretrain/M", "finetune/M/rte/seed1", "probe/M/layer3"]


# --- the command ----------------------------------------------------------------------------------------

def test_xlt_plan_estimate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)     # no runs/gpu_check/gpu_check.json here: the assumptions
    assert main(["plan", str(DEFAULT_CONFIG), "--estimate", "--cpus", "2"]) == 0
    out = capsys.readouterr().out
    for words in ("critical path:", "lower bound:", "simulated:", "no runs/gpu_check/gpu_check.json",
                  "GPU-h", "does not apply"):   # the demo asks for no GPU
        assert words in out, words
    assert "nodes (parents first)" not in out   # the estimate replaces the node listing
    check = _fake_check(tmp_path, **{"finetune-sweep": {"tokens_per_s": 400_000.0, "trials": [{"done": True}] * 4}})
    assert main(["plan", str(DEFAULT_CONFIG), "resources.finetune.gpu=0.25", "--estimate", "--throughput", check]) == 0
    out = capsys.readouterr().out
    assert "fine-tuning: finetune-sweep row, 400,000 real tokens/s per GPU" in out and "design goal" in out
    assert main(["plan", "--estimate", "--throughput", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err


# --- measured throughput of a previous run (the DONE files' compute records) -------------------------------

def _done(folder, node, kind, **compute):
    (folder / node).mkdir(parents=True)
    (folder / node / "DONE").write_text(json.dumps({"kind": kind, "compute": compute}))


def test_rates_from_a_previous_runs_compute_records(tmp_path, capsys):
    from orchestrator.estimate import measured_rates, stated_pretrain_rate

    run = tmp_path / "previous"
    h100 = "NVIDIA H100 80GB HBM3"
    _done(run, "pretrain/a", "pretrain", train_tokens_per_s=100_000.0, flops_per_token=5e8, gpu_share=1.0, cpus=8,
          device=h100)
    _done(run, "finetune/a/rte/seed1", "finetune", train_tokens_per_s=50_000.0, flops_per_token=5e8,
          gpu_share=0.25, cpus=2, device=h100)                            # 1e14 FLOP/s per GPU
    _done(run, "finetune/a/rte/seed2", "finetune", train_tokens_per_s=30_000.0, flops_per_token=5e8,
          gpu_share=0.25, cpus=2, device=h100)                            # 6e13
    _done(run, "pretrain/b", "pretrain", train_tokens_per_s=40_000.0, flops_per_token=698_112.0, gpu_share=0.0,
          cpus=1)                                                          # a CPU node
    _done(run, "finetune/b/rte/seed1", "finetune", train_tokens_per_s=10_000.0, flops_per_token=698_112.0,
          gpu_share=0.0, cpus=2)
    _done(run, "probe/b/layer0", "probe", wall_s=3.0, gpu_share=0.0, cpus=1)      # trains no tokens: not a rate
    (run / "torn").mkdir()
    (run / "torn" / "DONE").write_text("{")                                # a torn write is skipped
    r, n = measured_rates(run, assumed_rates())
    assert n == 5
    assert r.pretrain_flops == pytest.approx(100_000 * 5e8)
    assert r.finetune_flops == pytest.approx(1e14) and r.padding == 0.0   # upper median of 1e14 and 6e13
    assert r.cpu_flops == pytest.approx(40_000 * 698_112) and r.cpu_finetune_flops == pytest.approx(5_000 * 698_112)
    assert any(n.startswith("pretraining: measured in") for n in r.notes)
    assert not any(n.startswith("pretraining: MFU 40%") for n in r.notes)
    # The measured CPU rate gives back the measured time: 1,638,400 tokens at 40,000 tokens/s per CPU, + 3 s.
    g = build_graph(load_sweep(DEFAULT_CONFIG, CORE, base_dir=tmp_path))
    job = next(j for j in Work(g, r).jobs() if j.id == "pretrain/S-to-en-frequency")
    assert job.seconds == pytest.approx(1_638_400 / (40_000 * job.cpu) + 3)
    stated = stated_pretrain_rate(754_267, r)
    assert stated.pretrain_flops == pytest.approx(754_267 * 524_482_560)
    assert stated.notes[0].startswith("pretraining: stated 754,267 tokens/s")
    assert main(["plan", str(DEFAULT_CONFIG), f"output_dir={tmp_path / 'new'}", "--estimate", "--measured",
                 str(run), "--pretrain-tokens-per-s", "754267"]) == 0
    out = capsys.readouterr().out
    assert "CPU training rates: measured in" in out and "pretraining: stated 754,267" in out
    assert main(["plan", "--estimate", "--measured", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["plan", "--estimate", "--measured", str(tmp_path / "empty")]) == 2
    assert "no finished training node there has a compute record" in capsys.readouterr().err


def test_finished_nodes_calibrate_the_rest_of_their_kind(tmp_path):
    """A finished node takes its measured seconds; the others of its kind are scaled by the kind's median
    measured / estimated ratio (here one node each: x2 for pretraining, x0.5 for fine-tuning), the rest as
    estimated."""
    from orchestrator.estimate import calibrate

    g = build_graph(load_sweep(DEFAULT_CONFIG, [*CORE, f"output_dir={tmp_path}"], base_dir=tmp_path))
    base = assumed_rates()
    plain = Work(g, base)
    assert calibrate(g, base) is base                      # nothing finished: the rates as they were
    want = {"pretrain/S": 2.0, "finetune/S/cola/seed1": 0.5}
    for nid, ratio in want.items():
        (g.node_dir(nid)).mkdir(parents=True)
        (g.node_dir(nid) / "settings.json").write_text(json.dumps({"hash": g.nodes[nid].hash}))
        wall = ratio * plain.estimated(g.nodes[nid])[0]
        (g.node_dir(nid) / "DONE").write_text(json.dumps({"compute": {"wall_s": wall}}))
    r = calibrate(g, base)
    assert r.kind_factor == pytest.approx({"pretrain": 2.0, "finetune": 0.5})
    work = Work(g, r)
    job = {n: work.job(g.nodes[n]).seconds for n in g.nodes}
    assert job["pretrain/S"] == pytest.approx(2.0 * plain.estimated(g.nodes["pretrain/S"])[0])      # measured
    assert job["pretrain/en-scratch"] == pytest.approx(2.0 * plain.estimated(g.nodes["pretrain/en-scratch"])[0])
    assert job["finetune/S/rte/seed2"] == pytest.approx(0.5 * plain.estimated(g.nodes["finetune/S/rte/seed2"])[0])
    tok = next(n for n in g.nodes if n.startswith("tokenizer/"))
    assert job[tok] == pytest.approx(plain.estimated(g.nodes[tok])[0])       # a kind with nothing finished
    assert any(n.startswith("calibration: 2 finished node(s)") for n in r.notes)
