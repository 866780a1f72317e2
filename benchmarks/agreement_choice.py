"""Does a masked LM know number agreement? Mask each "is"/"are"-like word of acceptable CoLA sentences and
check whether the model prefers it to its counterpart ("is" over "are" where "is" stood).

A model that ignores word order scores about the share of the more frequent form; one that reads the
subject scores near 100%. It reads the MLM directly, with no fine-tuning, so it tells "pretraining did not
learn syntax" apart from "fine-tuning did not use it". On the demo's world (see README):

    python benchmarks/agreement_choice.py runs/demo/pretrain/en-scratch/model
    python benchmarks/agreement_choice.py MODEL_DIR --cola-dev data/synthetic/glue/CoLA/dev.tsv --limit 400
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS = [("is", "are"), ("does", "do"), ("this", "these"), ("that", "those"), ("a", "some")]


def agreement_choice(model_dir: str, cola_dev: str, limit: int) -> tuple[float, int]:
    from transformers import AutoModelForMaskedLM

    from stages.tokenizer import load_tokenizer

    tok = load_tokenizer(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    other = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}
    ids = {w: tok.convert_tokens_to_ids(w) for w in other}
    missing = [w for w, i in ids.items() if i == tok.unk_token_id]
    if missing:
        raise SystemExit(f"the vocabulary of {model_dir} lacks {missing}: this check needs E's function words")
    with open(cola_dev, newline="", encoding="utf-8") as f:
        good = [r[3] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) == 4 and r[1] == "1"]
    correct = total = 0
    with torch.no_grad():
        for sentence in good[:limit]:
            words = sentence.split()
            for i, w in enumerate(words):
                if w not in other:      # capitalised forms are other vocabulary entries: skipped
                    continue
                enc = tok(" ".join(words[:i] + [tok.mask_token] + words[i + 1:]), return_tensors="pt")
                pos = int((enc["input_ids"][0] == tok.mask_token_id).nonzero()[0, 0])
                logits = model(**enc).logits[0, pos]
                correct += int(logits[ids[w]] > logits[ids[other[w]]])
                total += 1
    if total == 0:
        raise SystemExit(f"no {'/'.join(other)} in the acceptable sentences of {cola_dev}")
    return correct / total, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--cola-dev", default="data/synthetic/glue/CoLA/dev.tsv")
    ap.add_argument("--limit", type=int, default=400, help="acceptable sentences to read")
    args = ap.parse_args()
    torch.set_num_threads(1)
    acc, n = agreement_choice(args.model_dir, args.cola_dev, args.limit)
    print(f"{args.model_dir}: agreement choice {acc:.3f} over {n} masked words")


if __name__ == "__main__":
    main()
