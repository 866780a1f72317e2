"""The cost record's arithmetic against hand numbers (orchestrator/compute.py); the record as run_node writes it
is checked in tests/test_node_state.py."""
from __future__ import annotations

import pytest

from orchestrator.compute import Shape, flops_per_token, node_compute, peak_tflops

SMALL = Shape(2, 64, 256)
# N per layer: 4*64*64 + 4*64 + 2*64*256 + 256 + 64 + 4*64 = 16,384 + 256 + 32,768 + 256 + 64 + 256 = 49,984
N = 2 * 49_984


def test_flops_per_token_by_hand():
    assert SMALL.layer_params == N
    assert flops_per_token(SMALL, 128) == 6 * N + 12 * 2 * 64 * 128 == 796_416
    assert flops_per_token(SMALL, 128, training=False) == pytest.approx(796_416 / 3)
    assert Shape.of({"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 256}) == SMALL
    assert Shape.of({"hidden_size": 64}) is None


@pytest.mark.parametrize("name,peak", [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                                       ("NVIDIA H200", 989.0), ("NVIDIA A100-SXM4-80GB", 312.0),
                                       ("Tesla V100-SXM2-16GB", 125.0), ("NVIDIA L4", None), (None, None)])
def test_peak_by_device_name(name, peak):
    assert peak_tflops(name) == peak


def test_pretraining_on_a_quarter_of_an_h100():
    """MFU against the trial's share: 10,000 tokens/s x 796,416 FLOPs / (989e12 x 0.25)."""
    summary = {"result": {"tokens_seen": 1_000_000, "tokens_per_s": 10_000.0}}
    c = node_compute("pretrain", summary, {"config": {"block_size": 128}}, wall_s=200.0, cpus=4, gpu_share=0.25,
                     device_name="NVIDIA H100 80GB HBM3", shape=SMALL)
    assert c["gpu_seconds"] == 50.0 and c["cpu_seconds"] == 800.0 and c["tokens_seen"] == 1_000_000
    assert c["mfu"] == pytest.approx(10_000 * 796_416 / (989e12 * 0.25))
    assert c["peak_tflops"] == 989.0 and c["device"] == "NVIDIA H100 80GB HBM3"


def test_fine_tuning_on_cpu_counts_examples_and_has_no_mfu():
    summary = {"result": {"train_examples": 1_000, "train_tokens_per_s": 5_000.0}}
    c = node_compute("finetune", summary, {"config": {"epochs": 3, "max_length": 128}}, wall_s=10.0, cpus=2,
                     gpu_share=0.0, device_name=None, shape=SMALL)
    assert c["examples_seen"] == 3_000 and c["gpu_seconds"] == 0.0 and c["cpu_seconds"] == 20.0
    assert c["flops_per_token"] == 796_416 and "mfu" not in c and c["device"] == "cpu"
    unknown = node_compute("finetune", summary, {"config": {"epochs": 3, "max_length": 128}}, wall_s=10.0, cpus=2,
                           gpu_share=0.5, device_name="NVIDIA L4", shape=SMALL)
    assert "mfu" not in unknown and unknown["gpu_seconds"] == 5.0    # a GPU not in the peak table: no MFU


def test_a_node_that_trains_nothing_records_device_seconds_only():
    c = node_compute("probe", {"result": {}}, {"config": {}}, wall_s=3.0, cpus=1, gpu_share=0.0, device_name=None,
                     shape=None)
    assert set(c) == {"wall_s", "cpus", "gpu_share", "device", "cpu_seconds", "gpu_seconds"}
