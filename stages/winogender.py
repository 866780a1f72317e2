"""Winogender as NLI (SuperGLUE's diagnostic AX-g), scored with a model fine-tuned on RTE (paper Appendix E).

Each AX-g example is a premise/hypothesis pair; the examples come in male/female minimal pairs that share a
`pair_id` and differ only in the pronoun. As SuperGLUE (and jiant) do, a model fine-tuned on RTE labels
them, and two numbers are reported: accuracy, and the gender parity score (GPS), the share of pairs whose
predictions are identical. A perfectly unbiased model has a GPS of 1 (values here are fractions; reports
multiply by 100, as for GLUE).

The model is a folder that stages/finetune.py saved with save_model=True after fine-tuning on RTE. Its
predicted ids are mapped to labels through its own config.id2label, never by assuming an order, and a
model whose labels are not exactly entailment / not_entailment is refused.

Data: `AX-g.jsonl` as SuperGLUE ships it (premise, hypothesis, label, idx, pair_id per line), or the hub's
`super_glue`/`axg` test split. The hub copy has no pair_id column; there the pairs are taken from the
file order (rows 2k and 2k+1, the order of AX-g.jsonl), checked to share their hypothesis.
"""
from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Hashable, NamedTuple, Sequence

import numpy as np
import torch

from stages.common import resolve_pretrained  # hub ids: cache first, one clear error offline
from stages.common import (MixedPrecision, StageConfig, StageError, check_model_fits, configure_threads,
                           make_accelerator, pad_batch, quiet_transformers, resolve_mixed_precision, setting,
                           write_json)
from stages.tokenizer import load_tokenizer

LABELS = ("entailment", "not_entailment")  # also the hub's ClassLabel order
FIELDS = ("premise", "hypothesis", "label", "idx", "pair_id")


class WinogenderSettings(StageConfig):
    """Winogender as NLI (SuperGLUE AX-g, paper Table 10): the sweep's `winogender` section."""
    data_file: str | None = setting(None, "AX-g.jsonl; null: the hub")
    hub_dataset: str = setting("super_glue", "hub dataset used when data_file is null")
    hub_config: str = setting("axg", "its config")
    batch_size: int = setting(64, "examples per forward pass", ge=1)
    max_length: int = setting(128, "tokens per premise-hypothesis pair", ge=8)
    mixed_precision: MixedPrecision = setting("auto", "autocast on GPU, fp32 on CPU")


class WinogenderConfig(WinogenderSettings):
    model: str = setting(doc="folder saved by stages/finetune.py (task rte, save_model=True)")
    output_dir: str = setting(doc="eval_results.json")
    num_threads: int | None = setting(None, "torch CPU threads (configure_threads)", hashed=False)


@dataclass(frozen=True)
class WinogenderResult:
    accuracy: float        # fraction of examples whose predicted label is the gold one
    gender_parity: float   # fraction of pairs (pair_id groups of 2+) with identical predictions
    examples: int
    pairs: int             # pair_id groups of 2 or more examples (the ones GPS is over)
    seconds: float
    output_dir: str
    singletons: int = 0    # pair_ids with a single example: reported, left out of GPS


@dataclass(frozen=True)
class AxgExample:
    premise: str
    hypothesis: str
    label: str             # "entailment" | "not_entailment"
    idx: int
    pair_id: Hashable


class Parity(NamedTuple):
    score: float                   # fraction of scored groups whose predictions all agree; nan if none
    pairs: int                     # groups with 2+ members (the ones scored)
    singletons: list               # pair ids that occur once (a pair with a missing partner)


def gender_parity(pair_ids: Sequence[Hashable], predictions: Sequence) -> Parity:
    """SuperGLUE's gender parity score: the share of pair_id groups in which every prediction is the same.

    A group of one example has no partner to disagree with, so it is not scored (that would inflate the
    score); it is returned in `singletons` for the caller to report.
    """
    if len(pair_ids) != len(predictions):
        raise ValueError(f"gender_parity: {len(pair_ids)} pair ids but {len(predictions)} predictions")
    groups: OrderedDict[Hashable, list] = OrderedDict()
    for pid, pred in zip(pair_ids, predictions):
        groups.setdefault(pid, []).append(pred)
    scored = [g for g in groups.values() if len(g) > 1]
    singletons = [pid for pid, g in groups.items() if len(g) == 1]
    if not scored:
        return Parity(float("nan"), 0, singletons)
    agree = sum(all(p == g[0] for p in g) for g in scored)
    return Parity(agree / len(scored), len(scored), singletons)


# ------------------------------------------------------------------------------------------------------ data

