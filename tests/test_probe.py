"""Structural probe: CoNLL-U reading, feature extraction, the H&M metrics against scipy, and a probe that learns."""
from __future__ import annotations

import dataclasses
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.stats import spearmanr

import stages.probe as probe_stage
from stages.common import StageError
from stages.features import (FeaturesConfig, TreeSentence, extract_features, load_split_features, read_conllu,
                             write_features_dir)
from stages.probe import (ProbeConfig, ProbeSettings, _evaluate, _load, distance_loss, dspr, dspr_by_length,
                          mst_edges, predicted_sq_distances, train_probe, tree_distances, uuas, uuas_counts)


# --- tree distances ------------------------------------------------------------------------------------
def test_tree_distances_on_a_hand_tree():
    # 1 <- 2 -> 3 (root 2), 4 hangs on 3, 5 on 1:  5 - 1 - 2 - 3 - 4
    heads = [2, 0, 2, 3, 1]
    d = tree_distances(heads)
    assert d.shape == (5, 5) and (d == d.T).all() and (np.diag(d) == 0).all()
    assert d[0, 1] == 1 and d[1, 3] == 2 and d[4, 3] == 4 and d[4, 2] == 3 and d[0, 2] == 2
    # Every entry against Floyd-Warshall on the edge list (not BFS), for random trees too.
    rng = random.Random(0)
    for h in [heads] + [_random_tree(rng, n) for n in (1, 2, 7, 12)]:
        assert (tree_distances(h) == _floyd_warshall(h)).all(), h
    with pytest.raises(ValueError, match="connect"):
        tree_distances([0, 0, 1])  # two roots: a forest has no path between its trees


def _floyd_warshall(heads):
    n = len(heads)
    d = np.full((n, n), np.inf)
    np.fill_diagonal(d, 0)
    for i, h in enumerate(heads):
        if h:
            d[i, h - 1] = d[h - 1, i] = 1
    for k in range(n):
        d = np.minimum(d, d[:, [k]] + d[[k], :])
    return d


# --- UUAS against scipy's minimum spanning tree -----------------------------------------------------------
def _scipy_mst(dist: np.ndarray) -> set[tuple[int, int]]:
    m = minimum_spanning_tree(np.triu(dist, k=1)).tocoo()  # zeros count as "no edge": off-diagonals are > 0
    return {tuple(sorted((int(i), int(j)))) for i, j in zip(m.row, m.col)}


def _gold_edges(heads, keep):
    return {tuple(sorted((i, h - 1))) for i, h in enumerate(heads) if h and keep[i] and keep[h - 1]}


def test_uuas_matches_an_independent_scipy_computation():
    rng = np.random.default_rng(0)
    heads_list = [[2, 0, 2, 3, 1], [0, 1, 1, 3, 3, 3, 2], [3, 3, 0, 3]]
    preds, correct, total = [], 0, 0
    for heads in heads_list:
        n = len(heads)
        p = rng.uniform(1, 10, size=(n, n))
        p = p + p.T  # symmetric and distinct: the MST is unique, so any algorithm must agree
        np.fill_diagonal(p, 0)
        preds.append(p)
        assert set(mst_edges(p)) == _scipy_mst(p)
        gold = _gold_edges(heads, [True] * n)
        correct += len(gold & _scipy_mst(p))
        total += len(gold)
    assert uuas(preds, heads_list) == pytest.approx(correct / total)
    assert 0 < correct < total  # the random matrices get some edges right and some wrong: a real check


def test_uuas_with_ties_one_word_sentences_and_punctuation():
    heads = [2, 0, 2, 3, 2]
    gold_dist = tree_distances(heads).astype(float)  # every tree edge ties at 1, yet the MST is the tree
    assert uuas([gold_dist], [heads]) == 1.0
    # All distances tied: every spanning tree is minimal. Ours must be one (n-1 edges, connected, same weight).
    flat = np.ones((5, 5)) - np.eye(5)
    edges = mst_edges(flat)
    assert len(edges) == 4 and len({v for e in edges for v in e}) == 5
    assert sum(flat[i, j] for i, j in edges) == minimum_spanning_tree(np.triu(flat, 1)).sum()
    # A one-word sentence has no edges: it neither counts as correct nor as gold, and makes no NaN.
    assert uuas_counts(np.zeros((1, 1)), [0]) == (0, 0)
    assert uuas([gold_dist, np.zeros((1, 1))], [heads, [0]]) == 1.0
    assert uuas([np.zeros((1, 1))], [[0]]) == 0.0
    # Punctuation (word 5, a leaf on 2) excluded: the MST runs over words 1-4 only, gold edges among them.
    rng = np.random.default_rng(3)
    p = rng.uniform(1, 10, size=(5, 5))
    p = p + p.T
    np.fill_diagonal(p, 0)
    keep = [True, True, True, True, False]
    kept = [0, 1, 2, 3]
    sub_edges = {tuple(sorted((kept[a], kept[b]))) for a, b in _scipy_mst(p[np.ix_(kept, kept)])}
    gold = _gold_edges(heads, keep)
    assert len(gold) == 3  # the punctuation edge (5, 2) is gone
    assert uuas_counts(p, heads, keep) == (len(gold & sub_edges), 3)
    # Making the punctuation word central would change the full-sentence MST but not the kept-word score.
    p2 = p.copy()
    p2[4, :4] = p2[:4, 4] = 0.01
    assert uuas_counts(p2, heads, keep) == uuas_counts(p, heads, keep)
    assert uuas_counts(p2, heads)[1] == 4  # with punctuation included, its edge is gold again


