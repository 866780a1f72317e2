"""The diagnostic benchmarks compute what they claim: the order-only task masks only the partner of each
pair, and agreement choice scores a model's preference between the two forms of a pair."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_pair_task_masks_only_partners_and_needs_the_left_neighbour():
    pp = _load("position_plateau")
    gen = torch.Generator().manual_seed(0)
    x, labels = pp.pair_batch(gen, batch=64, length=32, symbols=10, mask_prob=0.5)
    chosen = labels.ne(-100)
    assert chosen.any() and not chosen[:, 0::2].any()              # first tokens of pairs are never predicted
    assert (x[chosen] == pp.MASK_ID).all()                          # every predicted token is hidden
    left = torch.roll(x, 1, dims=1)
    assert torch.equal(labels[chosen], left[chosen] + 10)           # ... and is its left neighbour + symbols
    firsts = x[:, 0::2]
    assert firsts.min() >= pp.FIRST_ID and firsts.max() < pp.FIRST_ID + 10


def test_agreement_choice_counts_the_preferred_form(tmp_path):
    """A hand-set MLM head that always prefers the first form of each pair ("is" over "are", "this" over
    "these"): right exactly where that form stood."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "cats", "is", "are", "does", "do", "this",
             "these", "that", "those", "a", "some", "here", "."]
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    model = BertForMaskedLM(BertConfig(vocab_size=len(words), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=16))
    with torch.no_grad():
        model.cls.predictions.bias.zero_()
        for w in ("is", "does", "this", "that", "a"):
            model.cls.predictions.bias[words.index(w)] = 100.0     # wins against its counterpart everywhere
    d = tmp_path / "m"
    model.save_pretrained(d)
    tok.save_pretrained(d)
    dev = tmp_path / "dev.tsv"
    # acceptable sentences hold is; this, is; are (the last row is unacceptable and must be ignored)
    dev.write_text("x\t1\t\tthe cat is here .\nx\t1\t\tthis cat is here .\nx\t1\t\tthe cats are here .\n"
                   "x\t0\t*\tthe cats is here .\n")
    ac = _load("agreement_choice")
    acc, n = ac.agreement_choice(str(d), str(dev), limit=10)
    assert n == 4 and abs(acc - 3 / 4) < 1e-9      # is, this, is right; are loses to "is"


def _rows(table: str) -> dict[str, list[str]]:
    """Markdown table rows by their first cell (second too, joined by ' | ', when the first is a task name)."""
    rows = {}
    for line in table.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
            rows[" | ".join(cells[:2])] = cells[2:]
    return rows


def _number(cell: str) -> float:
    return float(cell.replace(",", ""))


def test_pretrain_throughput_benchmark_prints_its_tables(capsys):
    """All three runs at the smallest sizes, one repetition: positive tokens/s, ratios that are the
    quotients of the figures, and no padding."""
    bench = _load("pretrain_throughput")
    out = bench.main(["--steps", "4", "--warmup", "1", "--lines", "1200", "--vocab", "200", "--batch", "8",
                      "--micro-batch", "4", "--block-size", "32", "--reps", "1"])
    printed = capsys.readouterr().out
    assert out["table"] in printed
    rows = _rows(out["table"])
    for run in bench.RUNS:
        cells = rows[bench.LABELS[run]]
        assert len(cells) == 4 and all(_number(c) > 0 for c in cells)     # min, median, max, per CPU-s
        assert len(out["tokens_per_s"][run]) == len(out["tokens_per_cpu_s"][run]) == 1
    for a, b, label in bench.RATIOS:
        (ratio,) = out["ratios"][f"{a}/{b}"]
        assert ratio > 0 and abs(ratio - out["tokens_per_s"][a][0] / out["tokens_per_s"][b][0]) < 1e-3
        assert _number(rows[label][1]) > 0 and _number(rows[label][3]) > 0
    assert out["padding_fraction"] == 0.0 and "no padding" in out["table"]


def test_rotated_order_puts_every_run_first_once():
    bench = _load("pretrain_throughput")
    orders = [bench.rotated(("a", "b", "c"), rep) for rep in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]


def test_finetune_throughput_benchmark_prints_its_tables(capsys):
    """Both tasks at the smallest sizes, one repetition: positive examples/s, padding fractions in [0, 1) with
    random batches padded more than length-grouped ones, ratios with their targets."""
    _load("pretrain_throughput")
    bench = _load("finetune_throughput")
    out = bench.main(["--sst2-examples", "96", "--rte-examples", "64", "--dev-examples", "8", "--batch", "8",
                      "--vocab", "200", "--reps", "1"])
    printed = capsys.readouterr().out
    assert out["table"] in printed
    rows = _rows(out["table"])
    for t in ("sst2", "rte"):
        fig = out["tasks"][t]
        for run in bench.RUNS:
            cells = rows[f"{bench.TITLES[t]} | {bench.LABELS[run]}"]
            assert len(cells) == 5 and all(_number(c) > 0 for c in cells[:4])
            assert 0 <= _number(cells[4]) < 1
        pad = {run: fig["padding_fraction"][run][0] for run in bench.RUNS}
        assert pad["stage"] < pad["trainer_random"] and pad["trainer_grouped"] < pad["trainer_random"]
        for a, b, label, target in bench.RATIOS:
            cells = rows[f"{bench.TITLES[t]} | {label}"]
            assert _number(cells[1]) > 0 and cells[3] == (f"≥ {target:.1f}" if target else "—")


def test_generated_glue_tasks_have_long_tails(tmp_path):
    """The SST-2-like and RTE-like files are in the official layout, read by the stage's loader, with
    long-tailed lengths (a mean well above the median, a maximum far above both)."""
    import statistics

    _load("pretrain_throughput")
    bench = _load("finetune_throughput")
    bench.make_glue(tmp_path, {"sst2": 2000, "rte": 500}, 10, seed=0)
    from stages.glue import load_split

    sst2 = [len(e.text_a.split()) for e in load_split("sst2", "train", str(tmp_path))]
    premises = [len(e.text_a.split()) for e in load_split("rte", "train", str(tmp_path))]
    assert len(sst2) == 2000 and len(premises) == 500 and len(load_split("rte", "", str(tmp_path))) == 10
    for lengths, tail in ((sst2, 4), (premises, 3)):
        median = statistics.median(lengths)
        assert statistics.mean(lengths) > median and max(lengths) > tail * median


def test_word_counting_benchmark_text_and_run(capsys):
    """The generated text has the requested share of non-ASCII words, and the benchmark's ways agree (it
    exits if any count differs from the Rust pipeline's)."""
    bench = _load("word_counting")
    docs = bench.make_documents(20_000, 0.15)
    words = " ".join(docs).split()
    assert 19_000 <= len(words) <= 20_000
    share = sum(not w.isascii() for w in words) / len(words)
    assert 0.12 < share < 0.18
    out = bench.main(["--words", "3000", "--workers", "1", "2", "--repeats", "1"])
    assert out["words"] > 3000 and len(out["seconds"]) == 3   # punctuation is cut off into words of its own
    assert "counts equal in every run" in capsys.readouterr().out
