"""The structural distance probe of Hewitt & Manning (2019), on features written by stages/features.py.

A probe is one linear map B (rank x hidden). The squared distance it predicts between words i and j of a
sentence is ||B(h_i - h_j)||^2, and it is trained so that this matches the number of edges between i and j
in the gold dependency tree. If a layer encodes syntax linearly, a small B recovers the tree: the minimum
spanning tree of the predicted distances (UUAS) and the ranking of distances per word (DSpr) are the
paper's Table 3 metrics, computed here on the UD English-EWT test set.

`uuas` and `dspr` follow H&M's reporter (structural-probes/reporter.py, `report_uuas_and_tikz` and
`report_spearmanr`): UUAS leaves punctuation out, DSpr keeps every word and groups sentences by their
length in all words. Each other choice is computed too, under its own name, so that no table mixes two
definitions under one label: `dspr_nopunct` (DSpr over the non-punctuation rows and columns, grouped by the
same full length; this project's `dspr` before issue 13) and `uuas_withpunct` (UUAS over every word).
Where we differ from H&M's code, on purpose:
- punctuation is UD's UPOS PUNCT; H&M drop the words whose PTB xpos is one of '' , . : `` -LRB- -RRB-.
  The sets are close, not equal: UPOS PUNCT also covers xpos HYPH (hyphens) and some NFP, which H&M keep;
- UUAS gold edges are the tree's edges between two kept words; H&M take the minimum spanning tree of the
  gold distances over the kept words. Both agree when every dropped word is a leaf (UD attaches
  punctuation as leaves); `uuas_gold_forests` in the details counts the sentences where they can differ;
- a constant predicted row (a collapsed probe) counts as Spearman 0; scipy, and so H&M, give NaN.

Everything below the training loop is a pure function, so the metrics are tested on hand-made matrices.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from pydantic import model_validator
from scipy.stats import rankdata

from stages.common import (Number, StageConfig, StageError, configure_threads, pick_device, set_seed, setting,
                           write_json)
from stages.features import StoredSentence, TreeSentence, load_split_features, read_features_meta

PUNCT_UPOS = "PUNCT"  # H&M use PTB xpos tags instead; our treebanks are UD (see the module docstring)
SENTENCES_FILE = "test_sentences.npz"   # per-sentence scores of the reported split (sentence_scores)
IMPROVEMENT = 1e-4  # a dev loss must beat the best by this much to count (H&M's threshold)


class ProbeSettings(StageConfig):
    """Structural-probe training and scoring (Hewitt & Manning 2019): the sweep's `probe` section."""
    rank: int | None = setting(None, "rows of B; null: the hidden size (H&M: full rank for BERT-base, 768)", ge=1)
    epochs: int = setting(40, "at most this many epochs", ge=1)
    learning_rate: Number = setting(1e-3, "Adam learning rate", gt=0)
    batch_size: int = setting(20, "sentences per step", ge=1)
    patience: int = setting(4, "stop after this many epochs without a better dev loss", ge=1)
    lr_decay: Number | None = setting(0.1, "ReduceLROnPlateau factor on the dev loss (H&M: 0.1, patience 0); "
                                           "null: off", gt=0, lt=1)
    seed: int = setting(0, "probe initialisation and batch order")
    # No punctuation setting: each treatment of punctuation is its own metric (module docstring), so a
    # setting can never make one column name mean two things.
    min_words: int = setting(5, "DSpr (and dspr_nopunct) average over sentence lengths min_words..max_words, "
                                "a length counting every word, punctuation too (H&M: 5-50)", ge=1)
    max_words: int = setting(50, "see min_words", ge=1)

    @model_validator(mode="after")
    def _lengths(self):
        if self.min_words > self.max_words:
            raise ValueError(f"need min_words <= max_words, got {self.min_words} and {self.max_words} (H&M: 5 and 50)")
        return self


class ProbeConfig(ProbeSettings):
    features_dir: str = setting(doc="a features folder (stages/features.py)")
    layer: int = setting(doc="the layer probed: 0 = embeddings, k = output of layer k", ge=0)
    output_dir: str = setting(doc="probe_result.json (scores, history)")
    num_threads: int | None = setting(None, "torch CPU threads (configure_threads)", hashed=False)