def _spanning_trees(n):
    """Every spanning tree of the complete graph on n vertices, by brute force over (n-1)-edge subsets."""
    for edges in itertools.combinations(itertools.combinations(range(n), 2), n - 1):
        component = list(range(n))  # n - 1 edges that never close a cycle connect all n vertices
        for a, b in edges:
            if component[a] == component[b]:
                break
            old = component[a]
            component = [component[b] if c == old else c for c in component]
        else:
            yield set(edges)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_mst_against_every_spanning_tree_of_a_tiny_graph(n):
    assert sum(1 for _ in _spanning_trees(n)) == n ** (n - 2)  # Cayley: the enumeration is complete
    rng = np.random.default_rng(n)
    for trial in range(20):
        # small integer weights: many ties; then distinct weights: one minimum tree
        w = rng.integers(1, 4, size=(n, n)).astype(float) if trial % 2 else rng.permutation(n * n).reshape(n, n) + 1.0
        w = np.triu(w, 1) + np.triu(w, 1).T
        weight = {e: w[e] for e in itertools.combinations(range(n), 2)}
        trees = list(_spanning_trees(n))
        best = min(sum(weight[e] for e in t) for t in trees)
        minimal = [t for t in trees if sum(weight[e] for e in t) == best]
        got = set(mst_edges(w))
        assert got in minimal, (w, got)  # a spanning tree (right edges, no cycle) of minimum weight
        if trial % 2 == 0:
            assert len(minimal) == 1


def test_uuas_details_count_edges_and_sentences_by_hand():
    # Sentence 1: the chain 0-1-2-3 predicted (distances |i - j|), gold tree 0<-1->2, 3 on 1: 2 of 3 right.
    pred1 = np.abs(np.subtract.outer(np.arange(4), np.arange(4))).astype(float)
    heads1 = [2, 0, 2, 2]            # gold edges (0,1), (1,2), (1,3); predicted (0,1), (1,2), (2,3)
    # Sentence 2: two words, always right. Sentence 3: one word, no edge. Sentence 4: only one kept word.
    pred2, heads2 = np.array([[0., 5.], [5., 0.]]), [0, 1]
    preds = [pred1, pred2, np.zeros((1, 1)), pred2]
    heads = [heads1, heads2, [0], [0, 1]]
    keep = [None, None, None, [True, False]]
    assert uuas_counts(pred1, heads1) == (2, 3)
    got = uuas(preds, heads, keep, details=True)
    assert got == (3 / 4, 3, 4, 2, 0) and got.uuas == uuas(preds, heads, keep) == 0.75
    assert (got.correct, got.gold_edges, got.sentences, got.gold_forests) == (3, 4, 2, 0)


def test_uuas_gold_edges_equal_hewitt_mannings_gold_mst_when_punctuation_is_a_leaf():
    """H&M (reporter.py, prims_matrix_to_edges) take the gold edges as the minimum spanning tree of the gold
    distances over the non-punctuation words; we take the tree's edges between two kept words. With every
    dropped word a leaf the two are the same set; with a dropped word inside the tree they differ, and
    gold_forests counts that sentence."""
    rng = random.Random(4)
    for n in (3, 6, 9, 14):
        heads = _random_tree(rng, n)
        leaves = [i for i in range(n) if (i + 1) not in heads]
        keep = [i not in leaves[:2] for i in range(n)]   # drop up to two leaves, as UD attaches punctuation
        kept = [i for i in range(n) if keep[i]]
        gold = _floyd_warshall(heads)
        hm_gold = {tuple(sorted((kept[a], kept[b]))) for a, b in _scipy_mst(gold[np.ix_(kept, kept)])}
        assert _gold_edges(heads, keep) == hm_gold
        assert uuas([gold], [heads], [keep], details=True) == (1.0, len(kept) - 1, len(kept) - 1, 1, 0)
    # Word 3 (dropped) has word 4 as its dependent: 0 <- 1 -> 2 -> 3 -> 4. Gold edges among kept words:
    # (0,1), (1,2) only; H&M's gold MST over {0, 1, 2, 4} would add (2,4), two edges apart in the tree.
    heads = [2, 0, 2, 3, 4]
    keep = [True, True, True, False, True]
    pred = tree_distances(heads).astype(float)
    assert uuas_counts(pred, heads, keep) == (2, 2)
    assert uuas([pred], [heads], [keep], details=True).gold_forests == 1


