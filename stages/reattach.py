"""Re-attach the source model's own embeddings to a body pretrained on English (issue 14, item 4).

The paper's forgetting result (Figure 3) compares a transferred model with the source model on source-language
tasks, but the transferred model reads the source language through English embeddings: a drop could be the body
forgetting the language or only the embeddings being replaced. This stage takes the transferred model after
continued pretraining and puts back the source's vocabulary (its tokenizer, every token) and its word-embedding
matrix (with the MLM decoder tied to it and the source's decoder bias); everything else, the Transformer body
and the position / token-type embeddings and their LayerNorm, is the trained model's. Fine-tuned on the source
tasks, it separates what the body forgot ([lang] minus re-attached) from what left with the embeddings
(re-attached minus transferred).

Position and token-type embeddings stay the trained ones on purpose: they hold no vocabulary and were trained
together with the body, so putting the source's back would undo part of what the body learned, not what the
vocabulary swap took away.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from stages.common import StageConfig, StageError, quiet_transformers, resolve_pretrained, setting, write_json
from stages.tokenizer import load_tokenizer


class ReattachConfig(StageConfig):
    trained: str = setting(doc="the transferred model after continued pretraining (a folder)")
    source: str = setting(doc="the source model whose vocabulary and word embeddings go back (folder or hub id)")
    output_dir: str = setting(doc="where the re-attached model is written", hashed=False)


@dataclass
class ReattachResult:
    model_dir: str
    vocab_size: int            # the source's: rows of the re-attached embedding matrix
    trained_vocab_size: int    # the rows it replaced
    from_source: list[str]     # state-dict names taken from the source
    from_trained: int          # how many tensors are the trained model's
    seconds: float


def _load(path: str, what: str):
    from transformers import AutoModelForMaskedLM

    try:
        return AutoModelForMaskedLM.from_pretrained(resolve_pretrained(path))
    except (OSError, ValueError) as e:
        raise StageError(f"cannot load the {what} model {path!r} as a masked-LM BERT: {e}") from e


def _vocab_tensors(model) -> dict[str, torch.Tensor]:
    """State-dict names of the vocabulary-sized tensors (word embeddings, a decoder not tied to them, the decoder
    bias), found through the modules transformers itself calls the input and output embeddings."""
    ids = {id(model.get_input_embeddings().weight): "input"}
    head = model.get_output_embeddings()
    if head is not None:
        ids.setdefault(id(head.weight), "output")
        if head.bias is not None:
            ids[id(head.bias)] = "bias"
    return {name: p for name, p in model.named_parameters(remove_duplicate=False) if id(p) in ids}


def reattach(cfg: ReattachConfig, log=print) -> ReattachResult:
    quiet_transformers()
    t0 = time.time()
    trained, source = _load(cfg.trained, "trained"), _load(cfg.source, "source")
    src_tok = load_tokenizer(cfg.source)
    if trained.config.model_type != source.config.model_type:
        raise StageError(f"cannot re-attach {cfg.source}'s embeddings to {cfg.trained}: the models are of different "
                         f"types ({source.config.model_type} vs {trained.config.model_type}); re-attachment is for "
                         "a model transferred from that source")
    src_emb = source.get_input_embeddings().weight
    if src_emb.shape[1] != trained.get_input_embeddings().weight.shape[1]:
        raise StageError(f"cannot re-attach {cfg.source}'s embeddings to {cfg.trained}: hidden sizes differ "
                         f"({src_emb.shape[1]} vs {trained.get_input_embeddings().weight.shape[1]})")
    n_trained = trained.get_input_embeddings().weight.shape[0]
    trained.resize_token_embeddings(src_emb.shape[0], mean_resizing=False)
    src_vocab, new_vocab = _vocab_tensors(source), _vocab_tensors(trained)
    taken = []
    with torch.no_grad():
        for name, p in new_vocab.items():
            if name in src_vocab and src_vocab[name].shape == p.shape:
                p.copy_(src_vocab[name])
                taken.append(name)
            elif p.shape[0] == src_emb.shape[0] and p.dim() == 1:
                p.zero_()   # a decoder bias the source (a headless BertModel) has none of: BERT's own init
                taken.append(name)
    trained.config.vocab_size = src_emb.shape[0]
    trained.config.pad_token_id = src_tok.pad_token_id
    trained.tie_weights()
    out = Path(cfg.output_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trained.save_pretrained(str(tmp))
    src_tok.save_pretrained(str(tmp))
    names = set(trained.state_dict())
    result = ReattachResult(str(out), int(src_emb.shape[0]), int(n_trained), sorted(taken),
                            len(names - set(taken)), time.time() - t0)
    write_json(tmp / "reattach_report.json", {**result.__dict__, "model_dir": None, "trained": cfg.trained,
                                              "source": cfg.source})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"[reattach] {cfg.source}'s vocabulary ({src_emb.shape[0]} tokens) and word embeddings on the body of "
        f"{cfg.trained} ({n_trained} rows replaced)")
    return result
