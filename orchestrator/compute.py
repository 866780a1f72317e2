"""What a node cost, recorded in its DONE (`compute`) and summed by `xlt report` (the cost table) and `xlt plan
--estimate` (measured throughput of a previous run).

- wall_s: the node's seconds, from the start of the attempt that finished to its DONE;
- cpus, gpu_share: what the trial held (the share Ray granted; 0 where no CUDA device was visible);
- cpu_seconds = wall_s x cpus, gpu_seconds = wall_s x gpu_share: the device-seconds the sweep paid for the node
  whether or not it kept the device busy;
- tokens_seen (pretraining: steps x batch x block, the packed token slots this node trained, the steps before a
  crash-resume included, a learning-curve segment's predecessors' not) and examples_seen (fine-tuning,
  forgetting, WiC: training examples x epochs);
- wall_s of a resumed node is its last attempt's only (the earlier attempts' time is not recorded);
- flops_per_token: 6N + 12 L H S for training, N the layers' parameters (embeddings and MLM head left out, as
  in gpu_check's MFU), S the block size (pretraining) or the maximum length (fine-tuning: an upper bound on the
  attention term, which is under 3% of BERT-base's FLOPs at 128);
- mfu, on a GPU only: the training loop's real tokens/s x flops_per_token / (the GPU's dense bf16 peak x the
  trial's share). A trial at share 0.25 is judged against a quarter of the GPU.

Nothing here imports torch: the runner passes the device name in, and the plan stays instant.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Dense bf16/fp16 tensor-core peaks (no sparsity), TFLOP/s, by device-name pattern: first match wins.
PEAK_TFLOPS = (
    (r"H100.*PCIe", 756.0),
    (r"H200|H100|GH200", 989.0),
    (r"A100", 312.0),
    (r"V100", 125.0),
)


def peak_tflops(device_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU by its name (torch.cuda.get_device_name), None when it is not in the table."""
    for pattern, tflops in PEAK_TFLOPS:
        if device_name and re.search(pattern, device_name):
            return tflops
    return None


@dataclass(frozen=True)
class Shape:
    """The transformer layers of a BERT: what its FLOPs per token depend on."""
    layers: int
    hidden: int
    intermediate: int

    @property
    def layer_params(self) -> int:
        """N: attention (4 H x H and 4 biases), FFN (2 H x F, F + H biases), two LayerNorms (4 H) per layer."""
        h, f = self.hidden, self.intermediate
        return self.layers * (4 * h * h + 4 * h + 2 * h * f + f + h + 4 * h)

    def __str__(self) -> str:
        return f"{self.layers} layers, hidden {self.hidden}, FFN {self.intermediate}"

    @classmethod
    def of(cls, hf_config: dict) -> Shape | None:
        """The shape of a transformers config.json (BERT, RoFormer, RoBERTa, ... names), None when it lacks one."""
        keys = ("num_hidden_layers", "hidden_size", "intermediate_size")
        if all(isinstance(hf_config.get(k), int) for k in keys):
            return cls(*(hf_config[k] for k in keys))
        return None


BERT_BASE = Shape(12, 768, 3072)


def flops_per_token(shape: Shape, seq: float, training: bool = True) -> float:
    """Training: 6N + 12 L H S (forward and backward through the weights, attention scores and values);
    a forward pass alone is a third of it. The embeddings and the MLM head are not counted (gpu_check's MFU)."""
    fpt = 6.0 * shape.layer_params + 12.0 * shape.layers * shape.hidden * seq
    return fpt if training else fpt / 3


def node_compute(kind: str, summary: dict, params: dict, wall_s: float, cpus: float, gpu_share: float,
                 device_name: str | None, shape: Shape | None) -> dict:
    """The `compute` record of a finished node (see the module docstring); `summary` is its handler's."""
    result = summary.get("result") or {}
    cfg = params.get("config") or {}
    out = {"wall_s": wall_s, "cpus": cpus, "gpu_share": gpu_share, "device": device_name or "cpu",
           "cpu_seconds": wall_s * cpus, "gpu_seconds": wall_s * gpu_share}
    tokens_per_s, seq = None, None
    if kind == "pretrain":
        # a learning-curve segment's own tokens: the run's count less the steps it resumed from
        steps, start = result.get("steps") or 0, result.get("start_step") or 0
        seen = int(result.get("tokens_seen") or 0)
        out["tokens_seen"] = seen * (steps - start) // steps if steps else seen
        tokens_per_s, seq = result.get("tokens_per_s"), cfg.get("block_size")
    elif kind in ("finetune", "curve", "forget", "wic"):
        out["examples_seen"] = int(round((result.get("train_examples") or 0) * float(cfg.get("epochs") or 0)))
        tokens_per_s, seq = result.get("train_tokens_per_s"), cfg.get("max_length")
    if tokens_per_s and shape and seq:
        fpt = flops_per_token(shape, seq)
        out.update(train_tokens_per_s=tokens_per_s, flops_per_token=fpt)
        peak = peak_tflops(device_name) if gpu_share > 0 else None
        if peak:
            out.update(peak_tflops=peak, mfu=tokens_per_s * fpt / (peak * 1e12 * gpu_share))
    return out