# --- DSpr against scipy.stats.spearmanr ----------------------------------------------------------------------
def test_dspr_by_hand_with_ties_and_a_length_out_of_range():
    rng = np.random.default_rng(1)
    sents = [[2, 0, 2, 3, 3], [0, 1, 2, 2, 4], [2, 0, 2]]  # lengths 5, 5 and 3 (outside [5, 50])
    golds = [tree_distances(h).astype(float) for h in sents]
    preds = []
    for g in golds:
        p = g + rng.normal(0, 0.8, size=g.shape)
        preds.append((p + p.T) / 2)
    preds[0][0, 3] = preds[0][0, 4] = preds[0][3, 0] = preds[0][4, 0] = 2.0  # ties inside a predicted row too

    def by_hand(p, g):
        return [spearmanr(p[i], g[i]).statistic for i in range(len(g))]

    length5 = np.mean(by_hand(preds[0], golds[0]) + by_hand(preds[1], golds[1]))  # words pooled per length
    assert dspr(preds, golds, min_words=5, max_words=50) == pytest.approx(length5)
    length3 = np.mean(by_hand(preds[2], golds[2]))
    assert dspr(preds, golds, min_words=3, max_words=50) == pytest.approx((length5 + length3) / 2)
    details = dspr(preds, golds, min_words=4, max_words=6, details=True)
    assert details.dspr == pytest.approx(length5) and details.lengths_used == (5,)
    assert details.by_length == pytest.approx({3: length3, 5: length5})  # every length, in range or not
    assert details.by_length == pytest.approx(dspr_by_length(preds, golds))
    # The `lengths` argument decides the bucket: calling sentence 3 a 5-word sentence pools it with the others.
    pooled = np.mean(by_hand(preds[0], golds[0]) + by_hand(preds[1], golds[1]) + by_hand(preds[2], golds[2]))
    assert dspr(preds, golds, lengths=[5, 5, 5]) == pytest.approx(pooled)
    # Nothing in range, a one-word sentence, a constant predicted row: numbers, never NaN.
    assert dspr([preds[2]], [golds[2]]) == 0.0
    assert dspr([np.zeros((1, 1))], [np.zeros((1, 1))], min_words=1) == 0.0
    flat = dspr([np.ones((5, 5))], [golds[0]])
    assert flat == 0.0 and not np.isnan(flat)


