"""Re-attaching the source's embeddings to a trained body (forgetting.reattach), checked row by row."""
from __future__ import annotations

import pytest
import torch

from stages.common import StageError
from stages.reattach import ReattachConfig, reattach
from tests.conftest import make_tiny_bert, write_corpus

OTHER_WORDS = ("la le une grand petit rouge vieux chien chat oiseau maison arbre voit aime mange trouve vite "
               "lentement tres bon mauvais et mais pas avec sous sur").split()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A "trained body": same architecture as tiny_bert, other weights (seed 1) and another, smaller vocabulary."""
    d = tmp_path_factory.mktemp("trained")
    corpus = write_corpus(d / "other.txt", 2000, seed=5, words=OTHER_WORDS)
    return make_tiny_bert(d / "model", corpus, vocab_size=120, seed=1)


def _load(path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    return AutoModelForMaskedLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_reattached_embeddings_are_the_sources_and_the_body_is_the_trained_one(tmp_path, tiny_bert, trained):
    res = reattach(ReattachConfig(trained=trained, source=tiny_bert, output_dir=str(tmp_path / "out")), log=print)
    out, out_tok = _load(res.model_dir)
    src, src_tok = _load(tiny_bert)
    body, body_tok = _load(trained)
    assert len(body_tok) != len(src_tok)   # the test would not see a wrong matrix size otherwise
    assert res.vocab_size == len(src_tok) and res.trained_vocab_size == len(body_tok)
    # The vocabulary is the source's, token for token.
    assert out_tok.get_vocab() == src_tok.get_vocab()
    # Every embedding row is the source's row of the same id, and the decoder (tied) and its bias follow.
    emb, src_emb = out.get_input_embeddings().weight, src.get_input_embeddings().weight
    assert emb.shape == src_emb.shape
    for i in range(emb.shape[0]):
        assert torch.equal(emb[i], src_emb[i]), i
    assert out.get_output_embeddings().weight.data_ptr() == emb.data_ptr()
    assert torch.equal(out.get_output_embeddings().bias, src.get_output_embeddings().bias)
    # Every other tensor (layers, positions, token types, embedding LayerNorm, MLM transform) is the trained body's.
    vocab_names = {"bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight",
                   "cls.predictions.bias", "cls.predictions.decoder.bias"}
    got, want, source = out.state_dict(), body.state_dict(), src.state_dict()
    others = [k for k in got if k not in vocab_names]
    assert len(others) > 20 and "bert.embeddings.position_embeddings.weight" in others
    for k in others:
        assert torch.equal(got[k], want[k]), k
        if got[k].numel() > 1 and "LayerNorm" not in k and not k.endswith("bias"):
            assert not torch.equal(got[k], source[k]), k   # the two models differ: the check means something
    assert out.config.vocab_size == len(src_tok) and out.config.pad_token_id == src_tok.pad_token_id
    # The source's tokenizer reads source text into ids the re-attached model embeds without error.
    ids = out_tok("the big dog sees a cat", return_tensors="pt")
    assert out(**ids).logits.shape[-1] == len(src_tok)


def test_reattach_refuses_a_body_of_another_width(tmp_path, tiny_bert, tiny_corpus):
    wide = make_tiny_bert(tmp_path / "wide", tiny_corpus, hidden=48)
    with pytest.raises(StageError, match="hidden sizes differ"):
        reattach(ReattachConfig(trained=wide, source=tiny_bert, output_dir=str(tmp_path / "out")), log=print)
    assert not (tmp_path / "out").exists()
