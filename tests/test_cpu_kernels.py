"""CPU float kernels: which path a process runs changes a seeded training's bits, and `cpu_kernels` pins it.

Each case runs in a fresh interpreter: the kernels are fixed by a process's first torch operation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from stages.common import CPU_KERNELS

TRAIN = textwrap.dedent("""
    import hashlib, json, sys
    from stages.common import pin_cpu_kernels
    info = pin_cpu_kernels(sys.argv[1])
    import torch
    from transformers import RoFormerConfig, RoFormerForMaskedLM
    torch.manual_seed(0); torch.set_num_threads(1)
    m = RoFormerForMaskedLM(RoFormerConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                           intermediate_size=64, max_position_embeddings=64, embedding_size=32))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(40):
        x = torch.randint(5, 300, (16, 32), generator=g)
        labels = torch.where(torch.rand(16, 32, generator=g) < 0.15, x, torch.full_like(x, -100))
        m(input_ids=x, labels=labels).loss.backward(); opt.step(); opt.zero_grad()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest()
    print(json.dumps({**info, "digest": digest}))
""")


def _train(kernels: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA"}}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", TRAIN, kernels], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(__file__)), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


NATIVE = torch.backends.cpu.get_cpu_capability()


@pytest.mark.skipif(NATIVE == "DEFAULT", reason="this CPU's native kernels are the portable ones")
def test_kernel_path_changes_the_bits_and_the_setting_reaches_the_process():
    native, portable = _train("native"), _train("default")
    assert native["cpu_capability"] == NATIVE and portable["cpu_capability"] == "DEFAULT"
    assert native["cpu_kernels"] == "native" and portable["cpu_kernels"] == "default"
    # The same seeded run on another kernel path ends on other weights: why a demo table moves across CPUs.
    assert native["digest"] != portable["digest"]
    assert _train("native")["digest"] == native["digest"]    # while one path is deterministic


@pytest.mark.skipif(NATIVE != "AVX2", reason="avx2 is the native path only on an AVX2 (not AVX-512) CPU")
def test_avx2_pin_is_the_native_path_bit_for_bit_on_an_avx2_cpu():
    # What makes the pin free here and the README's numbers valid on AVX-512 machines with the pin.
    assert _train("avx2")["digest"] == _train("native")["digest"]


def test_pin_after_torch_ran_is_refused_with_the_fix():
    code = ("import os, torch\n(torch.randn(8, 8) @ torch.randn(8, 8)).softmax(-1).sum()\n"
            "from stages.common import pin_cpu_kernels\npin_cpu_kernels('default')\n")
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    if NATIVE == "DEFAULT":
        assert out.returncode == 0
        return
    assert out.returncode != 0
    assert "asks torch for DEFAULT kernels but this process runs" in out.stderr
    assert "ATEN_CPU_CAPABILITY=default" in out.stderr and "cpu_kernels: native" in out.stderr


def test_unknown_kernel_setting_names_the_choices():
    from stages.common import StageError, pin_cpu_kernels

    with pytest.raises(StageError, match=r"unknown value 'avx9'.*'avx2', 'default', 'native'"):
        pin_cpu_kernels("avx9")
    assert set(CPU_KERNELS) == {"native", "avx2", "default"}