# --- the stage's own evaluation on a hand example -------------------------------------------------------------
def test_the_stages_evaluation_helper_on_a_hand_example(tmp_path):
    """stages.probe._evaluate (what train_probe reports) on three sentences whose answer is worked out by hand.

    Each word's vector is (position on a line, noise); the probe B = [[1], [0]] keeps the position, so the
    predicted squared distance of words i and j is (a_i - a_j)^2 and the minimum spanning tree joins
    neighbours on the line.
    """
    # A: positions 0 1 2 3 4 and a PUNCT word at 2.4; gold tree: 1 is the root with children 0, 2, 4, 5; 3 hangs on 2.
    #    Excluding punctuation, the MST is the chain (0,1) (1,2) (2,3) (3,4); gold (0,1) (1,2) (2,3) (1,4): 3 of 4.
    #    Including it, the MST over 0 1 2 2.4 3 4 is (0,1) (1,2) (2,5) (5,3) (3,4); gold adds (1,5): 2 of 5.
    # B: positions 10 11 15, gold chain 0 <- 1 -> 2: the MST (0,1) (1,2) is right, 2 of 2.
    # C: one word, no edge: not a UUAS sentence, and no DSpr row.
    pos = [[0, 1, 2, 3, 4, 2.4], [10, 11, 15], [7]]
    sents = [TreeSentence(tuple(f"w{i}" for i in range(6)), (2, 0, 2, 3, 2, 2), ("X",) * 5 + ("PUNCT",), ("dep",) * 6),
             TreeSentence(("a", "b", "c"), (2, 0, 2), ("X",) * 3, ("dep",) * 3),
             TreeSentence(("z",), (0,), ("X",), ("root",))]
    noise = np.random.default_rng(0).normal(0, 30, size=10)
    vectors = np.stack([np.concatenate(pos), noise], axis=1)
    feats = write_features_dir(tmp_path / "f", 2, {"test": (sents, {0: vectors})})
    split = _load(str(feats), "test", 0, torch.device("cpu"))
    proj = torch.tensor([[1.0], [0.0]])
    # batch 2: A and B share a batch (B padded to 6 words), C is a batch of its own
    cfg = ProbeConfig(features_dir=str(feats), layer=0, output_dir=str(tmp_path / "o"), batch_size=2,
                      min_words=3, max_words=6)

    # Gold distances written out by hand (not tree_distances); rows/columns 0-4 of A are the non-punctuation words.
    gold_a = np.array([[0, 1, 2, 3, 2, 2], [1, 0, 1, 2, 1, 1], [2, 1, 0, 1, 2, 2], [3, 2, 1, 0, 3, 3],
                       [2, 1, 2, 3, 0, 2], [2, 1, 2, 3, 2, 0]], dtype=float)
    gold_b = np.array([[0, 1, 2], [1, 0, 1], [2, 1, 0]], dtype=float)
    a16 = [np.asarray(p, dtype=np.float16).astype(float) for p in pos]  # features are stored as float16
    pred_a, pred_b = (np.subtract.outer(a, a) ** 2 for a in a16[:2])

    def mean_rho(p, g):
        return [spearmanr(p[i], g[i]).statistic for i in range(len(g))]

    kept = [0, 1, 2, 3, 4]
    # H&M's DSpr: every word, punctuation included; dspr_nopunct: the rows and columns of words 0-4 only.
    # Both group A under its full length, 6.
    length6 = np.mean(mean_rho(pred_a, gold_a))
    length6_nopunct = np.mean(mean_rho(pred_a[np.ix_(kept, kept)], gold_a[np.ix_(kept, kept)]))
    length3 = np.mean(mean_rho(pred_b, gold_b))
    assert abs(length6 - length6_nopunct) > 0.02  # the example tells the two DSpr variants apart
    got = _evaluate(split, proj, cfg, torch.device("cpu"))
    assert got["uuas"] == pytest.approx(5 / 6)
    assert (got["uuas_edges"], got["uuas_sentences"], got["dspr_lengths"]) == (6, 2, 2)
    assert got["dspr_by_length"] == pytest.approx({3: length3, 6: length6})
    assert got["dspr"] == pytest.approx((length3 + length6) / 2)
    assert got["dspr_nopunct_by_length"] == pytest.approx({3: length3, 6: length6_nopunct})
    assert got["dspr_nopunct"] == pytest.approx((length3 + length6_nopunct) / 2)
    # the example is not degenerate: every mean is informative
    assert 0.4 < length6 < 1 and 0.5 < length6_nopunct < 1 and 0.5 < length3 < 1
    # UUAS over every word (the punctuation edge (1,5) is gold again): 2 of 5 in A and 2 of 2 in B.
    assert got["uuas_withpunct"] == pytest.approx(4 / 7)

    narrow = _evaluate(split, proj, cfg.replace(min_words=4), torch.device("cpu"))
    assert narrow["dspr"] == pytest.approx(length6) and narrow["dspr_lengths"] == 1
    assert narrow["dspr_nopunct"] == pytest.approx(length6_nopunct) and narrow["dspr_nopunct_lengths"] == 1


def test_hewitt_manning_dspr_keeps_punctuation_and_dspr_nopunct_drops_it(tmp_path):
    """A 5-word sentence whose last word is punctuation, probed on a line (prediction (a_i - a_j)^2).

    Gold tree: the chain 0 <- 1 <- 2 <- 3 (root), with the period 4 on 3. The four words sit at 0 1 2 3
    and the period at 0.5, far from its head. Without the period every predicted row ranks like its gold
    row: dspr_nopunct = 1 exactly. H&M's DSpr keeps the period's row and column, which rank wrongly, so it
    is lower; it is recomputed here with scipy.stats.spearmanr, row by row over all five words, and by
    H&M's length (5 words, in the 5-50 window; without the period the sentence would have 4).
    UUAS leaves the period out: the chain is found, 3 of 3.
    """
    positions = np.array([0.0, 1.0, 2.0, 3.0, 0.5])
    heads = (2, 3, 4, 0, 4)
    sentence = TreeSentence(("w0", "w1", "w2", "w3", "."), heads, ("X",) * 4 + ("PUNCT",), ("dep",) * 5)
    gold = np.array([[0, 1, 2, 3, 4], [1, 0, 1, 2, 3], [2, 1, 0, 1, 2], [3, 2, 1, 0, 1], [4, 3, 2, 1, 0]], float)
    pred = np.subtract.outer(positions, positions) ** 2
    hm = np.mean([spearmanr(pred[i], gold[i]).statistic for i in range(5)])
    # By hand, from average ranks (pred row | gold row): row 0 (1 3 4 5 2 | 1 2 3 4 5): 1 - 6*12/120 = 0.4;
    # row 1 (3.5 1 3.5 5 2 | 2.5 1 2.5 4 5): 3.5/9.5; row 2 (5 2.5 1 2.5 4 | 4.5 2.5 1 2.5 4.5): 9/sqrt(9.5*9);
    # row 3 (5 3 2 1 4 | 5 4 2.5 1 2.5): 8/sqrt(10*9.5); the period (2.5 2.5 4 5 1 | 5 4 3 2 1): 0.5/sqrt(9.5*10).
    by_hand = (0.4 + 3.5 / 9.5 + 9 / np.sqrt(85.5) + 8 / np.sqrt(95) + 0.5 / np.sqrt(95)) / 5
    assert hm == pytest.approx(by_hand) and hm < 0.6
    assert dspr([pred], [gold]) == pytest.approx(hm)
    assert dspr([pred[:4, :4]], [gold[:4, :4]], lengths=[5]) == pytest.approx(1.0)
    assert dspr([pred[:4, :4]], [gold[:4, :4]]) == 0.0  # by its own size, 4, the sentence is outside 5-50

    vectors = np.stack([positions, np.zeros(5)], axis=1)
    feats = write_features_dir(tmp_path / "f", 2, {"test": ([sentence], {0: vectors})})
    split = _load(str(feats), "test", 0, torch.device("cpu"))
    cfg = ProbeConfig(features_dir=str(feats), layer=0, output_dir=str(tmp_path / "o"))
    got = _evaluate(split, torch.tensor([[1.0], [0.0]]), cfg, torch.device("cpu"))
    assert got["dspr"] == pytest.approx(hm) and got["dspr_nopunct"] == pytest.approx(1.0)
    assert got["uuas"] == 1.0 and got["uuas_edges"] == 3
    assert got["uuas_withpunct"] == pytest.approx(2 / 4)  # MST with the period: (0,4) (4,1) (1,2) (2,3)


