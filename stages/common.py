"""Small helpers every stage shares: seeding, CPU threads, atomic file writes, errors users can act on."""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


class StageError(RuntimeError):
    """Bad input or state that the user can fix; the message names the problem and the fix."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(num_threads: int | None) -> None:
    """Give torch exactly the CPU threads this trial was granted.

    Two trials that each spin 2 threads on a 2-core machine run ~30x slower than with 1 thread each,
    so a trial never takes more threads than Ray gave it (Ray exports OMP_NUM_THREADS from num_cpus).
    """
    if num_threads is None:
        num_threads = int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count() or 1
    torch.set_num_threads(max(1, int(num_threads)))


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically: a crash never leaves a half-written file that a rerun would trust."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    with open(path) as f:
        return json.load(f)


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a finished folder into place, replacing an older one (checkpoints, model folders)."""
    if final_dir.exists():
        old = final_dir.with_name(final_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp_dir, final_dir)


def pick_device(prefer_gpu: bool = True) -> torch.device:
    if prefer_gpu and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_mixed_precision(requested: str) -> str:
    """'auto' means bf16 on a GPU that has it, fp16 on an older GPU, and fp32 ('no') on CPU."""
    if requested != "auto":
        if requested in ("bf16", "fp16") and not torch.cuda.is_available():
            return "no"
        return requested
    if not torch.cuda.is_available():
        return "no"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def quiet_transformers() -> None:
    """Keep trial logs readable: no per-load progress bars or load reports, errors still shown."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def make_accelerator(mixed_precision: str, **kwargs):
    """An Accelerator at this precision, also in a worker that already made one at another precision.

    Accelerate keeps one process-wide state and refuses a second Accelerator at another precision, so a
    reused Ray worker that ran an fp32 trial could not run a bf16 one. Only the precision part of that
    state is reset; the distributed set-up (PartialState) stays. cpu=True off CUDA keeps Apple's MPS out,
    so CPU runs stay bit-for-bit reproducible.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    kwargs = dict(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available(), **kwargs)
    try:
        return Accelerator(**kwargs)
    except ValueError as e:
        if "already been initialized" not in str(e):
            raise
        AcceleratorState._reset_state()
        return Accelerator(**kwargs)


NO_DECAY = ("bias", "LayerNorm", "norm")


def make_adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW as BERT trains it: no weight decay on biases and normalisation weights."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [{"params": [p for n, p in params if not any(k in n for k in NO_DECAY)], "weight_decay": weight_decay},
         {"params": [p for n, p in params if any(k in n for k in NO_DECAY)], "weight_decay": 0.0}], lr=lr)


MIXED_PRECISION_CHOICES = ("auto", "no", "bf16", "fp16")


def check_training_config(cfg, what: str) -> None:
    """The checks every fine-tuning style config shares (fine-tune, WiC): one StageError listing all problems."""
    problems = []
    if cfg.mixed_precision not in MIXED_PRECISION_CHOICES:
        problems.append(f"mixed_precision {cfg.mixed_precision!r} is not one of {', '.join(MIXED_PRECISION_CHOICES)}")
    for name in ("learning_rate", "epochs"):
        if not getattr(cfg, name) > 0:
            problems.append(f"{name} must be positive, got {getattr(cfg, name)}")
    for name in ("batch_size", "eval_batch_size", "log_every"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.max_length < 8:
        problems.append(f"max_length {cfg.max_length} leaves no room for text after [CLS]/[SEP]; use e.g. 128")
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        problems.append(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    if cfg.weight_decay < 0 or cfg.max_grad_norm < 0:
        problems.append("weight_decay and max_grad_norm must be >= 0 (max_grad_norm 0 turns clipping off)")
    if problems:
        raise StageError(f"invalid {what}: " + "; ".join(problems))


def check_model_fits(model, tokenizer, max_length: int | None, name: str, fix: str) -> None:
    """A model must have an embedding row for every token and a position for every one of max_length."""
    rows = model.get_input_embeddings().weight.shape[0]
    if rows < len(tokenizer):
        raise StageError(f"the tokenizer of {name} has {len(tokenizer)} tokens but the model's embedding table "
                         f"only {rows} rows; {fix}")
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_length is not None and max_pos is not None and max_length > max_pos:
        raise StageError(f"max_length {max_length} exceeds the model's {max_pos} position embeddings; "
                         f"lower max_length to at most {max_pos}")


def pad_batch(input_ids: Sequence, token_type_ids: Sequence | None, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad one batch of token sequences to its own longest (dynamic padding; right, as BERT's
    absolute positions expect). Returns input_ids, attention_mask and, when given, token_type_ids."""
    n, width = len(input_ids), max(len(s) for s in input_ids)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long) if token_type_ids is not None else None
    for i, seq in enumerate(input_ids):
        k = len(seq)
        ids[i, :k] = torch.as_tensor(seq, dtype=torch.long)
        mask[i, :k] = 1
        if types is not None:
            types[i, :k] = torch.as_tensor(token_type_ids[i], dtype=torch.long)
    out = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out
