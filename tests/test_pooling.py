"""Word pooling through tokenizer offsets: every subword of a word, and only its subwords, is averaged."""
from __future__ import annotations

import random
import unicodedata

import pytest
import torch

from stages.corpus import CorpusConfig
from stages.pooling import join_words, pool, token_groups
from stages.tokenizer import TokenizerConfig, load_tokenizer, train_tokenizer


def test_join_words_spans_point_at_each_word():
    text, spans = join_words(["The", "dog", "barked", "."])
    assert text == "The dog barked ."
    assert [text[s:e] for s, e in spans] == ["The", "dog", "barked", "."]


def test_groups_on_a_hand_made_offset_list():
    # [CLS] un ##believ ##able dog [SEP]: offsets as a fast tokenizer returns them for "unbelievable dog"
    offsets = [(0, 0), (0, 2), (2, 8), (8, 12), (13, 16), (0, 0)]
    assert token_groups(offsets, [(0, 12), (13, 16)]) == [[1, 2, 3], [4]]


def test_pair_encoding_keeps_the_two_texts_apart():
    offsets = [(0, 0), (0, 3), (4, 7), (0, 0), (0, 3), (0, 0)]
    seq_ids = [None, 0, 0, None, 1, None]
    assert token_groups(offsets, [(0, 3)], seq_ids, sequence=1) == [[4]]
    assert token_groups(offsets, [(0, 3)], seq_ids, sequence=0) == [[1]]


def test_mean_first_last_pooling_against_hand_values():
    h = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    groups = [[1, 2, 3], [0]]
    assert torch.allclose(pool(h, groups), torch.tensor([[3.0, 5.0], [0.0, 0.0]]))
    assert torch.allclose(pool(h, groups, "first"), torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    assert torch.allclose(pool(h, groups, "last"), torch.tensor([[5.0, 9.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="no tokens"):
        pool(h, [[1], []])


def test_real_tokenizer_splits_a_rare_word_and_groups_find_all_pieces(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    words = ["The", "redbirdhouses", "dog", "runs", "."]
    text, spans = join_words(words)
    enc = tok(text, return_offsets_mapping=True)
    groups = token_groups(enc["offset_mapping"], spans)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert len(groups[1]) > 1, pieces  # an unseen compound splits into several subwords
    for word, g in zip(words, groups):
        assert g, word
        rebuilt = "".join(pieces[i].removeprefix("##") for i in g)
        assert rebuilt.lower() == word.lower() or "[UNK]" in rebuilt
    # every non-special token belongs to exactly one word
    flat = sorted(i for g in groups for i in g)
    assert flat == list(range(1, len(pieces) - 1))


@pytest.mark.parametrize("lowercase", [False, True])
def test_groups_in_two_vocabularies_cased_and_uncased_with_accents(tmp_path, lowercase):
    """The same words, split differently by two vocabularies (one lowercasing and stripping accents):
    offsets still refer to the original text, so every word's pieces are found in both."""
    rng = random.Random(0)
    words = "Åsa läser böcker om städer och älvar medan Örjan skriver dikter".split()
    corpus = tmp_path / "sv.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(8)) + " ." for _ in range(400)) + "\n")
    folder = tmp_path / f"tok-{lowercase}"
    train_tokenizer(TokenizerConfig(corpus=CorpusConfig(files=[str(corpus)]), output_dir=str(folder), vocab_size=100,
                                    lowercase=lowercase, min_frequency=1))
    tok = load_tokenizer(str(folder))
    sentence = ["Örjan", "läser", "dikter", "om", "älvarböcker", "."]
    text, spans = join_words(sentence)
    enc = tok(text, return_offsets_mapping=True)
    groups = token_groups(enc["offset_mapping"], spans)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert len(groups[4]) > 1  # an unseen compound is several pieces in both vocabularies
    for word, g in zip(sentence, groups):
        rebuilt = "".join(pieces[i].removeprefix("##") for i in g)
        expected = word.lower() if lowercase else word
        if lowercase:  # the uncased normalizer strips accents: compare without them
            expected = "".join(c for c in unicodedata.normalize("NFD", expected) if unicodedata.category(c) != "Mn")
        assert rebuilt == expected, (word, [pieces[i] for i in g])