def test_there_is_no_punctuation_setting_to_change_what_a_metric_name_means():
    # Each treatment of punctuation is its own metric (uuas / uuas_withpunct, dspr / dspr_nopunct).
    assert "punctuation" not in ProbeSettings.model_fields
    with pytest.raises(ValueError, match="punctuation"):
        ProbeSettings(punctuation="include")


# --- CoNLL-U -------------------------------------------------------------------------------------------------
def _conllu_line(i, form, upos, head, deprel="dep"):
    return "\t".join([str(i), form, form.lower(), upos, "_", "_", str(head), deprel, "_", "_"])


def test_read_conllu_handles_multiword_tokens_empty_nodes_nonprojective_and_comments(tmp_path):
    text = "\n".join([
        "# sent_id = 1", "# text = The dog's bone.",
        _conllu_line(1, "The", "DET", 2),
        "2-3\tdog's\t_\t_\t_\t_\t_\t_\t_\t_",
        _conllu_line(2, "dog", "NOUN", 4), _conllu_line(3, "'s", "PART", 2),
        _conllu_line(4, "bone", "NOUN", 0, "root"),
        "4.1\tgone\tgo\tVERB\t_\t_\t_\t_\t4:conj\t_",
        _conllu_line(5, ".", "PUNCT", 4, "punct"),
        "",
        "# non-projective: arcs 1->3 and 2->4 cross",
        _conllu_line(1, "A", "DET", 3), _conllu_line(2, "b", "X", 4), _conllu_line(3, "c", "NOUN", 0),
        _conllu_line(4, "d", "X", 3),
        "",
    ]) + "\n"
    path = tmp_path / "small.conllu"
    path.write_text(text)
    sentences, skipped = read_conllu(path)
    assert [s.words for s in sentences] == [("The", "dog", "'s", "bone", "."), ("A", "b", "c", "d")]
    assert sentences[0].heads == (2, 4, 2, 0, 4) and sentences[0].upos[-1] == "PUNCT"
    assert sentences[0].deprels[3] == "root"
    assert sentences[1].heads == (3, 4, 0, 3)
    assert skipped == {"multiword_token_lines": 1, "empty_node_lines": 1}
    assert tree_distances(sentences[1].heads)[0, 1] == 3  # A - c - d - b


@pytest.mark.parametrize("bad_line, message", [
    ("3\tbone\tbone\tNOUN\t_\t_\t0\troot\t_", "10 tab-separated columns"),
    ("3\tbone\tbone\tNOUN\t_\t_\tx\troot\t_\t_", "must be integers"),
])
def test_read_conllu_names_file_and_line_of_a_malformed_line(tmp_path, bad_line, message):
    path = tmp_path / "bad.conllu"
    path.write_text("# c\n" + _conllu_line(1, "The", "DET", 2) + "\n" + _conllu_line(2, "dog", "NOUN", 3)
                    + "\n" + bad_line + "\n\n")
    with pytest.raises(StageError, match=message) as err:
        read_conllu(path)
    assert "bad.conllu" in str(err.value) and "line 4" in str(err.value)


