"""Continued MLM pretraining: masking statistics, packing without padding, exact resume, reloadable output."""
from __future__ import annotations

import glob
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.common import StageError
from stages.corpus import CorpusConfig
from stages.pretrain import PackedBlocks, PretrainConfig, mask_tokens, pretrain


def test_mask_tokens_follows_80_10_10_and_skips_specials():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (400, 128))
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS], [SEP]
    masked, labels = mask_tokens(ids, torch.tensor([0, 1, 2, 3, 4]), mask_id=4, vocab_size=1000, prob=0.15, gen=gen)
    chosen = labels.ne(-100)
    assert not chosen[:, 0].any() and not chosen[:, -1].any()
    rate = chosen[:, 1:-1].float().mean().item()
    assert abs(rate - 0.15) < 0.005
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original tokens
    n = chosen.sum().item()
    as_mask = (masked.eq(4) & chosen).sum().item() / n
    kept = (masked.eq(ids) & chosen).sum().item() / n
    assert abs(as_mask - 0.8) < 0.01
    assert abs(kept - 0.1) < 0.01 + 0.001  # + random draws that happen to equal the original (1/1000)
    assert torch.equal(masked[~chosen], ids[~chosen])  # unchosen positions untouched


def test_fixed_shape_gather_equals_boolean_mask_indexing(tiny_bert):
    """The loss at gathered positions (fixed count, padded with -100) equals the loss of the boolean-mask
    selection it replaces, on a hand batch; the shape does not depend on how many positions were drawn."""
    from transformers import AutoModelForMaskedLM

    from stages.pretrain import SparseMLM, gather_targets, prediction_slots

    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
    ids = torch.randint(5, 100, (3, 10))
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[0, 7], labels[1, 0], labels[2, 9] = 11, 12, 13, 14   # 4 predicted positions
    masked = ids.clone()
    masked[labels.ne(-100)] = 4
    b = gather_targets(ids, masked, labels, slots=64, pad_id=0)
    assert b.positions.shape == b.targets.shape == (64,)
    assert b.positions[:4].tolist() == [2, 7, 10, 29] and b.targets[:4].tolist() == [11, 12, 13, 14]
    assert (b.targets[4:] == -100).all() and (b.positions[4:] == 0).all()
    with torch.no_grad():
        got = SparseMLM(model)(b.input_ids, b.positions, b.targets)
        hidden = model.base_model(input_ids=masked).last_hidden_state
        sel = labels.ne(-100)
        want = torch.nn.functional.cross_entropy(model.cls(hidden[sel]).float(), labels[sel])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    # expected 0.15 * 32 * 128 = 614.4 predictions, sd 22.85: mean + 6 sd = 751.5 -> 768 slots
    assert prediction_slots(32 * 128, 0.15) == 768
    many = torch.zeros(1, 200, dtype=torch.long)                           # more picks than slots: shape grows
    assert gather_targets(many, many, many, slots=64, pad_id=None).positions.shape == (256,)


@pytest.fixture()
def pt_config(tmp_path, tiny_bert, tiny_corpus):
    def make(out, **kw):
        base = dict(init_model=tiny_bert, corpus=CorpusConfig(files=[str(tiny_corpus)]), output_dir=str(tmp_path / out),
                    cache_dir=str(tmp_path / "cache"), batch_size=16, per_device_batch_size=8, block_size=64,
                    max_steps=12, learning_rate=1e-3, log_every=4, eval_every=4, checkpoint_every=6, num_threads=1)
        base.update(kw)
        return PretrainConfig(**base)
    return make


def _record_micro_batches(monkeypatch, edit=None):
    """[(index, input ids)] of every micro-batch the training loop draws, before masking; `edit` may change them."""
    fed = []
    real = PackedBlocks.train_micro_batch

    def spy(self, index, size):
        ids = real(self, index, size)
        if edit is not None:
            ids = edit(index, ids)
        fed.append((index, ids.clone()))
        return ids
    monkeypatch.setattr(PackedBlocks, "train_micro_batch", spy)
    return fed


