"""Small helpers every stage shares: seeding, CPU threads, atomic file writes, errors users can act on."""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import platform
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


class StageError(RuntimeError):
    """Bad input or state that the user can fix; the message names the problem and the fix."""


# --- typed configs ---------------------------------------------------------------------------------
# Every stage's config is a pydantic model derived from StageConfig: the one definition of each field
# (type, default, a one-line doc, checks). The sweep YAML's sections are these models (plus sweep-only
# keys), so a field added here is at once a YAML key, validated, part of the node hash and an MLflow param.

def _yaml_number(value: Any) -> Any:
    # YAML 1.1 reads 1e-3 (no dot) as a string; accept what is unmistakably a number.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Number = Annotated[float, BeforeValidator(_yaml_number)]
MixedPrecision = Literal["auto", "no", "bf16", "fp16"]   # auto: bf16 (or fp16) on GPU, fp32 on CPU


class StageConfig(BaseModel):
    """Strict: unknown keys and wrong types are errors (an int is accepted for a float); immutable."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def replace(self, **changes: Any):
        """A copy with `changes`, validated like a new config (model_copy would not check them)."""
        return type(self).model_validate({**self.model_dump(), **changes})


def setting(default: Any = PydanticUndefined, doc: str = "", *, hashed: bool = True, added: bool = False,
            **checks: Any) -> Any:
    """A config field with its one-line doc; `checks` are pydantic constraints (gt, ge, le, ...).

    `hashed=False` marks a field that cannot change the result: how often something is logged, evaluated
    or checkpointed, or how many CPU threads run it. It is left out of the node hash, so changing it
    resumes a node from its checkpoint instead of starting it over. Every other field is hashed.
    `added=True` marks a field added to a stage after sweeps ran: hashed, but left out of the hash while it
    holds its default, so the finished nodes of those sweeps (which ran as the default does) stay done."""
    extra = None if hashed and not added else {"hashed": False} if not hashed else {"added": True}
    return Field(default, description=doc, json_schema_extra=extra, **checks)


class TrainingSettings(StageConfig):
    """The hyperparameters every fine-tuning stage shares (GLUE, forgetting, WiC): paper Table 5 defaults."""
    learning_rate: Number = setting(2e-5, "peak AdamW learning rate", gt=0)
    batch_size: int = setting(32, "examples per step", ge=1)
    epochs: Number = setting(3.0, "passes over the train split (no early stopping: the last model counts)", gt=0)
    max_length: int = setting(128, "tokens per example; longer ones are cut", ge=8)
    weight_decay: Number = setting(0.0, "AdamW weight decay (not on biases and LayerNorm)", ge=0)
    warmup_ratio: Number = setting(0.0, "share of steps of linear warm-up", ge=0, lt=1)
    max_grad_norm: Number = setting(1.0, "gradient clipping norm; 0 turns clipping off", ge=0)
    mixed_precision: MixedPrecision = setting("auto", "auto: bf16 (or fp16) on GPU, fp32 on CPU")
    max_train_examples: int | None = setting(None, "the first N train examples only (quick runs)", ge=1)
    max_eval_examples: int | None = setting(None, "the first N examples of each dev split only", ge=1)
    eval_batch_size: int = setting(128, "examples per evaluation forward pass", ge=1)
    group_by_length: bool = setting(True, "batches of examples of similar length (seeded), not of random ones: "
                                          "GLUE batches drawn at random are 40-50% padding")
    log_every: int = setting(50, "training metrics every N steps", hashed=False, ge=1)


def is_hashed(info: FieldInfo) -> bool:
    return not (isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("hashed") is False)


def result_fields(cfg: StageConfig) -> dict:
    """The config as a dict without its unhashed fields (nested configs too): what decides a result."""
    out = {}
    for name, info in type(cfg).model_fields.items():
        if not is_hashed(info):
            continue
        value = getattr(cfg, name)
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("added") and value == info.default:
            continue
        out[name] = result_fields(value) if isinstance(value, StageConfig) else \
            (value.model_dump() if isinstance(value, BaseModel) else value)
    return out


def with_defaults(base: type[StageConfig], name: str, doc: str, **defaults: Any) -> type[StageConfig]:
    """`base` with other defaults for some fields: types, docs and checks stay defined once, in `base`."""
    fields = {}
    for key, value in defaults.items():
        info = copy.copy(base.model_fields[key])
        info.default = value
        fields[key] = (info.annotation, info)
    return create_model(name, __base__=base, __doc__=doc, __module__=base.__module__, **fields)



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


# The kernels a CPU trial's float arithmetic runs through, by name. torch's vectorized ATen kernels, MKL's
# GEMM and oneDNN each dispatch on the CPU's instruction set, and each path sums in its own order: on this
# project's AMD EPYC (AVX2), 200 steps of the demo's MLM with ATen's DEFAULT kernels, with MKL in its
# COMPATIBLE mode or with oneDNN capped at SSE4.1 each end on other weights than the native run (test
# tests/test_cpu_kernels.py). A machine with AVX-512 takes other paths again, so the same seeded demo prints
# other tables there. "avx2" caps all three at AVX2, the instruction set of nearly every x86 CPU of the last
# decade (MKL by its documented Conditional Numerical Reproducibility mode): on an AVX2 machine it is the
# native path, bit for bit, and an AVX-512 machine takes the same path. It must be set before the process
# runs its first torch operation, so the sweep sets it in every trial's environment.
CPU_KERNELS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def pin_cpu_kernels(kernels: str) -> dict[str, str]:
    """Put this process's CPU kernels on the named path (`CPU_KERNELS`) and say which path it runs.

    Raises when the path cannot be had: the process already ran torch operations on another one, or the
    CPU lacks the instruction set. Returns what a node records: the setting, ATen's capability, the CPU."""
    if kernels not in CPU_KERNELS:
        raise StageError(f"cpu_kernels: unknown value {kernels!r}; use one of {sorted(CPU_KERNELS)}")
    env = CPU_KERNELS[kernels]
    for key, value in env.items():
        os.environ[key] = value
    capability = torch.backends.cpu.get_cpu_capability()
    wanted = env.get("ATEN_CPU_CAPABILITY")
    if wanted and capability != wanted.upper():
        raise StageError(f"cpu_kernels: {kernels} asks torch for {wanted.upper()} kernels but this process runs "
                         f"{capability} ones (its CPU lacks the instruction set, or torch ran before the setting "
                         "was made); set cpu_kernels: native, or start the process with "
                         + " ".join(f"{k}={v}" for k, v in env.items()))
    return {"cpu_kernels": kernels, "cpu_capability": capability, "cpu_model": _cpu_model()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", keep_if_same: bool = False):
    """Open `path` for writing through a temp file in the same folder, renamed into place only when the
    block succeeds: a crash never leaves a half-written file that a rerun would trust. The project's one
    way to write a file others read.

    `keep_if_same`: when the new bytes equal the file already there, leave that file (and its mtime)
    untouched; caches key data files by mtime, so an unchanged regenerated file must not look new.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    text = "b" not in mode
    f = os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": "\n"} if text else {}))
    try:
        yield f
    except BaseException:
        f.close()
        os.unlink(tmp)
        raise
    f.close()
    if keep_if_same and _same_bytes(tmp, path):
        os.unlink(tmp)
    else:
        os.replace(tmp, path)


def _same_bytes(a: str | Path, b: str | Path) -> bool:
    if not os.path.isfile(b) or os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (see atomic_write)."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)


def write_text(path: str | Path, text: str, keep_if_same: bool = False) -> None:
    with atomic_write(path, keep_if_same=keep_if_same) as f:
        f.write(text)


def save_npy(path: str | Path, array) -> None:
    """np.save through atomic_write (np.save on a path would leave a torn file after a crash)."""
    with atomic_write(path, "wb") as f:
        np.save(f, array)


# --- content identity of data files ------------------------------------------------------------------

_DIGESTS: dict[str, str] = {}
_PERSIST_FROM = 16 << 20       # bytes: smaller files are hashed again each time (milliseconds), bigger ones once


def _digest_cache_file() -> Path:
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("XLT_CACHE_DIR") or xdg / "xlt") / "digests.json"


def sha256_file(path: str | Path) -> str:
    """First 16 hex digits of the sha256 of a file's bytes, read in 4 MiB blocks (no cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """sha256 (first 16 hex digits) of a file's bytes: what a node hash records of its data, so a copied,
    moved or re-mounted file is the same data and a touched one is unchanged, while any edit of its bytes
    shows. Hashing English Wikipedia takes seconds, so digests of big files are kept in a small per-user
    cache (`$XLT_CACHE_DIR`, else `$XDG_CACHE_HOME/xlt`, default ~/.cache/xlt), keyed by path, inode, size
    and ctime. The ctime, not the mtime: any write (or `touch`) sets it and nothing can set it back, so a
    file edited in place with its old mtime restored (`cp -p`, `rsync -t`) still gets a new key and is hashed
    again."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_ino}|{st.st_size}|{st.st_ctime_ns}"
    if key in _DIGESTS:
        return _DIGESTS[key]
    cache_file = _digest_cache_file()
    persisted: dict = {}
    if st.st_size >= _PERSIST_FROM:
        with contextlib.suppress(OSError, ValueError):
            persisted = read_json(cache_file)
        if key in persisted:
            _DIGESTS[key] = persisted[key]
            return persisted[key]
    _DIGESTS[key] = digest = sha256_file(p)
    if st.st_size >= _PERSIST_FROM:
        # Another process may have added entries meanwhile: re-read, add ours, replace atomically. A lost
        # entry only costs one more hashing.
        with contextlib.suppress(OSError, ValueError):
            persisted = read_json(cache_file)
        persisted[key] = digest
        with contextlib.suppress(OSError):
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache_file, persisted)
    return digest


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