def test_read_conllu_refuses_a_sentence_with_two_roots(tmp_path):
    path = tmp_path / "roots.conllu"
    path.write_text(_conllu_line(1, "a", "X", 0) + "\n" + _conllu_line(2, "b", "X", 0) + "\n\n")
    with pytest.raises(StageError, match="2 roots"):
        read_conllu(path)


# --- feature extraction on a real tiny BERT --------------------------------------------------------------
def _write_treebank(path: Path, sentences: list[list[str]], seed: int) -> Path:
    rng = random.Random(seed)
    blocks = []
    for words in sentences:
        root = rng.randrange(len(words))
        lines = []
        for i, w in enumerate(words):
            head = 0 if i == root else (root + 1 if rng.random() < 0.5 or i < 1 else rng.randrange(1, i + 1))
            if head == i + 1:
                head = root + 1
            lines.append(_conllu_line(i + 1, w, "PUNCT" if w == "." else "X", head))
        blocks.append("\n".join(lines) + "\n\n")
    path.write_text("".join(blocks))
    read_conllu(path)  # the helper must itself write valid trees
    return path


def test_extract_features_mean_pools_subwords_as_the_model_computes_them(tiny_bert, tmp_path):
    from transformers import AutoModel

    from stages.tokenizer import load_tokenizer

    short = [["The", "big", "dog", "runs", "."], ["A", "redbirdhouses", "sees", "the", "cat", "."],
             ["Old", "cars", "and", "new", "trees", "."]]
    long_one = ["the", "small", "red", "bird", "sees", "a", "big", "old", "house", "near", "the", "tree",
                "and", "the", "cat", "runs", "."]
    train = _write_treebank(tmp_path / "train.conllu", short + [long_one], seed=0)
    dev = _write_treebank(tmp_path / "dev.conllu", short[:2], seed=1)
    out = tmp_path / "feats"
    logs = []
    res = extract_features(FeaturesConfig(model=tiny_bert, output_dir=str(out),
                                          splits={"train": str(train), "dev": str(dev)},
                                          layers=[0, 2], max_length=14, batch_size=2, num_threads=1), log=logs.append)
    assert res.layers == (0, 2) and res.hidden_size == 32
    assert res.sentences == {"train": 3, "dev": 2} and res.words == {"train": 17, "dev": 11}
    assert res.skipped["train"]["sentences_too_long"] == 1 and res.skipped["dev"]["sentences_too_long"] == 0
    assert any("longer than 14 tokens" in line for line in logs) and any("sentences/s" in line for line in logs)
    assert not (tmp_path / "feats.tmp").exists()
    meta = json.loads((out / "features.json").read_text())
    assert meta["layers"] == [0, 2] and meta["words"]["train"] == 17

    tok = load_tokenizer(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert, output_hidden_states=True).eval()
    for layer in (0, 2):
        vectors, sents = load_split_features(out, "train", layer)
        assert vectors.shape == (17, 32) and vectors.dtype == np.float16
        assert [s.offset for s in sents] == [0, 5, 11] and [s.words for s in sents] == [tuple(w) for w in short]
        for s in sents:
            enc = tok(" ".join(s.words), return_tensors="pt")
            word_ids = enc.word_ids()  # the tokenizer's own word index: independent of the offset matching
            if "redbirdhouses" in s.words:
                assert word_ids.count(s.words.index("redbirdhouses")) > 1  # the multi-subword case is exercised
            with torch.no_grad():
                h = model(**enc).hidden_states[layer][0]
            for w in range(len(s)):
                rows = [t for t, wid in enumerate(word_ids) if wid == w]
                expected = h[rows].mean(0).numpy()
                np.testing.assert_allclose(vectors[s.offset + w].astype(np.float32), expected, atol=1e-2, rtol=1e-2)

    with pytest.raises(StageError, match="probe.layers"):
        extract_features(FeaturesConfig(model=tiny_bert, output_dir=str(tmp_path / "bad"),
                                        splits={"train": str(train)}, layers=[0, 3]))


# --- the probe's distances and loss -----------------------------------------------------------------------
def test_predicted_distances_and_the_hewitt_manning_loss_by_hand():
    torch.manual_seed(0)
    x, proj = torch.randn(2, 3, 4), torch.randn(4, 2)
    pred = predicted_sq_distances(x, proj)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                direct = float(((x[b, i] - x[b, j]) @ proj).pow(2).sum())
                assert float(pred[b, i, j]) == pytest.approx(direct, abs=1e-4)
    # Sentence 1 has 2 words (padded to 3), sentence 2 has 3; padding must not count.
    pred = torch.tensor([[[0., 2., 9.], [2., 0., 9.], [9., 9., 9.]], [[0., 1., 4.], [1., 0., 1.], [4., 1., 0.]]])
    gold = torch.tensor([[[0., 1., 0.], [1., 0., 0.], [0., 0., 0.]], [[0., 1., 2.], [1., 0., 1.], [2., 1., 0.]]])
    mask = torch.zeros(2, 3, 3)
    mask[0, :2, :2] = 1
    mask[1] = 1
    # per sentence: sum |pred - gold| over its pairs / length^2 -> (2 / 4 + 4 / 9), then the mean over sentences
    expected = (2 / 4 + 4 / 9) / 2
    assert float(distance_loss(pred, gold, mask, torch.tensor([2., 3.]))) == pytest.approx(expected)