@dataclass(frozen=True)
class ProbeResult:
    layer: int
    rank: int
    test_uuas: float
    test_dspr: float
    dev_uuas: float
    dev_dspr: float
    test_dspr_nopunct: float           # DSpr without punctuation rows and columns: not H&M's, never mix the two
    dev_dspr_nopunct: float
    best_dev_loss: float
    best_epoch: int
    epochs_run: int
    test_split: str                    # "test", or "dev" when the features have no test split
    sentences_evaluated: int           # sentences of test_split that entered UUAS (at least one gold edge)
    seconds: float
    output_dir: str


# --- pure functions ----------------------------------------------------------------------------------
def tree_distances(heads: Sequence[int]) -> np.ndarray:
    """[n, n] path lengths in the undirected tree; heads are 1-based with 0 for the root (CoNLL-U)."""
    n = len(heads)
    adjacency: list[list[int]] = [[] for _ in range(n)]
    for i, h in enumerate(heads):
        if h:
            adjacency[i].append(h - 1)
            adjacency[h - 1].append(i)
    dist = np.full((n, n), -1, dtype=np.int64)
    for source in range(n):  # one breadth-first search per word: O(n^2), n is a sentence
        dist[source, source] = 0
        queue = deque([source])
        while queue:
            u = queue.popleft()
            for v in adjacency[u]:
                if dist[source, v] < 0:
                    dist[source, v] = dist[source, u] + 1
                    queue.append(v)
    if (dist < 0).any():
        raise ValueError("tree_distances: the heads do not connect all words (more than one root or a cycle)")
    return dist


def mst_edges(dist: np.ndarray) -> list[tuple[int, int]]:
    """Edges (i < j) of a minimum spanning tree of a symmetric distance matrix (Prim's algorithm).

    Ties go to the lowest index, so the tree is deterministic. Any minimum spanning tree is a valid
    decoding; with ties, UUAS can depend on which one is chosen (H&M break ties by sort order too).
    """
    dist = np.asarray(dist, dtype=np.float64)
    n = dist.shape[0]
    if n < 2:
        return []
    dist = np.nan_to_num((dist + dist.T) / 2, nan=np.inf)  # a diverged probe's NaNs must not break the tree
    in_tree = np.zeros(n, dtype=bool)
    in_tree[0] = True
    best, parent = dist[0].copy(), np.zeros(n, dtype=np.int64)
    edges = []
    for _ in range(n - 1):
        outside = np.flatnonzero(~in_tree)
        j = int(outside[np.argmin(best[outside])])
        edges.append((min(int(parent[j]), j), max(int(parent[j]), j)))
        in_tree[j] = True
        closer = dist[j] < best
        best[closer], parent[closer] = dist[j][closer], j
    return edges


