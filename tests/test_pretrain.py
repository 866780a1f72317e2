"""Continued MLM pretraining: masking statistics, packing without padding, exact resume, reloadable output."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stages.common import StageError
from stages.corpus import CorpusConfig
from stages.pretrain import PretrainConfig, mask_tokens, pretrain


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


@pytest.fixture()
def pt_config(tmp_path, tiny_bert, tiny_corpus):
    def make(out, **kw):
        base = dict(init_model=tiny_bert, corpus=CorpusConfig(files=[str(tiny_corpus)]), output_dir=str(tmp_path / out),
                    cache_dir=str(tmp_path / "cache"), batch_size=16, per_device_batch_size=8, block_size=64,
                    max_steps=12, learning_rate=1e-3, log_every=4, eval_every=4, checkpoint_every=6, num_threads=1)
        base.update(kw)
        return PretrainConfig(**base)
    return make


def test_pretrain_learns_packs_without_padding_and_reloads(pt_config):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    logs = []
    res = pretrain(pt_config("a", max_steps=30), on_log=lambda s, m: logs.append((s, m)), log=lambda *_: None)
    assert res.steps == 30 and res.padding_fraction == 0.0
    assert res.tokens_seen == 30 * 16 * 64
    evals = [m["eval/loss"] for _, m in logs if "eval/loss" in m]
    assert evals[-1] < evals[0] - 0.3  # it learns
    assert np.isclose(res.eval_perplexity, np.exp(res.eval_loss))
    assert [s for s, _ in logs] == [4, 8, 12, 16, 20, 24, 28, 30]
    model = AutoModelForMaskedLM.from_pretrained(res.model_dir)
    tok = AutoTokenizer.from_pretrained(res.model_dir)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)


def test_held_out_loss_and_accuracy_match_a_plain_masked_lm_forward(pt_config):
    """The stage's sparse evaluation against the full BertForMaskedLM forward on the same held-out masks."""
    import glob

    import torch.nn.functional as F
    from transformers import AutoModelForMaskedLM

    from stages.pretrain import PackedBlocks
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


def test_bad_batch_and_tiny_corpus_are_refused(pt_config, tmp_path):
    with pytest.raises(ValueError, match="not a multiple of per_device_batch_size"):
        pretrain(pt_config("x", batch_size=12), log=lambda *_: None)
    (tmp_path / "small.txt").write_text("One tiny line.\n")
    with pytest.raises(StageError, match="fewer than two blocks"):
        pretrain(pt_config("y", corpus=CorpusConfig(files=[str(tmp_path / "small.txt")])), log=lambda *_: None)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(StageError, match="is empty"):
        pretrain(pt_config("z", corpus=CorpusConfig(files=[str(tmp_path / "empty.txt")])), log=lambda *_: None)