# --- the probe learns a planted tree metric -------------------------------------------------------------
MAX_WORDS = 12


def _random_tree(rng: random.Random, n: int) -> list[int]:
    """Heads (1-based, 0 root) of a random tree over n words in a shuffled order."""
    perm = list(range(n))
    rng.shuffle(perm)
    heads = [0] * n
    for k in range(1, n):
        heads[perm[k]] = perm[rng.randrange(k)] + 1
    return heads


def _planted(heads: list[int]) -> np.ndarray:
    """x_i = sum of one-hot e_v over the words v on the path from i up to the root (root excluded).

    Two words' paths share exactly the edges above their meeting point, so ||x_i - x_j||^2 is the number of
    edges between them: the tree distance, linearly, for every sentence at once.
    """
    x = np.zeros((len(heads), MAX_WORDS))
    for i in range(len(heads)):
        v = i
        while heads[v]:
            x[i, v] = 1.0
            v = heads[v] - 1
    return x


def _synthetic_features(folder: Path, planted: bool, seed: int = 0) -> Path:
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    mix = nrng.normal(size=(MAX_WORDS, 16)) / 2  # hidden 16 > 12: the probe must learn to undo a mixing
    splits = {}
    for split, count in (("train", 120), ("dev", 30), ("test", 30)):
        sentences, vectors = [], []
        for _ in range(count):
            n = rng.randint(5, MAX_WORDS)
            heads = _random_tree(rng, n)
            upos = ["PUNCT" if h and heads.count(i + 1) == 0 and rng.random() < 0.15 else "X"
                    for i, h in enumerate(heads)]
            sentences.append(TreeSentence(tuple(f"w{i}" for i in range(n)), tuple(heads), tuple(upos),
                                          ("dep",) * n))
            vectors.append(_planted(heads) @ mix if planted else nrng.normal(size=(n, 16)))
        splits[split] = (sentences, {3: np.concatenate(vectors)})
    return write_features_dir(folder, 16, splits, {"model": "synthetic"})


def _probe(features: Path, out: Path, **kw) -> ProbeConfig:
    # A higher rate and a gentler decay than H&M's defaults: 120 tiny sentences, not 12K, in under a second.
    return ProbeConfig(features_dir=str(features), layer=3, output_dir=str(out), epochs=40, learning_rate=0.05,
                       lr_decay=0.5, batch_size=10, num_threads=1, **kw)


def _independent_scores(features: Path, split: str, proj: np.ndarray, min_words=5, max_words=50):
    """UUAS (punctuation excluded), H&M's DSpr (every word) and DSpr without punctuation of probe `proj`,
    recomputed from the stored features with scipy; both DSpr group a sentence by its length in all words.

    Nothing of stages.probe is used: float64 numpy distances, scipy's MST, scipy's spearmanr."""
    vectors, sentences = load_split_features(features, split, 3)
    correct = total = 0
    rhos: dict[int, list[float]] = {}
    rhos_nopunct: dict[int, list[float]] = {}
    for s in sentences:
        t = np.asarray(vectors[s.offset:s.offset + len(s)], dtype=np.float64) @ proj
        pred = ((t[:, None, :] - t[None, :, :]) ** 2).sum(-1)
        keep = [u != "PUNCT" for u in s.upos]
        kept = [i for i in range(len(s)) if keep[i]]
        gold = _gold_edges(s.heads, keep)
        mst = {tuple(sorted((kept[a], kept[b]))) for a, b in _scipy_mst(pred[np.ix_(kept, kept)])}
        correct, total = correct + len(gold & mst), total + len(gold)
        g = _floyd_warshall(s.heads)
        rhos.setdefault(len(s), []).extend(spearmanr(pred[i], g[i]).statistic for i in range(len(s)))
        g, p = g[np.ix_(kept, kept)], pred[np.ix_(kept, kept)]
        rhos_nopunct.setdefault(len(s), []).extend(spearmanr(p[i], g[i]).statistic for i in range(len(kept)))

    def mean_over_lengths(per_length):
        return float(np.mean([np.mean(v) for n, v in per_length.items() if min_words <= n <= max_words]))
    return correct / total, mean_over_lengths(rhos), mean_over_lengths(rhos_nopunct), total