# --- pretrained models: local folders and hub ids ------------------------------------------------------------

# Files a BERT-like checkpoint never needs here: other frameworks' weights and export formats.
_HUB_IGNORE = ["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite", "*.mlmodel", "onnx/*", "openvino/*", "coreml/*",
               "tf_model*", "flax_model*", "rust_model*"]


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "owner/name"; anything with more parts, or rooted, is meant as a folder.
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def resolve_pretrained(name: str) -> str:
    """A local folder holding the model or tokenizer `name`: the folder itself, or the hub snapshot of a hub id.

    A hub id is looked up in the local cache first (no network); only when it is not cached is the hub asked,
    once, with a short timeout, so an unreachable hub or a misspelt id fails in a second with a message that
    says what to do, not after a minute of retries. Pickled weights are not downloaded when safetensors exist.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or _looks_like_path(name):
        raise StageError(f"model folder {name!r} does not exist (or is not a folder); give a folder written by "
                         "save_pretrained (config.json, model.safetensors, tokenizer files) or a hub id")
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    except ValueError as e:   # not a valid repo id (e.g. spaces, bad characters)
        raise StageError(f"{name!r} is neither a local folder nor a valid hub id ({e})") from e
    local = (f"Give a local folder instead (on a machine with network: `hf download {name} --local-dir <folder>`, "
             f"then copy it here), or download it into the hub cache and set HF_HUB_OFFLINE=1")
    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        raise StageError(f"hub id {name!r} is not in the local hub cache and HF_HUB_OFFLINE is set. {local}")
    try:
        info = HfApi().model_info(name, timeout=10)
    except GatedRepoError as e:
        raise StageError(f"hub model {name!r} is gated: accept its terms on huggingface.co and log in "
                         f"(`hf auth login`), or give a local folder") from e
    except RepositoryNotFoundError as e:
        raise StageError(f"hub id {name!r} does not exist (a typo?) or is private; check the id on huggingface.co, "
                         "or give a local folder") from e
    except Exception as e:  # noqa: BLE001 -- any transport failure (DNS, proxy, timeout) means "no hub from here"
        raise StageError(f"cannot reach the Hugging Face hub to fetch {name!r} ({type(e).__name__}: {e}). "
                         f"{local}") from e
    files = [s.rfilename for s in info.siblings or []]
    ignore = _HUB_IGNORE + (["*.bin", "*.pt", "*.pth"] if any(f.endswith(".safetensors") for f in files) else [])
    return snapshot_download(name, ignore_patterns=ignore)


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
    if torch.cuda.is_available():
        # TF32 for what stays fp32 under autocast (and for fp32 runs): Ampere+ tensor cores at ~8x the fp32
        # rate, with a 10-bit mantissa that BERT training does not notice.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        return Accelerator(**kwargs)
    except ValueError as e:
        if "already been initialized" not in str(e):
            raise
        AcceleratorState._reset_state()
        return Accelerator(**kwargs)


NO_DECAY = ("bias", "LayerNorm", "norm")


def make_adamw(model: torch.nn.Module, lr: float, weight_decay: float, fused: bool = False) -> torch.optim.AdamW:
    """AdamW as BERT trains it: no weight decay on biases and normalisation weights. `fused`: one CUDA kernel
    for every parameter's update instead of a loop of small ones (the parameters must be on the GPU)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [{"params": [p for n, p in params if not any(k in n for k in NO_DECAY)], "weight_decay": weight_decay},
         {"params": [p for n, p in params if any(k in n for k in NO_DECAY)], "weight_decay": 0.0}], lr=lr,
        **({"fused": True} if fused else {}))


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