def read_axg_jsonl(path: str | Path) -> list[AxgExample]:
    path = Path(path)
    if not path.is_file():
        raise StageError(f"AX-g file {path} does not exist; give the AX-g.jsonl of SuperGLUE's AX-g.zip "
                         "(one JSON object per line with premise, hypothesis, label, idx, pair_id), or set "
                         "data_file to None to load it from the hub")
    out: list[AxgExample] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {n} ({path})"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise StageError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); each line must be one "
                                 "JSON object; fix or re-download AX-g.jsonl") from None
            if not isinstance(row, dict):
                raise StageError(f"{where}: expected a JSON object, found {type(row).__name__}")
            missing = [k for k in FIELDS if k not in row]
            if missing:
                raise StageError(f"{where}: missing field(s) {', '.join(missing)}; every AX-g line needs "
                                 f"{', '.join(FIELDS)}")
            if row["label"] not in LABELS:
                raise StageError(f"{where}: unknown label {row['label']!r}; expected entailment or not_entailment")
            if not isinstance(row["premise"], str) or not isinstance(row["hypothesis"], str):
                raise StageError(f"{where}: premise and hypothesis must be strings")
            if isinstance(row["idx"], bool) or not isinstance(row["idx"], int):
                raise StageError(f"{where}: idx {row['idx']!r} is not an integer")
            if not isinstance(row["pair_id"], (int, str)) or isinstance(row["pair_id"], bool):
                raise StageError(f"{where}: pair_id {row['pair_id']!r} must be an integer or a string")
            out.append(AxgExample(row["premise"], row["hypothesis"], row["label"], row["idx"], row["pair_id"]))
    if not out:
        raise StageError(f"{path} holds no examples; re-download SuperGLUE's AX-g.zip")
    return out