def uuas_counts(pred_dist: np.ndarray, heads: Sequence[int], keep: Sequence[bool] | None = None) -> tuple[int, int]:
    """(correct, gold) undirected edges of one sentence.

    Gold edges are the tree's (word, head) pairs whose two words are both kept; predicted edges are the
    minimum spanning tree of `pred_dist` restricted to the kept words. H&M take the gold edges as the MST of
    the gold distances over kept words instead; the two agree whenever dropped (punctuation) words are
    leaves, which UD's guidelines make them. Where a dropped word has dependents, H&M's gold MST would
    invent an edge of distance 2 or more between kept words; we do not count one (see `uuas` gold_forests).
    """
    n = len(heads)
    keep_mask = np.ones(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    gold = {tuple(sorted((i, h - 1))) for i, h in enumerate(heads) if h and keep_mask[i] and keep_mask[h - 1]}
    if not gold:
        return 0, 0
    kept = np.flatnonzero(keep_mask)
    sub = np.asarray(pred_dist)[np.ix_(kept, kept)]
    pred = {tuple(sorted((int(kept[a]), int(kept[b])))) for a, b in mst_edges(sub)}
    return len(gold & pred), len(gold)


class UUASDetails(NamedTuple):
    uuas: float
    correct: int                       # correct undirected edges, summed over the corpus
    gold_edges: int                    # gold edges, summed over the corpus
    sentences: int                     # sentences with at least one gold edge: those that entered the score
    gold_forests: int                  # sentences whose kept words the gold edges do not join into one tree
                                       # (a dropped word has dependents): only there can H&M's UUAS differ


def uuas(pred_dists: Sequence[np.ndarray], heads: Sequence[Sequence[int]],
         keep: Sequence[Sequence[bool] | None] | None = None, *, details: bool = False) -> float | UUASDetails:
    """Corpus UUAS: total correct edges / total gold edges over all sentences (see uuas_counts), as H&M.

    Sentences without gold edges (one word, or one kept word) add nothing; a corpus without any gives 0.0.
    `details=True` returns the score with the counts behind it (UUASDetails) instead of the score alone.
    """
    keeps = keep if keep is not None else [None] * len(heads)
    correct = total = sentences = forests = 0
    for d, h, k in zip(pred_dists, heads, keeps):
        c, t = uuas_counts(d, h, k)
        kept = len(h) if k is None else int(np.count_nonzero(k))
        correct, total, sentences = correct + c, total + t, sentences + (t > 0)
        forests += t < kept - 1        # a tree over `kept` words has kept - 1 edges
    score = correct / total if total else 0.0
    return UUASDetails(score, correct, total, sentences, forests) if details else score


def _row_spearman(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of pred with the same row of gold (average ranks for ties)."""
    rp, rg = rankdata(pred, axis=1), rankdata(gold, axis=1)
    rp, rg = rp - rp.mean(axis=1, keepdims=True), rg - rg.mean(axis=1, keepdims=True)
    denom = np.sqrt((rp ** 2).sum(axis=1) * (rg ** 2).sum(axis=1))
    # A constant row (a collapsed probe) ranks nothing: correlation 0, not NaN (scipy's, so H&M's, answer),
    # so that one collapsed sentence does not turn a whole corpus score into NaN.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rp * rg).sum(axis=1) / np.where(denom > 0, denom, 1.0), 0.0)


def dspr_by_length(pred_dists: Sequence[np.ndarray], gold_dists: Sequence[np.ndarray],
                   lengths: Sequence[int] | None = None) -> dict[int, float]:
    """Mean per-word Spearman correlation for each sentence length (steps 1-2 of `dspr`)."""
    per_length: dict[int, list[float]] = defaultdict(list)
    lengths = lengths if lengths is not None else [len(g) for g in gold_dists]
    for pred, gold, length in zip(pred_dists, gold_dists, lengths):
        pred, gold = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
        if gold.shape[0] < 2:
            continue  # one word: a one-element row has no ranking
        per_length[int(length)].extend(_row_spearman(pred, gold).tolist())
    return {length: float(np.mean(values)) for length, values in sorted(per_length.items())}


class DSprDetails(NamedTuple):
    dspr: float
    by_length: dict[int, float]        # step 2 for every length seen, in range or not (dspr_by_length)
    lengths_used: tuple[int, ...]      # the lengths in min_words..max_words that step 3 averages


def dspr(pred_dists: Sequence[np.ndarray], gold_dists: Sequence[np.ndarray], lengths: Sequence[int] | None = None,
         min_words: int = 5, max_words: int = 50, *, details: bool = False) -> float | DSprDetails:
    """Distance Spearman (DSpr.) as H&M's reporter computes it, over the matrices given.

    H&M's DSpr passes each sentence's full matrices (every word, punctuation included) and lengths = the
    number of words; the probe's `dspr_nopunct` passes the matrices without punctuation rows and columns
    and the same full lengths.

    1. For every sentence and every word i in it, the Spearman correlation between row i of the predicted
       distance matrix and row i of the gold tree-distance matrix (ties get average ranks; the diagonal 0
       is part of the row, as in H&M's code; a constant predicted row counts as 0, where H&M get NaN).
    2. These per-word correlations are averaged over all words of all sentences of the same length
       (`lengths[s]`, default the matrix size).
    3. The result is the unweighted mean of the per-length averages over lengths min_words..max_words
       (both inclusive); other lengths, and sentences with fewer than 2 rows, are left out. 0.0 if none is left.

    `details=True` returns the score with the per-length means behind it (DSprDetails) instead of the score alone.
    """
    by_length = dspr_by_length(pred_dists, gold_dists, lengths)
    used = tuple(length for length in by_length if min_words <= length <= max_words)
    score = float(np.mean([by_length[length] for length in used])) if used else 0.0
    return DSprDetails(score, by_length, used) if details else score


def not_punctuation(upos: Sequence[str]) -> np.ndarray:
    """A sentence's keep-mask: False for the words tagged UPOS PUNCT (H&M: PTB punctuation tags)."""
    return np.array([u != PUNCT_UPOS for u in upos], dtype=bool)


def restrict(matrix: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The rows and columns of `matrix` whose words are kept."""
    return np.asarray(matrix)[np.ix_(keep, keep)]


def sentence_scores(pred_dists: Sequence[np.ndarray], gold_dists: Sequence[np.ndarray],
                    sentences: Sequence[TreeSentence]) -> dict[str, np.ndarray]:
    """Per sentence, what the corpus UUAS and DSpr are made of, so a report can bootstrap them over sentences:
    UUAS's correct and gold edges (punctuation left out, as `uuas`), the sentence's length in all words, and its
    words' mean row Spearman over every word (NaN under 2 words). Within a length, DSpr's per-word mean is the
    mean of these, as every sentence of one length has the same number of words."""
    keeps = [not_punctuation(s.upos) for s in sentences]
    counts = [uuas_counts(d, s.heads, k) for d, s, k in zip(pred_dists, sentences, keeps)]
    spearman = [float(np.mean(_row_spearman(np.asarray(p, dtype=np.float64), np.asarray(g, dtype=np.float64))))
                if len(g) >= 2 else math.nan for p, g in zip(pred_dists, gold_dists)]
    return {"uuas_correct": np.array([c for c, _ in counts], dtype=np.int64),
            "uuas_gold": np.array([t for _, t in counts], dtype=np.int64),
            "length": np.array([len(s) for s in sentences], dtype=np.int64),
            "spearman": np.array(spearman, dtype=np.float64)}


def probe_metrics(pred_dists: Sequence[np.ndarray], gold_dists: Sequence[np.ndarray],
                  sentences: Sequence[TreeSentence], min_words: int = 5, max_words: int = 50) -> dict:
    """Every probe metric of one split, with the counts behind them (probe_result.json's details).

    uuas and dspr are H&M's (UUAS without punctuation, DSpr over every word); dspr_nopunct and uuas_withpunct
    are the other choice of each. All four go through `uuas` and `dspr`, and DSpr's length is always the
    sentence's length in all words, so both DSpr variants average the same sentences per length bucket.
    """
    heads = [s.heads for s in sentences]
    lengths = [len(s) for s in sentences]
    keeps = [not_punctuation(s.upos) for s in sentences]
    u = uuas(pred_dists, heads, keeps, details=True)
    u_all = uuas(pred_dists, heads, details=True)
    d = dspr(pred_dists, gold_dists, lengths, min_words, max_words, details=True)
    d_np = dspr([restrict(p, k) for p, k in zip(pred_dists, keeps)],
                [restrict(g, k) for g, k in zip(gold_dists, keeps)], lengths, min_words, max_words, details=True)
    return {"uuas": u.uuas, "dspr": d.dspr, "dspr_nopunct": d_np.dspr, "uuas_withpunct": u_all.uuas,
            "uuas_sentences": u.sentences, "uuas_edges": u.gold_edges, "uuas_gold_forests": u.gold_forests,
            "dspr_lengths": len(d.lengths_used), "dspr_by_length": d.by_length,
            "dspr_nopunct_lengths": len(d_np.lengths_used), "dspr_nopunct_by_length": d_np.by_length}


# --- data --------------------------------------------------------------------------------------------
@dataclass
class _Split:
    vectors: torch.Tensor                # float16 [words, hidden], converted to float32 per batch
    sentences: list[StoredSentence]
    gold: list[torch.Tensor]             # tree distances, float32 [n, n]


def _load(features_dir: str, split: str, layer: int, device: torch.device) -> _Split:
    vectors, sentences = load_split_features(features_dir, split, layer)
    return _Split(torch.from_numpy(np.array(vectors)).to(device), sentences,
                  [torch.from_numpy(tree_distances(s.heads).astype(np.float32)) for s in sentences])


def _batch(split: _Split, idx: Sequence[int], device: torch.device):
    """Padded word vectors [b, n, d], gold distances [b, n, n], pair mask [b, n, n] and lengths [b]."""
    lengths = [len(split.sentences[i]) for i in idx]
    n, d = max(lengths), split.vectors.shape[1]
    x = torch.zeros((len(idx), n, d), dtype=torch.float32, device=device)
    gold = torch.zeros((len(idx), n, n), dtype=torch.float32)
    mask = torch.zeros((len(idx), n, n), dtype=torch.float32)
    for b, (i, k) in enumerate(zip(idx, lengths)):
        off = split.sentences[i].offset
        x[b, :k] = split.vectors[off:off + k].float()
        gold[b, :k, :k] = split.gold[i]
        mask[b, :k, :k] = 1.0
    return x, gold.to(device), mask.to(device), torch.tensor(lengths, dtype=torch.float32, device=device)


def predicted_sq_distances(x: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """||B(h_i - h_j)||^2 for all pairs, through norms and a Gram matrix: O(n^2 r) memory, not O(n^2 d)."""
    t = x @ proj                                    # [b, n, r]
    sq = (t * t).sum(-1)
    return (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * t @ t.transpose(1, 2)).clamp_min(0.0)


def distance_loss(pred: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """H&M's loss: per sentence, the L1 error summed over all word pairs / length^2, averaged over sentences."""
    per_sentence = (torch.abs(pred - gold) * mask).sum(dim=(1, 2)) / lengths.pow(2)
    return per_sentence.mean()


def _dev_loss(split: _Split, proj: torch.Tensor, batch_size: int, device: torch.device) -> float:
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(split.sentences), batch_size):
            idx = list(range(start, min(start + batch_size, len(split.sentences))))
            x, gold, mask, lengths = _batch(split, idx, device)
            total += float(distance_loss(predicted_sq_distances(x, proj), gold, mask, lengths)) * len(idx)
    return total / len(split.sentences)


def _predicted(split: _Split, proj: torch.Tensor, batch_size: int, device: torch.device) -> list[np.ndarray]:
    """Each sentence's predicted squared distances, float64 [n, n], in split order (padding cut off)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(split.sentences), batch_size):
            idx = list(range(start, min(start + batch_size, len(split.sentences))))
            x, _, _, _ = _batch(split, idx, device)
            pred = predicted_sq_distances(x, proj).double().cpu().numpy()
            out += [pred[b, :len(split.sentences[i]), :len(split.sentences[i])] for b, i in enumerate(idx)]
    return out


def _evaluate(split: _Split, proj: torch.Tensor, cfg: ProbeConfig, device: torch.device,
              sentences_file: Path | None = None) -> dict:
    """probe_metrics of the probe `proj` on one split (gold distances always from the full tree); with
    `sentences_file`, its per-sentence scores are saved there too (sentence_scores, .npz)."""
    golds = [g.numpy().astype(np.float64) for g in split.gold]
    preds = _predicted(split, proj, cfg.batch_size, device)
    if sentences_file is not None:
        np.savez(sentences_file, **sentence_scores(preds, golds, split.sentences))
    return probe_metrics(preds, golds, split.sentences, cfg.min_words, cfg.max_words)


# --- training ----------------------------------------------------------------------------------------
def train_probe(cfg: ProbeConfig, on_log: Callable[[int, dict[str, float]], None] | None = None,
                log: Callable[[str], None] = print) -> ProbeResult:
    t_start = time.time()
    configure_threads(cfg.num_threads)
    meta = read_features_meta(cfg.features_dir)
    for needed in ("train", "dev"):
        if needed not in meta["splits"]:
            raise StageError(f"{cfg.features_dir} has no {needed!r} split (it has {meta['splits']}); the probe trains "
                             "on train and early-stops on dev: add both to the features config's splits")
    test_split = "test" if "test" in meta["splits"] else "dev"
    if test_split == "dev":
        log(f"[probe] WARNING {cfg.features_dir} has no test split: the reported test numbers are dev numbers")
    # CPU keeps the run deterministic; a GPU is faster for UD-sized splits but may reorder float sums.
    device = pick_device()
    splits = {name: _load(cfg.features_dir, name, cfg.layer, device) for name in {"train", "dev", test_split}}
    for name, split in splits.items():
        if not split.sentences:
            raise StageError(f"{cfg.features_dir} split {name!r} has no sentences (all skipped?); check "
                             "features.json 'skipped' and raise max_length or fix the treebank")
    hidden = int(meta["hidden_size"])
    rank = cfg.rank or hidden
    set_seed(cfg.seed)
    proj = torch.nn.Parameter(torch.empty(hidden, rank, device=device))
    torch.nn.init.uniform_(proj, -0.05, 0.05)  # H&M's initialisation
    optimizer = torch.optim.Adam([proj], lr=cfg.learning_rate)
    scheduler = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=cfg.lr_decay, patience=0)
                 if cfg.lr_decay else None)
    generator = torch.Generator().manual_seed(cfg.seed)
    train = splits["train"]
    log(f"[probe] layer {cfg.layer}, rank {rank}: {len(train.sentences):,} train / {len(splits['dev'].sentences):,} "
        f"dev sentences, up to {cfg.epochs} epochs, on {device.type}")

    best_loss, best_epoch, best_proj, epoch, history = math.inf, 0, proj.detach().clone(), 0, []
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(len(train.sentences), generator=generator).tolist()
        train_total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            x, gold, mask, lengths = _batch(train, idx, device)
            loss = distance_loss(predicted_sq_distances(x, proj), gold, mask, lengths)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            train_total += float(loss.detach()) * len(idx)
        train_loss = train_total / len(order)
        dev_loss = _dev_loss(splits["dev"], proj.detach(), cfg.batch_size, device)
        if scheduler is not None:
            scheduler.step(dev_loss)
        entry = {"train/loss": train_loss, "dev/loss": dev_loss, "train/lr": optimizer.param_groups[0]["lr"]}
        history.append({"epoch": epoch, **entry})
        if on_log:
            on_log(epoch, entry)
        if dev_loss < best_loss - IMPROVEMENT:
            best_loss, best_epoch, best_proj = dev_loss, epoch, proj.detach().clone()
        log(f"[probe] layer {cfg.layer} epoch {epoch}: train loss {train_loss:.4f}, dev loss {dev_loss:.4f}"
            + (" (best)" if best_epoch == epoch else ""))
        if epoch - best_epoch >= cfg.patience:
            log(f"[probe] early stop: no better dev loss for {cfg.patience} epochs (best {best_loss:.4f} at "
                f"epoch {best_epoch})")
            break

    # The reported probe is the one with the best dev loss, not the last one.
    # the test split's per-sentence scores: the report bootstraps a comparison of two probes over sentences
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    sentences_file = Path(cfg.output_dir) / SENTENCES_FILE
    dev_metrics = _evaluate(splits["dev"], best_proj, cfg, device, sentences_file if test_split == "dev" else None)
    test_metrics = dev_metrics if test_split == "dev" else _evaluate(splits[test_split], best_proj, cfg, device,
                                                                     sentences_file)
    result = ProbeResult(layer=cfg.layer, rank=rank, test_uuas=test_metrics["uuas"], test_dspr=test_metrics["dspr"],
                         dev_uuas=dev_metrics["uuas"], dev_dspr=dev_metrics["dspr"],
                         test_dspr_nopunct=test_metrics["dspr_nopunct"], dev_dspr_nopunct=dev_metrics["dspr_nopunct"],
                         best_dev_loss=best_loss,
                         best_epoch=best_epoch, epochs_run=epoch, test_split=test_split,
                         sentences_evaluated=test_metrics["uuas_sentences"], seconds=time.time() - t_start,
                         output_dir=str(cfg.output_dir))
    log(f"[probe] layer {cfg.layer}: {test_split} UUAS {result.test_uuas:.4f}, DSpr {result.test_dspr:.4f} "
        f"(without punctuation {result.test_dspr_nopunct:.4f}; {test_metrics['uuas_sentences']:,} sentences, "
        f"{test_metrics['dspr_lengths']} lengths in {cfg.min_words}-{cfg.max_words}); "
        f"dev UUAS {result.dev_uuas:.4f}, DSpr {result.dev_dspr:.4f}")
    out = Path(cfg.output_dir)
    write_json(out / "probe_result.json", {**asdict(result), "config": cfg.model_dump(), "history": history,
                                           "test_details": test_metrics, "dev_details": dev_metrics,
                                           "features_model": meta.get("model")})
    return result