def test_pretrain_learns_packs_without_padding_and_reloads(pt_config, tiny_corpus, monkeypatch):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    logs = []
    fed = _record_micro_batches(monkeypatch)
    cfg = pt_config("a", max_steps=30)
    res = pretrain(cfg, on_log=lambda s, m: logs.append((s, m)), log=lambda *_: None)
    assert res.steps == 30
    # What was trained on, counted from the batches themselves: 2 micro-batches of 8 x 64 tokens per step.
    assert [i for i, _ in fed] == list(range(30 * 2))
    assert sum(ids.numel() for _, ids in fed) == 30 * 16 * 64 == res.tokens_seen
    # Packing: every row is [CLS] + 62 consecutive tokens of the corpus (tokenized here, line by line, each
    # line followed by [SEP]) at a block boundary + [SEP]; only training blocks, none twice within an epoch.
    tok = AutoTokenizer.from_pretrained(cfg.init_model)
    stream = []
    for line in tiny_corpus.read_text().splitlines():
        stream += tok(line, add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    body = 64 - 2
    blocks = {tuple(stream[b * body:(b + 1) * body]): b for b in range(len(stream) // body)}
    assert len(blocks) == len(stream) // body  # no two blocks alike: a row names its block
    data = PackedBlocks(glob.glob(f"{cfg.cache_dir}/*.bin")[0], 64, tok.cls_token_id, tok.sep_token_id,
                        cfg.eval_fraction, cfg.max_eval_blocks, cfg.seed)
    held_out = set(data.eval_blocks.tolist())
    assert held_out and len(held_out) + len(data.train_blocks) == len(blocks)
    per_epoch = (len(blocks) - len(held_out)) // 8  # micro-batches of 8 per pass over the training blocks
    seen: dict[int, Counter] = {}
    for index, ids in fed:
        assert ids.shape == (8, 64)
        assert (ids[:, 0] == tok.cls_token_id).all() and (ids[:, -1] == tok.sep_token_id).all()
        for row in ids[:, 1:-1].tolist():
            b = blocks[tuple(row)]  # KeyError: not a block of the corpus
            assert b not in held_out
            seen.setdefault(index // per_epoch, Counter())[b] += 1
    assert all(max(c.values()) == 1 for c in seen.values())
    # No position was padding, and the stage reports the pads it was fed: none.
    assert sum(int(ids.eq(tok.pad_token_id).sum()) for _, ids in fed) == 0 == res.padding_fraction
    evals = [m["eval/loss"] for _, m in logs if "eval/loss" in m]
    assert evals[-1] < evals[0] - 0.3  # it learns
    assert np.isclose(res.eval_perplexity, np.exp(res.eval_loss))
    assert [s for s, _ in logs] == [4, 8, 12, 16, 20, 24, 28, 30]
    model = AutoModelForMaskedLM.from_pretrained(res.model_dir)
    tok = AutoTokenizer.from_pretrained(res.model_dir)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def test_padding_fraction_counts_the_pads_it_is_fed(pt_config, monkeypatch):
    """Packed blocks cannot pad, so real padding is planted: micro-batch i gets (i mod 5) + 1 [PAD] tokens at
    the end of its first row. The stage must report exactly that share, per logging window and overall."""
    from stages.tokenizer import load_tokenizer

    cfg = pt_config("pad", max_steps=4, log_every=2, eval_every=4)
    pad = load_tokenizer(cfg.init_model).pad_token_id

    def plant(index, ids):
        ids = ids.clone()
        ids[0, -(index % 5 + 1):] = pad
        return ids
    _record_micro_batches(monkeypatch, plant)
    logs = []
    res = pretrain(cfg, on_log=lambda s, m: logs.append((s, m)), log=lambda *_: None)
    per_window = 2 * 16 * 64  # 2 steps x 16 sequences x 64 positions
    # micro-batches 0-3 (steps 1-2): 1 + 2 + 3 + 4 pads; 4-7 (steps 3-4): 5 + 1 + 2 + 3
    assert [(s, m["train/padding_fraction"]) for s, m in logs] == [(2, pytest.approx(10 / per_window)),
                                                                  (4, pytest.approx(11 / per_window))]
    assert res.padding_fraction == pytest.approx(21 / (2 * per_window))


def test_held_out_loss_and_accuracy_match_a_plain_masked_lm_forward(pt_config):
    """The stage's sparse evaluation against the full BertForMaskedLM forward on the same held-out masks."""
    import torch.nn.functional as F
    from transformers import AutoModelForMaskedLM

    from stages.tokenizer import load_tokenizer

    cfg = pt_config("acc", max_steps=8)
    res = pretrain(cfg, log=lambda *_: None)
    tok = load_tokenizer(res.model_dir)
    model = AutoModelForMaskedLM.from_pretrained(res.model_dir).eval()
    data = PackedBlocks(glob.glob(f"{cfg.cache_dir}/*.bin")[0], cfg.block_size, tok.cls_token_id, tok.sep_token_id,
                        cfg.eval_fraction, cfg.max_eval_blocks, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 7919)
    special = torch.tensor(sorted(set(tok.all_special_ids)))
    nll, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for i in range(0, len(data.eval_blocks), cfg.per_device_batch_size):
            ids, labels = mask_tokens(data.batch(data.eval_blocks[i:i + cfg.per_device_batch_size]), special,
                                      tok.mask_token_id, len(tok), cfg.mlm_probability, gen)
            logits = model(input_ids=ids).logits
            sel = labels.ne(-100)
            nll += float(F.cross_entropy(logits[sel], labels[sel], reduction="sum"))
            correct += int(logits[sel].argmax(-1).eq(labels[sel]).sum())
            n += int(sel.sum())
    assert n > 0
    assert res.eval_loss == pytest.approx(nll / n, rel=1e-5)
    assert res.eval_accuracy == pytest.approx(correct / n)


def test_resume_after_crash_matches_uninterrupted_run(pt_config):
    from transformers import AutoModelForMaskedLM

    full = pretrain(pt_config("full"), log=lambda *_: None)

    class Crash(Exception):
        pass

    def crash_at_8(step, metrics):
        if step >= 8:
            raise Crash()

    with pytest.raises(Crash):
        pretrain(pt_config("crash"), on_log=crash_at_8, log=lambda *_: None)
    with open(pt_config("crash").output_dir + "/checkpoint/trainer_state.json") as f:
        state = json.load(f)
    assert state["step"] == 6
    resumed = pretrain(pt_config("crash"), log=lambda *_: None)
    assert resumed.resumed_from_step == 6 and resumed.steps == 12
    a = AutoModelForMaskedLM.from_pretrained(full.model_dir).state_dict()
    b = AutoModelForMaskedLM.from_pretrained(resumed.model_dir).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_learning_curve_segments_end_on_the_uninterrupted_model(pt_config):
    """Segments cut at 25% and 60% of the 12-step budget (steps 3 and 7: neither a checkpoint nor an evaluation
    step of the whole run), each resuming from the one before, give the uninterrupted run's final weights."""
    from transformers import AutoModelForMaskedLM

    full = pretrain(pt_config("full"), log=lambda *_: None)
    a = pretrain(pt_config("a", stop_at_fraction=0.25), log=lambda *_: None)
    b = pretrain(pt_config("b", stop_at_fraction=0.6, resume_from=pt_config("a").output_dir + "/checkpoint"),
                 log=lambda *_: None)
    end = pretrain(pt_config("end", resume_from=pt_config("b").output_dir + "/checkpoint"), log=lambda *_: None)
    assert (a.steps, b.steps, end.steps) == (3, 7, 12) and (a.start_step, b.start_step, end.start_step) == (0, 3, 7)
    assert b.tokens_seen == 7 * 16 * 64 and b.eval_loss == b.eval_loss        # evaluated at its stop
    want = AutoModelForMaskedLM.from_pretrained(full.model_dir).state_dict()
    got = AutoModelForMaskedLM.from_pretrained(end.model_dir).state_dict()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    mid = AutoModelForMaskedLM.from_pretrained(b.model_dir).state_dict()
    assert any(not torch.equal(mid[k], want[k]) for k in want)                # the segment's own model, not the end
    with pytest.raises(StageError, match="past this node's stop"):
        pretrain(pt_config("late", stop_at_fraction=0.1, resume_from=pt_config("b").output_dir + "/checkpoint"),
                 log=lambda *_: None)
    state = Path(pt_config("a").output_dir) / "checkpoint" / "trainer_state.json"
    state.write_text("{")
    with pytest.raises(StageError, match="must run again"):
        pretrain(pt_config("torn", resume_from=str(state.parent)), log=lambda *_: None)


def test_extra_tokens_lengthen_the_budget_by_whole_steps(pt_config):
    """scratch_budget: match adds the source's pretraining tokens: ceil(extra / (16 x 64)) more steps."""
    res = pretrain(pt_config("extra", max_steps=4, extra_tokens=2 * 16 * 64 + 1), log=lambda *_: None)
    assert res.steps == 4 + 3 and res.tokens_seen == 7 * 16 * 64


def test_a_damaged_checkpoint_is_found_and_the_last_good_one_resumed(pt_config):
    """Checkpoints are safetensors with a manifest of sizes and digests. A truncated newest checkpoint is
    named in the log and skipped for the previous one; with both damaged the run starts from step 0. Either
    way the final weights equal an uninterrupted run's bit for bit (batches and masks depend on (seed, step))."""
    from safetensors.torch import load_file

    full = pretrain(pt_config("full", checkpoint_every=3), log=lambda *_: None)
    reference = load_file(full.model_dir + "/model.safetensors")

    def crash_at_8(step, metrics):
        if step >= 8:
            raise RuntimeError("crash")

    for damaged, resumed_from in ((["checkpoint"], 3), (["checkpoint", "checkpoint.prev"], 0)):
        out = f"crash-{len(damaged)}"
        with pytest.raises(RuntimeError):
            pretrain(pt_config(out, checkpoint_every=3), on_log=crash_at_8, log=lambda *_: None)
        folder = Path(pt_config(out).output_dir)
        assert (folder / "checkpoint" / "model.safetensors").exists()        # weights as safetensors
        assert json.loads((folder / "checkpoint.prev" / "trainer_state.json").read_text())["step"] == 3
        for name in damaged:                                                 # a torn copy: half its bytes
            f = folder / name / "model.safetensors"
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        lines = []
        res = pretrain(pt_config(out, checkpoint_every=3), log=lines.append)
        assert res.resumed_from_step == resumed_from and res.steps == 12
        assert [ln for ln in lines if "damaged" in ln and "model.safetensors" in ln and "truncated" in ln]
        got = load_file(res.model_dir + "/model.safetensors")
        assert got.keys() == reference.keys() and all(torch.equal(got[k], reference[k]) for k in reference)


def test_bad_batch_and_tiny_corpus_are_refused(pt_config, tmp_path):
    with pytest.raises(ValueError, match="not a multiple of per_device_batch_size"):
        pretrain(pt_config("x", batch_size=12), log=lambda *_: None)
    (tmp_path / "small.txt").write_text("One tiny line.\n")
    with pytest.raises(StageError, match="fewer than two blocks"):
        pretrain(pt_config("y", corpus=CorpusConfig(files=[str(tmp_path / "small.txt")])), log=lambda *_: None)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(StageError, match="is empty"):
        pretrain(pt_config("z", corpus=CorpusConfig(files=[str(tmp_path / "empty.txt")])), log=lambda *_: None)