def axg_examples_from_columns(columns, source: str = "hub AX-g") -> list[AxgExample]:
    """Hub-format rows (a `datasets.Dataset` or a dict of columns: premise, hypothesis, idx, label as a ClassLabel
    id in the order entailment, not_entailment; optional pair_id) -> AxgExamples.

    Without a pair_id column, rows 2k and 2k+1 form a pair (AX-g's file order) and must share the hypothesis.
    """
    names = columns.column_names if hasattr(columns, "column_names") else list(columns)
    missing = [c for c in ("premise", "hypothesis", "idx", "label") if c not in names]
    if missing:
        raise StageError(f"{source} lacks column(s) {missing}; it has {names}. Use super_glue/axg or a copy with "
                         "the same columns")
    premises, hypotheses = list(columns["premise"]), list(columns["hypothesis"])
    idxs, labels = [int(i) for i in columns["idx"]], [int(y) for y in columns["label"]]
    if "pair_id" in names:
        pair_ids = list(columns["pair_id"])
    else:
        if len(premises) % 2:
            raise StageError(f"{source} has no pair_id column and an odd number of rows ({len(premises)}), so the "
                             "male/female pairs cannot be recovered; give data_file=AX-g.jsonl instead")
        for r in range(0, len(premises), 2):
            if hypotheses[r] != hypotheses[r + 1]:
                raise StageError(f"{source} has no pair_id column and rows {r} and {r + 1} do not share a "
                                 "hypothesis, so they are not a pair; give data_file=AX-g.jsonl instead")
        pair_ids = [r // 2 for r in range(len(premises))]
    out = []
    for r, y in enumerate(labels):
        if y not in (0, 1):
            raise StageError(f"{source} row {r}: label {y} is not 0 (entailment) or 1 (not_entailment)")
        out.append(AxgExample(premises[r], hypotheses[r], LABELS[y], idxs[r], pair_ids[r]))
    return out


def load_axg(data_file: str | None, hub_dataset: str = "super_glue", hub_config: str = "axg",
             log: Callable[[str], None] = print) -> list[AxgExample]:
    if data_file is not None:
        return read_axg_jsonl(data_file)
    try:
        from datasets import load_dataset

        ds = load_dataset(hub_dataset, hub_config, split="test")
    except Exception as e:
        raise StageError(f"cannot load {hub_dataset!r} config {hub_config!r} split 'test' from the hub: "
                         f"{type(e).__name__}: {e}. Offline, set data_file to the AX-g.jsonl of SuperGLUE's AX-g.zip; "
                         "with a datasets release that no longer runs loading scripts, try hub_dataset="
                         "'aps/super_glue'") from e
    if "pair_id" not in ds.column_names:
        log(f"[winogender] {hub_dataset}/{hub_config} has no pair_id column: pairing rows 2k and 2k+1 (AX-g order)")
    examples = axg_examples_from_columns(ds, f"hub {hub_dataset}/{hub_config} test")
    if not examples:
        raise StageError(f"hub {hub_dataset}/{hub_config} test holds no examples")
    return examples


# ------------------------------------------------------------------------------------------------------ model

def _load_model(cfg: WinogenderConfig, tokenizer):
    from transformers import AutoModelForSequenceClassification

    try:
        model = AutoModelForSequenceClassification.from_pretrained(resolve_pretrained(cfg.model), dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as e:
        raise StageError(f"cannot load {cfg.model!r} as a sequence classifier: {e}. Give the model/ folder that "
                         "stages/finetune.py writes with task rte and save_model=True") from e
    id2label = {int(k): v for k, v in (model.config.id2label or {}).items()}
    if sorted(id2label.values()) != sorted(LABELS) or sorted(id2label) != [0, 1]:
        raise StageError(f"{cfg.model} predicts labels {id2label}, not exactly entailment / not_entailment: it is "
                         "not an RTE classifier. Fine-tune it on RTE first (stages/finetune.py, task rte, "
                         "save_model=True) and give that run's model/ folder")
    check_model_fits(model, tokenizer, cfg.max_length, cfg.model, "give the folder where model and tokenizer were saved together")
    return model, id2label


def _collate_fn(pad_id: int, with_types: bool):
    def collate(batch):
        out = pad_batch([seq for _, seq, _ in batch], [tt for _, _, tt in batch] if with_types else None, pad_id)
        out["index"] = torch.tensor([k for k, _, _ in batch])
        return out
    return collate


def evaluate_winogender(cfg: WinogenderConfig, log: Callable[[str], None] = print) -> WinogenderResult:
    from sklearn.metrics import accuracy_score

    quiet_transformers()
    t_start = time.time()
    configure_threads(cfg.num_threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = make_accelerator(resolve_mixed_precision(cfg.mixed_precision))

    tokenizer = load_tokenizer(cfg.model)
    with_types = "token_type_ids" in tokenizer.model_input_names
    examples = load_axg(cfg.data_file, cfg.hub_dataset, cfg.hub_config, log)
    model, id2label = _load_model(cfg, tokenizer)
    enc = tokenizer([e.premise for e in examples], [e.hypothesis for e in examples], truncation="longest_first",
                    max_length=cfg.max_length)
    types = enc["token_type_ids"] if with_types else [None] * len(examples)
    data = list(zip(range(len(examples)), enc["input_ids"], types))
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, shuffle=False,
                                         collate_fn=_collate_fn(tokenizer.pad_token_id, with_types))
    model, loader = accelerator.prepare(model, loader)
    model.eval()
    pred_ids = np.full(len(examples), -1, dtype=np.int64)
    with torch.no_grad():
        for batch in loader:
            logits = model(**{k: v for k, v in batch.items() if k != "index"}).logits
            pred, index = accelerator.gather_for_metrics((logits.argmax(dim=-1), batch["index"]))
            pred_ids[index.cpu().numpy()] = pred.cpu().numpy()
    predictions = [id2label[int(p)] for p in pred_ids]
    gold = [e.label for e in examples]
    accuracy = float(accuracy_score(gold, predictions))
    parity = gender_parity([e.pair_id for e in examples], predictions)
    if parity.singletons:
        log(f"[winogender] WARNING: {len(parity.singletons)} pair_id(s) occur only once and are left out of the "
            f"gender parity score: {parity.singletons[:10]}{' ...' if len(parity.singletons) > 10 else ''}")
    if parity.pairs == 0:
        raise StageError("no pair_id is shared by two examples, so the gender parity score is undefined; AX-g "
                         "comes in male/female pairs: give the complete AX-g.jsonl")
    result = WinogenderResult(accuracy=accuracy, gender_parity=parity.score, examples=len(examples),
                              pairs=parity.pairs, seconds=time.time() - t_start, output_dir=str(out),
                              singletons=len(parity.singletons))
    log(f"[winogender] {cfg.model}: accuracy {accuracy:.4f}, gender parity {parity.score:.4f} over "
        f"{parity.pairs} pairs ({len(examples)} examples)")
    if accelerator.is_main_process:
        write_json(out / "eval_results.json", {
            **asdict(result), "config": cfg.model_dump(), "id2label": {str(k): v for k, v in id2label.items()},
            "singleton_pair_ids": parity.singletons,
            "predictions": [{"idx": e.idx, "pair_id": e.pair_id, "label": e.label, "prediction": p}
                            for e, p in zip(examples, predictions)]})
    return result
