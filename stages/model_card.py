"""Hub-ready model cards: the README.md of every exported model folder.

An exported folder is meant to be pushed to the Hugging Face hub as it is, and a model there without a card
cannot be placed: which study, which source model, which init, which data, how good. The card is built with
huggingface_hub's ModelCard / ModelCardData, so its YAML front matter is what the hub parses (library_name,
pipeline_tag, base_model, language, tags; for GLUE fine-tunes also datasets and a model-index), and the body
says the rest: the source model and init method, a summary of `mapping_report.json`, the corpus (file names
only) and tokens seen, the final held-out MLM loss and accuracy or the dev metrics, and the hyperparameters.

Same inputs give a byte-identical README.md (no timestamps, hostnames or absolute corpus paths), so a rerun
that changes nothing rewrites nothing. An undefined (NaN) metric reads "n/d" in the text and is left out of
the metadata, where the hub expects a number.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from stages.common import _looks_like_path, write_text
from stages.glue import GLUE_TASKS

__all__ = ["mapping_summary", "write_finetune_card", "write_pretrain_card"]

STUDY = "*Cross-lingual Transfer of Monolingual Models* (Gogoulou et al.)"
TAGS = ["xlt", "cross-lingual-transfer", "bert"]
INIT = {
    "keep": "the source vocabulary is kept (cut to its first tokens) with its embedding rows ([lang->en][lang])",
    "frequency": "a new English WordPiece vocabulary; the English token of rank i takes the source embedding row "
                 "of rank i ([lang->en][en])",
    "random-map": "the `frequency` procedure with the same source rows dealt out in a seeded random order "
                  "(control: does frequency order matter, or any reuse of the body?)",
    "scratch": "the source's architecture, random init, English vocabulary: no source weights ([en][en])",
    "build": "a new model of the sweep's architecture, random init: no source weights",
}
INIT["built"] = INIT["build"]
DERIVED = ("keep", "frequency", "random-map")   # only these reuse source weights, so only they have a base_model
# (summary key, label) in display order; mapping_summary picks exactly these out of mapping_report.json
MAPPING = (("mode", "mode"), ("rank", "rank"), ("vocab_size", "vocabulary size"),
           ("source_rows", "source embedding rows"), ("identity_count", "tokens that kept their own source row"),
           ("special_identity_count", "special tokens that kept their own source row"),
           ("new_rows", "new rows (BERT init)"), ("kept", "source tokens kept"), ("dropped", "source tokens dropped"),
           ("same_kind", "same-kind share of the top English ranks"),
           ("mlm_head_missing", "MLM head tensors missing from the source (seeded init)"), ("warning", "warning"))
# the project's metric names -> the hub's metric ids (hf.co/metrics)
HUB_METRIC = {"mcc": "matthews_correlation", "accuracy": "accuracy", "f1": "f1", "spearman": "spearmanr",
              "pearson": "pearsonr"}


def mapping_summary(report: dict) -> dict:
    """The card-worthy part of a `mapping_report.json` dict; absent keys stay absent."""
    out = {k: report[k] for k, _ in MAPPING if k in report}
    if "target_vocab_size" in report:
        out["vocab_size"] = report["target_vocab_size"]
    if isinstance(report.get("same_kind"), dict):
        out["same_kind"] = {top: v["share"] if isinstance(v, dict) else v for top, v in report["same_kind"].items()}
    if isinstance(report.get("mlm_head"), dict):
        out["mlm_head_missing"] = len(report["mlm_head"].get("missing_keys") or [])
    return {k: out[k] for k, _ in MAPPING if k in out}


def is_hub_id(name: str | None) -> bool:
    """"name" or "owner/name" that is not a folder here: the only form the hub accepts as base_model."""
    return bool(name) and not _looks_like_path(name) and not Path(name).expanduser().exists()


def _num(v: Any, fmt: str = ".4f") -> str:
    return "n/d" if v is None or isinstance(v, float) and math.isnan(v) else format(v, fmt)


def _cell(v: Any) -> str:
    text = v if isinstance(v, str) else repr(v) if isinstance(v, float) else json.dumps(v, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")   # a pipe or newline would break the markdown table


def _table(head: tuple[str, str], rows: list[tuple[str, str]]) -> str:
    lines = [f"| {head[0]} | {head[1]} |", "|---|---|"] + [f"| {_cell(a)} | {_cell(b)} |" for a, b in rows]
    return "\n".join(lines)


def _source_line(source: str | None, what: str) -> str:
    if not source:
        return f"{what}: none."
    if is_hub_id(source):
        return f"{what}: [`{source}`](https://huggingface.co/{source})."
    return f"{what}: the local folder `{source}` (not a hub model, so the metadata names no `base_model`)."


def _write(model_dir: str | Path, data: ModelCardData, body: list[str]) -> Path:
    path = Path(model_dir) / "README.md"
    text = str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(body) + "\n"))
    write_text(path, text, keep_if_same=True)   # an unchanged card keeps its mtime
    return path


def _languages(language: str | list[str]) -> list[str]:
    return [language] if isinstance(language, str) else list(language)


def write_pretrain_card(model_dir: str | Path, *, model_key: str, source_model: str | None, language: str | list[str],
                        init_method: str, mapping_summary: dict | None, corpus_files: list[str], tokens_seen: int,
                        steps: int, eval_loss: float, eval_accuracy: float, seed: int,
                        hyperparameters: dict) -> Path:
    """Write `<model_dir>/README.md` for a pretrained (or transferred and further pretrained) MLM."""
    base = source_model if init_method in DERIVED and is_hub_id(source_model) else None
    data = ModelCardData(base_model=base, language=_languages(language), library_name="transformers",
                         pipeline_tag="fill-mask", tags=TAGS)
    langs = ", ".join(f"`{x}`" for x in _languages(language))
    body = [f"# {model_key}",
            f"A masked-language model from a reproduction of {STUDY} with `xlt`: a monolingual BERT moved to "
            f"another language by vocabulary surgery and continued MLM pretraining on {langs} text.",
            _source_line(source_model, "Source model"),
            f"Init method: `{init_method}`, {INIT.get(init_method, 'see the project README')}."]
    if mapping_summary:
        lines = []
        for key, label in MAPPING:
            if key not in mapping_summary:
                continue
            v = mapping_summary[key]
            if key == "same_kind":
                v = ", ".join(f"{top} {_num(share, '.2f')}" for top, share in v.items())
            lines.append(f"- **{label}**: {v}")
        body += ["## Vocabulary mapping", "\n".join(lines)]
    corpus = ", ".join(f"`{Path(f).name}`" for f in corpus_files)   # basenames: no paths of this machine leak
    body += ["## Training", _table(("", "value"), [
        ("corpus", corpus or "n/d"), ("tokens seen", f"{tokens_seen:,}"), ("steps", f"{steps:,}"),
        ("seed", str(seed)), ("held-out MLM loss", _num(eval_loss)), ("held-out MLM accuracy", _num(eval_accuracy))])]
    if hyperparameters:
        body += ["## Hyperparameters", _table(("name", "value"), list(hyperparameters.items()))]
    return _write(model_dir, data, body)


def write_finetune_card(model_dir: str | Path, *, model_key: str, base_model: str | None, task: str, seed: int,
                        metrics: dict, hyperparameters: dict, language: str | list[str] = "en") -> Path:
    """Write `<model_dir>/README.md` for a sequence-classification fine-tune (GLUE, STS-B regression too).

    `metrics` are the dev metrics as the fine-tune stage names them ("accuracy", MNLI's "m_accuracy");
    entries that are not numbers are ignored, so eval_results.json's own dict can be passed."""
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    spec = GLUE_TASKS.get(task.lower())
    results = []
    if spec is not None:   # only GLUE has a hub dataset to name; source-language tasks stay in the text
        where = {f"{d.key}_{m}" if d.key else m: (d.hub_split, m) for d in spec.dev_splits for m in spec.metrics}
        results = [EvalResult(task_type="text-classification", dataset_type="glue", dataset_name=f"GLUE {spec.folder}",
                              dataset_config=spec.name, dataset_split=where[k][0],
                              metric_type=HUB_METRIC[where[k][1]], metric_name=k, metric_value=round(v, 4))
                   for k, v in numbers.items() if k in where and not math.isnan(v)]
    data = ModelCardData(base_model=base_model if is_hub_id(base_model) else None, datasets=["glue"] if spec else None,
                         language=_languages(language), library_name="transformers",
                         pipeline_tag="text-classification", tags=TAGS + (["glue"] if spec else []),
                         model_name=model_key if results else None, eval_results=results or None)
    name = f"GLUE {spec.folder}" if spec else task
    body = [f"# {model_key}",
            f"A {name} fine-tune from a reproduction of {STUDY} with `xlt`.",
            _source_line(base_model, "Base model"),
            "## Dev results", _table(("", "value"), [("task", name), ("seed", str(seed))]
                                     + [(k, _num(v)) for k, v in numbers.items()])]
    if hyperparameters:
        body += ["## Hyperparameters", _table(("name", "value"), list(hyperparameters.items()))]
    return _write(model_dir, data, body)
