"""Length-grouped fine-tuning batches: every example once per epoch, seeded, the same batches on a rerun or
resume, and little padding where random batches pad about half of every batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.common import LengthGroupedBatches, padding_fraction


def _glue_like_lengths(n: int, seed: int) -> np.ndarray:
    """Token counts shaped like SST-2's (a long right tail: most sentences short, some near max_length)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(mean=3.0, sigma=0.55, size=n).astype(int) + 2, 3, 128)


def test_every_example_is_in_exactly_one_batch_per_epoch():
    lengths = _glue_like_lengths(1003, seed=0)          # not a multiple of the batch size
    sampler = LengthGroupedBatches(lengths, batch_size=32, seed=7)
    for _ in range(3):                                   # three epochs, as a DataLoader iterates it
        batches = list(sampler)
        assert len(batches) == len(sampler) == 32        # ceil(1003 / 32)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1003))
        assert all(1 <= len(b) <= 32 for b in batches)
        assert sum(len(b) < 32 for b in batches) == 1    # one partial batch: the last of the last group


def test_batches_are_a_function_of_seed_and_epoch():
    lengths = _glue_like_lengths(500, seed=1)
    a, b = LengthGroupedBatches(lengths, 16, seed=3), LengthGroupedBatches(lengths, 16, seed=3)
    epochs_a = [list(a) for _ in range(3)]
    assert epochs_a == [list(b) for _ in range(3)]
    # a run resumed at epoch 2 (a fresh sampler) draws what the uninterrupted run drew in its third epoch
    assert LengthGroupedBatches(lengths, 16, seed=3).batches(2) == epochs_a[2]
    assert epochs_a[0] != epochs_a[1]                     # each epoch is shuffled anew
    assert list(LengthGroupedBatches(lengths, 16, seed=4)) != epochs_a[0]


def test_the_longest_example_is_in_the_first_batch():
    lengths = _glue_like_lengths(2000, seed=2)
    first = LengthGroupedBatches(lengths, 32, seed=0).batches(0)[0]
    assert lengths[first].max() == lengths.max()


def test_padding_fraction_by_hand():
    # batches [5, 3] and [2]: slots 2*5 + 1*2 = 12, tokens 10 -> 2/12 padding
    assert padding_fraction([5, 3, 2], [[0, 1], [2]]) == pytest.approx(2 / 12)


def test_grouped_batches_pad_little_and_random_ones_a_lot():
    lengths = _glue_like_lengths(8000, seed=5)
    grouped = LengthGroupedBatches(lengths, 32, seed=0).batches(0)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(lengths))
    random_batches = [order[i:i + 32].tolist() for i in range(0, len(order), 32)]
    assert padding_fraction(lengths, random_batches) > 0.35
    assert padding_fraction(lengths, grouped) <= 0.10


def test_a_dataloader_through_accelerate_draws_the_sampler_batches():
    """prepare() (one process) must keep the batch sampler: the batches the loop sees are the sampler's."""
    from accelerate import Accelerator

    lengths = _glue_like_lengths(300, seed=6)
    data = [torch.full((int(n),), i) for i, n in enumerate(lengths)]
    sampler = LengthGroupedBatches(lengths, 8, seed=1)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=lambda b: [int(x[0]) for x in b])
    loader = Accelerator(cpu=True).prepare(loader)
    expected = LengthGroupedBatches(lengths, 8, seed=1)
    for epoch in range(2):
        assert list(loader) == expected.batches(epoch)


def test_finetune_logs_low_padding_with_grouping_and_high_without(tmp_path, tiny_bert):
    from stages.finetune import FinetuneConfig, finetune

    rng = np.random.default_rng(0)
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    words = "the a dog cat runs sees good bad very big small house tree".split()
    for split, n in (("train", 400), ("dev", 40)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            k = int(np.clip(rng.lognormal(2.3, 0.7), 2, 60))
            rows.append(" ".join(rng.choice(words, size=k)) + f"\t{int(rng.integers(0, 2))}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    seen = {}
    for grouped in (True, False):
        cfg = FinetuneConfig(model=tiny_bert, task="sst2", data_dir=str(tmp_path / "glue"), output_dir=str(
            tmp_path / f"out-{grouped}"), epochs=1, batch_size=16, max_length=64, group_by_length=grouped,
            log_every=5, num_threads=1)
        logged = []
        res = finetune(cfg, on_log=lambda step, m: logged.append(m), log=lambda *_: None)
        seen[grouped] = res.padding_fraction
        assert any("train/padding_fraction" in m for m in logged)
    assert seen[True] <= 0.10 < 0.3 < seen[False]
