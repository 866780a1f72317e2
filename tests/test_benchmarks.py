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