def test_probe_recovers_a_planted_tree_and_not_random_features(tmp_path, monkeypatch):
    planted = _synthetic_features(tmp_path / "planted", planted=True)
    steps, evaluated = [], []
    real_evaluate = probe_stage._evaluate

    def spy(split, proj, cfg, device, *rest):  # keeps the probe that train_probe scores, to score it independently
        evaluated.append(proj.detach().cpu().double().numpy().copy())
        return real_evaluate(split, proj, cfg, device, *rest)
    monkeypatch.setattr(probe_stage, "_evaluate", spy)
    res = train_probe(_probe(planted, tmp_path / "p1"), on_log=lambda s, m: steps.append((s, m)), log=lambda _: None)
    assert res.test_split == "test" and res.rank == 16 and res.sentences_evaluated == 30
    # DSpr stays below 1 even for near-exact distances: gold rows are full of ties that predictions break.
    assert res.test_uuas >= 0.98 and res.test_dspr >= 0.93, res
    # The reported numbers are those of the probe it scored (the dev-best one, on dev then test), recomputed here.
    assert len(evaluated) == 2
    dev_uuas, dev_dspr, dev_nopunct, _ = _independent_scores(planted, "dev", evaluated[0])
    test_uuas, test_dspr, test_nopunct, test_edges = _independent_scores(planted, "test", evaluated[1])
    assert (res.dev_uuas, res.dev_dspr, res.dev_dspr_nopunct) == pytest.approx((dev_uuas, dev_dspr, dev_nopunct))
    assert (res.test_uuas, res.test_dspr, res.test_dspr_nopunct) == pytest.approx((test_uuas, test_dspr, test_nopunct))
    assert res.test_dspr != pytest.approx(res.test_dspr_nopunct)  # the planted data has punctuation: they differ
    assert steps[0][0] == 1 and set(steps[0][1]) >= {"train/loss", "dev/loss"} and len(steps) == res.epochs_run
    assert steps[-1][1]["train/loss"] < steps[0][1]["train/loss"]
    saved = json.loads((tmp_path / "p1" / "probe_result.json").read_text())
    assert saved["test_uuas"] == res.test_uuas and saved["config"]["layer"] == 3
    assert saved["test_dspr_nopunct"] == saved["test_details"]["dspr_nopunct"] == res.test_dspr_nopunct
    assert saved["test_details"]["uuas_edges"] == test_edges
    # the per-sentence scores the report bootstraps add up to the reported (independently checked) test numbers
    with np.load(tmp_path / "p1" / "test_sentences.npz") as z:
        per = {k: z[k] for k in z.files}
    assert len(per["length"]) == 30 and per["uuas_gold"].sum() == test_edges
    assert per["uuas_correct"].sum() / per["uuas_gold"].sum() == pytest.approx(test_uuas)
    by_length = {}
    for n, sp in zip(per["length"], per["spearman"]):
        if 5 <= n <= 50:
            by_length.setdefault(int(n), []).append(sp)
    assert np.mean([np.mean(v) for v in by_length.values()]) == pytest.approx(test_dspr)

    noise = _synthetic_features(tmp_path / "noise", planted=False)
    res_noise = train_probe(_probe(noise, tmp_path / "p2"), log=lambda _: None)
    assert res_noise.test_uuas < 0.6 and res_noise.test_uuas < res.test_uuas - 0.35, res_noise
    assert res_noise.test_dspr < res.test_dspr - 0.3


def test_probe_is_reproducible_and_reports_dev_without_a_test_split(tmp_path):
    feats = _synthetic_features(tmp_path / "f", planted=True, seed=5)
    cfg = _probe(feats, tmp_path / "a").replace(epochs=3, rank=4)
    first = dataclasses.asdict(train_probe(cfg, log=lambda _: None))
    second = dataclasses.asdict(train_probe(cfg.replace(output_dir=str(tmp_path / "b")),
                                            log=lambda _: None))
    for d in (first, second):
        d.pop("seconds"), d.pop("output_dir")
    assert first == second and first["rank"] == 4
    other = dataclasses.asdict(train_probe(cfg.replace(seed=1), log=lambda _: None))
    assert other["best_dev_loss"] != first["best_dev_loss"]

    kept = {}
    for split in ("train", "dev"):
        vectors, sentences = load_split_features(feats, split, 3)
        kept[split] = (sentences, {3: np.asarray(vectors)})
    no_test = write_features_dir(tmp_path / "no_test", 16, kept)
    logs = []
    res = train_probe(cfg.replace(features_dir=str(no_test)), log=logs.append)
    assert res.test_split == "dev" and res.test_uuas == res.dev_uuas
    assert any("no test split" in line for line in logs)
    with pytest.raises(StageError, match="no layer 5"):
        train_probe(cfg.replace(layer=5), log=lambda _: None)
