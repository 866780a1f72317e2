"""Word-level vectors from subword models, through the model's own tokenizer offsets.

Probes and WiC work on words (a treebank's tokens, a target word), but every model splits words its own way:
the English WordPiece, the kept Swedish vocabulary and an Arabic one give different subwords for the same
word. Instead of relying on one tokenizer's conventions (the structural-probe reference code assumes
`bert-base-cased`'s), a word is found by character offsets: the text is the words joined by single spaces,
each word has a character span, and a word's subwords are the tokens whose offsets overlap that span. This
works for any fast tokenizer, including [UNK] tokens (which still carry the offsets of what they replaced)
and lowercasing/accent-stripping normalizers (offsets refer to the original text).
"""
from __future__ import annotations

from typing import Sequence

import torch


def join_words(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The words joined by single spaces, and each word's (start, end) character span in that text."""
    spans, pos = [], 0
    for w in words:
        if not w:
            raise ValueError("join_words: an empty word has no characters to find in the text")
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), spans


def token_groups(offsets: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]],
                 sequence_ids: Sequence[int | None] | None = None, sequence: int = 0) -> list[list[int]]:
    """For each character span, the indices of the tokens whose offsets overlap it.

    Special tokens have empty offsets (start == end) and never match. With `sequence_ids` (from a pair
    encoding), only tokens of `sequence` (0 = first text, 1 = second) are considered, since offsets of
    both texts start at 0. A word whose tokens were all truncated away gets an empty group.
    """
    groups: list[list[int]] = [[] for _ in spans]
    # Offsets are increasing along a sequence, so one forward walk assigns every token.
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    for t, (a, b) in enumerate(offsets):
        if b <= a or (sequence_ids is not None and sequence_ids[t] != sequence):
            continue
        for i in order:
            s, e = spans[i]
            if s >= b:
                break
            if a < e and b > s:
                groups[i].append(t)
    return groups


def pool(hidden: torch.Tensor, groups: Sequence[Sequence[int]], how: str = "mean") -> torch.Tensor:
    """(n_tokens, d) token vectors -> (n_groups, d) word vectors: mean (Hewitt & Manning), first or last subword.

    Every group must be non-empty; callers decide what to do with words that lost their tokens.
    """
    if how not in ("mean", "first", "last"):
        raise ValueError(f"pool: unknown pooling {how!r}; use mean, first or last")
    if any(len(g) == 0 for g in groups):
        raise ValueError("pool: a word has no tokens (truncated?); drop or shorten the sentence first")
    if how == "first":
        return hidden[torch.tensor([g[0] for g in groups], dtype=torch.long)]
    if how == "last":
        return hidden[torch.tensor([g[-1] for g in groups], dtype=torch.long)]
    # Mean through a (n_groups, n_tokens) averaging matrix: one matmul instead of a Python loop of slices.
    weights = torch.zeros(len(groups), hidden.shape[0], dtype=hidden.dtype, device=hidden.device)
    for i, g in enumerate(groups):
        weights[i, list(g)] = 1.0 / len(g)
    return weights @ hidden
