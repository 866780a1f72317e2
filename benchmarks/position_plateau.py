"""How many steps a tiny MLM needs before its attention uses word order: BERT (learned absolute positions)
against RoFormer (rotary positions), same size, same data, same optimizer.

The task needs position and nothing else: a sequence is pairs (a, a + offset) of random tokens, and only
the second token of a pair is ever masked. The visible bag of tokens says nothing about which partner is
missing, so a model that ignores order stays at ln(pairs vocabulary) nats; one that attends to its left
neighbour gets to ~0. This is why `configs/demo.yaml` builds its hidden-64 models as RoFormer: BERT of that
size sits on this plateau longer than the demo's whole pretraining budget (see README, "Demo results").

    python benchmarks/position_plateau.py                 # both families, 1,500 steps, one thread each
    python benchmarks/position_plateau.py --steps 3000 --init 0.1 --lr 1e-3
"""
from __future__ import annotations

import argparse
import math
import time

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    RoFormerConfig,
    RoFormerForMaskedLM,
)

FAMILIES = {"bert": (BertConfig, BertForMaskedLM), "roformer": (RoFormerConfig, RoFormerForMaskedLM)}
FIRST_ID = 5   # ids below this play the special tokens; 4 is [MASK]
MASK_ID = 4


def pair_batch(gen: torch.Generator, batch: int, length: int, symbols: int, mask_prob: float):
    """Sequences a0 b0 a1 b1 ... with b = a + symbols; a random share of the b's is masked."""
    a = torch.randint(FIRST_ID, FIRST_ID + symbols, (batch, length // 2), generator=gen)
    x = torch.stack([a, a + symbols], dim=2).reshape(batch, length)
    chosen = torch.rand(x.shape, generator=gen) < mask_prob
    chosen[:, 0::2] = False                      # only partners are predicted
    labels = torch.where(chosen, x, torch.full_like(x, -100))
    return torch.where(chosen, torch.full_like(x, MASK_ID), x), labels


def steps_to_learn(family: str, args) -> dict:
    config_cls, model_cls = FAMILIES[family]
    torch.manual_seed(args.seed)
    cfg = config_cls(vocab_size=FIRST_ID + 2 * args.symbols, hidden_size=args.hidden, num_hidden_layers=args.layers,
                     num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                     max_position_embeddings=max(128, args.length), initializer_range=args.init)
    model = model_cls(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed)
    t0, curve, learned_at = time.perf_counter(), [], None
    for step in range(1, args.steps + 1):
        x, labels = pair_batch(gen, args.batch, args.length, args.symbols, 0.15)
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.every == 0:
            curve.append(round(loss.item(), 2))
            if learned_at is None and loss.item() < args.threshold:
                learned_at = step
                break
    return {"family": family, "learned_at_step": learned_at, "curve": curve,
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--symbols", type=int, default=100, help="first tokens of pairs are drawn from this many")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--init", type=float, default=0.02, help="initializer_range (BERT's default 0.02)")
    ap.add_argument("--threshold", type=float, default=0.5, help="nats; 'learned' once the loss is below it")
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"order-blind loss: ln({args.symbols}) = {math.log(args.symbols):.2f} nats")
    for family in args.families:
        r = steps_to_learn(family, args)
        when = f"learned at step {r['learned_at_step']}" if r["learned_at_step"] else f"not learned in {args.steps} steps"
        print(f"{family:9s} {when} ({r['seconds']} s); loss every {args.every} steps: {r['curve']}", flush=True)


if __name__ == "__main__":
    main()