class LengthGroupedBatches(torch.utils.data.Sampler):
    """Training batches of examples of similar length, in a seeded random order (a batch sampler).

    Drawn in random order, a batch pads every example to its longest one: on GLUE that is 40-50% padding.
    Per epoch, the examples are shuffled, cut into groups of `group` batches, each group is sorted by length
    and cut into batches, and the batches are shuffled; the batch holding the longest example goes first, so a
    trial that will run out of memory does so at its first step. Every example is in exactly one batch per
    epoch, and the batches of epoch e are a function of (seed, e) alone (`batches`), so a rerun or a resumed
    run draws the same ones. Each `iter()` is the next epoch, as a DataLoader iterates it."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group: int = 50):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.group = batch_size, seed, group
        self.epoch = 0

    def batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        out: list[list[int]] = []
        for start in range(0, len(order), self.batch_size * self.group):
            chunk = order[start:start + self.batch_size * self.group]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            out += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        out = [out[i] for i in rng.permutation(len(out))]
        longest = max(range(len(out)), key=lambda i: (self.lengths[out[i]].max(), -i)) if out else 0
        return out[longest:longest + 1] + out[:longest] + out[longest + 1:]

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return iter(self.batches(epoch))

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Share of the token slots of `batches` (each padded to its longest example) that are padding."""
    lengths = np.asarray(lengths)
    slots = sum(len(b) * int(lengths[list(b)].max()) for b in batches if len(b))
    return 1.0 - float(sum(int(lengths[list(b)].sum()) for b in batches)) / max(1, slots)


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
