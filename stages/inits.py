"""Embedding initialisations for a new target vocabulary on a source model: the registry of the transfer stage.

`frequency` and `random-map` (the paper's method and its control) live in stages/transfer.py as row maps; the
methods here build the target embedding matrix row by row from the source's, each as a function of one
`InitInputs`, named in `INITS`:

- `overlap`        identical strings keep their row; the rest random-normal.
- `fvt`            Fast Vocabulary Transfer (Gee et al., 2022): a target token is the mean of the rows of the
                   pieces the source tokenizer cuts it into.
- `random-normal`  every row drawn from N(mean, sd) of the source matrix, per dimension: "body reuse" without
                   "embedding reuse".
- `focus`          FOCUS (Dobler & de Melo, 2023) through `deepfocus`: overlap copied, every other token a
                   sparsemax mix of overlap rows, weighted by similarity in a fastText space of target tokens.
- `wechsel`        WECHSEL (Minixhofer et al., 2022) through `wechsel`: source and target subwords embedded in
                   fastText word spaces aligned by a bilingual dictionary; each target token a softmax mix of
                   its 10 nearest source subwords.

Every method gives special tokens the source row of the same role ([CLS] <- [CLS], <s> <- [CLS], ...), so the
five roles start where the body expects them. Each returns the matrix, the MLM decoder bias (a copied row keeps
its source bias, an FVT row the mean of its pieces', any other row 0, BERT's init for a new output) and what
each row is: copied (one source row), composed (a mix of source rows), random or special. `diagnostics` turns
that into the numbers every mapping report carries.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from stages.common import StageError

COPIED, COMPOSED, RANDOM, SPECIAL = 0, 1, 2, 3
HOW = ("copied", "composed", "random", "special")
NEAREST_K = 10


@dataclass
class InitInputs:
    src_tok: object                  # the source's transformers tokenizer
    tgt_tok: object                  # the target vocabulary's
    emb: torch.Tensor                # source input embeddings, [source rows, d]
    bias: torch.Tensor | None        # source MLM decoder bias, [source rows] (None: the head has none)
    src_roles: dict[str, int]        # role -> source id (pad, unk, cls, sep, mask)
    tgt_roles: dict[str, int]
    seed: int
    options: object = None           # the TransferConfig: files and settings of focus / wechsel
    log: Callable[[str], None] = print


@dataclass
class Init:
    weights: torch.Tensor            # [target tokens, d]
    bias: torch.Tensor | None        # [target tokens]
    how: np.ndarray                  # per target id: COPIED, COMPOSED, RANDOM or SPECIAL
    source_row: np.ndarray           # per target id: the source row copied (or of its role), -1 otherwise
    details: dict = field(default_factory=dict)


# --- shared pieces -------------------------------------------------------------------------------------------

def family(tok) -> str:
    """"wordpiece", "bpe" (byte-level, RoBERTa) or "unigram" (SentencePiece, XLM-R), read from the fast
    tokenizer's model."""
    import json
    kind = json.loads(tok.backend_tokenizer.to_str())["model"]["type"]
    return {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "unigram"}.get(kind, kind.lower())


def canonical(token: str, fam: str) -> tuple[str, bool]:
    """(text, starts a word) of a vocabulary entry, so that tokens of different families compare: WordPiece
    marks continuations ("##ing"), byte-level BPE and SentencePiece mark word starts ("Ġthe", "▁the")."""
    if fam == "wordpiece":
        return (token[2:], False) if token.startswith("##") and len(token) > 2 else (token, True)
    marker = "Ġ" if fam == "bpe" else "▁"
    return (token[1:], True) if token.startswith(marker) and len(token) > 1 else (token, False)


def _specials(inp: InitInputs) -> tuple[set[int], set[int]]:
    src = set(inp.src_roles.values()) | set(inp.src_tok.all_special_ids)
    tgt = set(inp.tgt_roles.values()) | set(inp.tgt_tok.all_special_ids)
    return src, tgt


def _by_role(inp: InitInputs, weights: torch.Tensor, bias: torch.Tensor | None, how: np.ndarray,
             source_row: np.ndarray) -> None:
    """Special tokens take the source row (and bias) of their role, whatever the method gave them; a target
    special without a role (an extra added token) gets the source's [UNK] row."""
    _, tgt_special = _specials(inp)
    role_of = {tid: role for role, tid in inp.tgt_roles.items()}
    for tid in sorted(tgt_special):
        src = inp.src_roles[role_of.get(tid, "unk")]
        weights[tid] = inp.emb[src]
        if bias is not None:
            bias[tid] = inp.bias[src]
        how[tid], source_row[tid] = SPECIAL, src


def random_normal_rows(emb: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n rows from N(mean, sd) of `emb`'s rows, per dimension, from a generator seeded with `seed`."""
    mean, sd = emb.mean(0), emb.std(0)
    gen = torch.Generator().manual_seed(seed)
    return mean + sd * torch.randn(n, emb.shape[1], generator=gen, dtype=emb.dtype)


def _source_lookup(inp: InitInputs) -> dict[tuple[str, bool], int]:
    """(normalised text, word start) -> source id, the lowest id where several share a key. Source specials
    take no part: they are matched by role."""
    src_special, _ = _specials(inp)
    fam = family(inp.src_tok)
    lookup: dict[tuple[str, bool], int] = {}
    for token, i in sorted(inp.src_tok.get_vocab().items(), key=lambda kv: kv[1]):
        if i < inp.emb.shape[0] and i not in src_special:
            lookup.setdefault(canonical(token, fam), i)
    return lookup


def _normaliser(tok) -> Callable[[str], str]:
    norm = tok.backend_tokenizer.normalizer
    return (lambda s: s) if norm is None else norm.normalize_str


def _overlap_candidates(inp: InitInputs) -> dict[int, int]:
    """Target id -> the source id of the same string (normalised by the source, word-start marking kept): the
    overlap that overlap copies, FVT's one-piece tokens are checked against, and FOCUS's copies are read back
    from."""
    lookup, norm, fam = _source_lookup(inp), _normaliser(inp.src_tok), family(inp.tgt_tok)
    out = {}
    for tid, token in enumerate(inp.tgt_tok.convert_ids_to_tokens(list(range(len(inp.tgt_tok))))):
        text, start = canonical(token, fam)
        src = lookup.get((norm(text), start))
        if src is not None:
            out[tid] = src
    return out


# --- the methods -------------------------------------------------------------------------------------------

def init_overlap(inp: InitInputs) -> Init:
    """A target token whose text, after the source tokenizer's normaliser and with its word-start / "##"
    marking, is a source token copies that row (and its bias); the others are random-normal. The baseline
    every published method builds on (FOCUS and WECHSEL copy it too)."""
    n_tgt = len(inp.tgt_tok)
    weights = random_normal_rows(inp.emb, n_tgt, inp.seed)
    bias = torch.zeros(n_tgt, dtype=inp.emb.dtype) if inp.bias is not None else None
    how, source_row = np.full(n_tgt, RANDOM, dtype=np.int8), np.full(n_tgt, -1, dtype=np.int64)
    for tid, src in _overlap_candidates(inp).items():
        weights[tid] = inp.emb[src]
        if bias is not None:
            bias[tid] = inp.bias[src]
        how[tid], source_row[tid] = COPIED, src
    _by_role(inp, weights, bias, how, source_row)
    return Init(weights, bias, how, source_row)


def _wordpiece_continuation(text: str, vocab: dict[str, int], unk: int) -> list[int]:
    """A "##" piece cut by the source's WordPiece rule inside a word: greedy longest match, every piece looked
    up with "##" (the source tokenizer alone would cut the text as a word start)."""
    ids, i = [], 0
    while i < len(text):
        for j in range(len(text), i, -1):
            piece = vocab.get("##" + text[i:j])
            if piece is not None:
                ids.append(piece)
                i = j
                break
        else:
            return [unk]
    return ids


def fvt_pieces(inp: InitInputs) -> list[list[int]]:
    """Per target id, the source ids FVT averages: the target token's text cut by the source tokenizer (without
    special tokens); a WordPiece "##" piece is cut as a continuation when the source is WordPiece. [UNK] pieces
    are dropped: a token the source cannot spell gets no pieces."""
    fam_t, fam_s = family(inp.tgt_tok), family(inp.src_tok)
    vocab = inp.src_tok.get_vocab()
    unk = inp.src_roles["unk"]
    norm = _normaliser(inp.src_tok)
    out = []
    for token in inp.tgt_tok.convert_ids_to_tokens(list(range(len(inp.tgt_tok)))):
        text, start = canonical(token, fam_t)
        if not start and fam_s == "wordpiece":
            ids = _wordpiece_continuation(norm(text), vocab, unk)
        else:
            # a word start is cut as a word: SentencePiece / byte-level BPE mark it with the leading space
            ids = inp.src_tok(text if fam_s == "wordpiece" or not start else " " + text,
                              add_special_tokens=False)["input_ids"]
        out.append([i for i in ids if i != unk and i < inp.emb.shape[0]])
    return out


def init_fvt(inp: InitInputs) -> Init:
    """Fast Vocabulary Transfer (Gee et al., 2022): each target token's row is the mean of the source rows of
    the pieces the source tokenizer cuts it into (its bias the mean of theirs). One piece that is the token's own
    string counts as copied; a token with no known piece is random-normal."""
    n_tgt = len(inp.tgt_tok)
    pieces = fvt_pieces(inp)
    weights = random_normal_rows(inp.emb, n_tgt, inp.seed)
    bias = torch.zeros(n_tgt, dtype=inp.emb.dtype) if inp.bias is not None else None
    how, source_row = np.full(n_tgt, RANDOM, dtype=np.int8), np.full(n_tgt, -1, dtype=np.int64)
    same_string = _overlap_candidates(inp)
    for tid, ids in enumerate(pieces):
        if not ids:
            continue
        idx = torch.as_tensor(ids)
        weights[tid] = inp.emb[idx].mean(0)
        if bias is not None:
            bias[tid] = inp.bias[idx].mean()
        if len(ids) == 1 and same_string.get(tid) == ids[0]:
            how[tid], source_row[tid] = COPIED, ids[0]
        else:
            how[tid] = COMPOSED
    _by_role(inp, weights, bias, how, source_row)
    return Init(weights, bias, how, source_row,
                {"pieces_per_token_mean": float(np.mean([len(p) for p in pieces if p] or [0]))})


def init_random_normal(inp: InitInputs) -> Init:
    """Every row, special tokens included, from N(mean, sd) of the source embedding matrix per dimension
    (seeded), bias 0: what the body alone is worth with embeddings that only match the source's scale."""
    n_tgt = len(inp.tgt_tok)
    bias = torch.zeros(n_tgt, dtype=inp.emb.dtype) if inp.bias is not None else None
    return Init(random_normal_rows(inp.emb, n_tgt, inp.seed), bias, np.full(n_tgt, RANDOM, dtype=np.int8),
                np.full(n_tgt, -1, dtype=np.int64))


@contextlib.contextmanager
def _quiet():
    """The libraries print progress bars and banners; the trial's log gets our one-line summary instead."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _copied_rows(inp: InitInputs, weights: torch.Tensor, how: np.ndarray, source_row: np.ndarray,
                 candidates: dict[int, int]) -> None:
    """Mark the target rows a library copied: rows equal, bit for bit, to the source row of the same string."""
    for tid, src in candidates.items():
        if torch.equal(weights[tid], inp.emb[src].to(weights.dtype)):
            how[tid], source_row[tid] = COPIED, src


def init_focus(inp: InitInputs) -> Init:
    """FOCUS through `deepfocus` (not re-implemented): its exact-match overlap is copied, every other token is a
    sparsemax-weighted mix of overlap rows, by cosine similarity of fastText vectors of target tokens trained on
    the target corpus tokenized by the target tokenizer (the sweep's `fasttext` node: `options.focus_vectors`).
    Tokens without a fastText vector are random-normal, from the library's generator seeded with `seed`.

    Wrapped, not called bare: the library matches special tokens by string (a RoBERTa source has no "[CLS]"),
    so roles are set after it; it only returns the matrix, so which rows it copied is read back by comparing
    them with the source rows of the same string, and which it drew at random from its own rule (no fastText
    vector), asked of the same model."""
    import fasttext
    from deepfocus import FOCUS
    from deepfocus.focus import is_very_rare_token

    o = inp.options
    path = o.focus_vectors
    if not path or not Path(path).is_file():
        raise StageError(f"focus needs fastText vectors of the target tokens: {path!r} is not a file. In a sweep "
                         "the fasttext node writes it; alone, train one with stages/vectors.py (a fastText .bin "
                         "trained on target text tokenized by the target tokenizer, one token per word)")
    s = o.focus
    for side, tok in (("source", inp.src_tok), ("target", inp.tgt_tok)):
        if family(tok) == "unigram" and sum(t.startswith("▁") for t in tok.get_vocab()) <= 100:
            inp.log(f"[focus] warning: the {side} vocabulary has at most 100 '▁' tokens, under deepfocus's threshold "
                    "for reading it as SentencePiece: it matches its overlap by its byte-level BPE rule instead")
    with _quiet():
        weights = FOCUS(target_tokenizer=inp.tgt_tok, source_tokenizer=inp.src_tok,
                        source_embeddings=inp.emb.float(), auxiliary_embedding_mode="fasttext-tokenlevel",
                        fasttext_model_path=str(path), exact_match_all=s.exact_match_all,
                        match_symbols=s.match_symbols, fuzzy_match_all=s.fuzzy_match_all, processes=1,
                        seed=inp.seed, device="cpu", verbosity="silent").to(inp.emb.dtype)
        model = fasttext.load_model(str(path))
    n_tgt = len(inp.tgt_tok)
    how, source_row = np.full(n_tgt, COMPOSED, dtype=np.int8), np.full(n_tgt, -1, dtype=np.int64)
    tokens = inp.tgt_tok.convert_ids_to_tokens(list(range(n_tgt)))
    for tid, token in enumerate(tokens):
        if is_very_rare_token(token, model):
            how[tid] = RANDOM
    candidates = _overlap_candidates(inp)
    _copied_rows(inp, weights, how, source_row, candidates)
    bias = None
    if inp.bias is not None:
        bias = torch.zeros(n_tgt, dtype=inp.emb.dtype)
        copied = np.flatnonzero(how == COPIED)
        bias[copied] = inp.bias[source_row[copied]]
    _by_role(inp, weights, bias, how, source_row)
    return Init(weights, bias, how, source_row, {"fasttext": str(path)})


def read_dictionary(path: str) -> list[tuple[str, str]]:
    """A bilingual dictionary in WECHSEL's format: one pair per line, source-language word, a tab (or spaces),
    target-language word. Raises naming the line when one is malformed."""
    p = Path(path)
    if not p.is_file():
        raise StageError(f"wechsel: bilingual dictionary {path!r} is not a file. Give a text file with one "
                         "pair per line: source-language word <TAB> target-language word (e.g. 'hund\\tdog')")
    pairs = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split("\t") if "\t" in line else line.split()
        if len(parts) != 2 or not all(parts):
            raise StageError(f"{path}:{n}: expected 'source word<TAB>target word', got {line!r}")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise StageError(f"wechsel: bilingual dictionary {path} has no pairs; one per line: source word <TAB> "
                         "target word")
    return pairs


def check_wechsel_files(dictionary: str | None, source_vectors: str | None,
                        target_vectors: str | None) -> list[tuple[str, str]]:
    """What wechsel reads, checked before any trial starts: the dictionary's format (its pairs are returned) and
    the vector files."""
    pairs = read_dictionary(dictionary or "")
    for side, path in (("source", source_vectors), ("target", target_vectors)):
        if path is not None and not Path(path).is_file():
            raise StageError(f"wechsel: {side}-language fastText vectors {path!r} are not a file. Give a fastText "
                             f"binary model (.bin, e.g. cc.<lang>.300.bin from fasttext.cc, downloaded by hand: the "
                             f"library's own download needs a network), or leave it out to train one in the sweep")
    return pairs


def init_wechsel(inp: InitInputs) -> Init:
    """WECHSEL through `wechsel` (not re-implemented): fastText word vectors of both languages, aligned by
    orthogonal Procrustes on the bilingual dictionary, embed every subword of both vocabularies; a target token is
    the softmax(similarity / temperature) mix of its `neighbors` nearest source subwords. Tokens without a
    vector take the library's random-normal fallback (its own fixed seed, 1234).

    Wrapped: both vector files are given as local paths (the library would download them), must have the same
    dimension (its reduction step reduces the source model in both branches, a bug in 0.0.4), and special tokens
    are set by role after it. A dictionary none of whose target words is a target token is refused: the
    alignment would rest on nothing the target vocabulary spells."""
    import fasttext
    from wechsel import WECHSEL

    o = inp.options
    pairs = check_wechsel_files(o.wechsel_dictionary, o.wechsel_source_vectors, o.wechsel_target_vectors)
    tgt_vocab = inp.tgt_tok.get_vocab()
    known = sum(1 for _, w in pairs if w in tgt_vocab or w.lower() in tgt_vocab)
    # WECHSEL's published dictionaries (dicts/data/<language>.txt) put the English word first, for English ->
    # X; moving X -> English needs them the other way round. The column that spells more target tokens is the
    # target column: a reversed file would align the two spaces on swapped pairs and raise nothing.
    reversed_known = sum(1 for w, _ in pairs if w in tgt_vocab or w.lower() in tgt_vocab)
    if reversed_known > known:
        raise StageError(f"wechsel: {o.wechsel_dictionary} looks reversed: its first column spells {reversed_known} "
                         f"target-vocabulary tokens, its second {known}; the format is source-language word <TAB> "
                         "target-language word. Swap the columns: awk -F'\\t' '{print $2 \"\\t\" $1}' in > out")
    if known == 0:
        raise StageError(f"wechsel: none of the {len(pairs)} target words of {o.wechsel_dictionary} is a token of "
                         "the target vocabulary; is the dictionary's direction source<TAB>target, and its target "
                         "language the target corpus's?")
    with _quiet():
        src_model = fasttext.load_model(str(o.wechsel_source_vectors))
        tgt_model = fasttext.load_model(str(o.wechsel_target_vectors))
    if src_model.get_dimension() != tgt_model.get_dimension():
        raise StageError(f"wechsel: the source vectors have dimension {src_model.get_dimension()} and the target "
                         f"vectors {tgt_model.get_dimension()}; give vectors of one dimension (fasttext.util."
                         "reduce_model reduces a .bin)")
    s = o.wechsel
    with _quiet():
        w = WECHSEL(src_model, tgt_model, bilingual_dictionary=str(o.wechsel_dictionary))
        matrix, info = w.apply(inp.src_tok, inp.tgt_tok, inp.emb.double().numpy(), neighbors=s.neighbors,
                               temperature=s.temperature)
    weights = torch.as_tensor(matrix, dtype=inp.emb.dtype)
    n_tgt = len(inp.tgt_tok)
    how, source_row = np.full(n_tgt, COMPOSED, dtype=np.int8), np.full(n_tgt, -1, dtype=np.int64)
    not_found = set(info.not_found)
    for tid, token in enumerate(inp.tgt_tok.convert_ids_to_tokens(list(range(n_tgt)))):
        if token in not_found:
            how[tid] = RANDOM
    bias = torch.zeros(n_tgt, dtype=inp.emb.dtype) if inp.bias is not None else None
    _by_role(inp, weights, bias, how, source_row)
    return Init(weights, bias, how, source_row, {"dictionary_pairs": len(pairs), "dictionary_known": known})


# name -> function: the methods of this module. frequency / random-map / keep are row maps
# (stages/transfer.py); scratch / build start from random weights.
INITS: dict[str, Callable[[InitInputs], Init]] = {
    "overlap": init_overlap,
    "fvt": init_fvt,
    "random-normal": init_random_normal,
    "focus": init_focus,
    "wechsel": init_wechsel,
}


# --- diagnostics -------------------------------------------------------------------------------------------

def nearest_cosines(rows: torch.Tensor, emb: torch.Tensor, k: int = NEAREST_K, chunk: int = 4096) -> np.ndarray:
    """Per row: cosine to its nearest source row and mean cosine to its k nearest, [n, 2]."""
    if len(rows) == 0:
        return np.zeros((0, 2))
    src = torch.nn.functional.normalize(emb.float(), dim=1)
    out = []
    for i in range(0, len(rows), chunk):
        sims = torch.nn.functional.normalize(rows[i:i + chunk].float(), dim=1) @ src.T
        top = sims.topk(min(k, src.shape[0]), dim=1).values
        out.append(torch.stack([top[:, 0], top.mean(1)], 1))
    return torch.cat(out).numpy()


def diagnostics(weights: torch.Tensor, how: np.ndarray, source_row: np.ndarray, emb: torch.Tensor,
                tgt_tokens: list[str], src_tokens: list, special: set[int]) -> dict:
    """Counts of copied / composed / random / special rows, the identity rate (ordinary target tokens whose row
    is the source row of the same string) and, over the rows not copied, the cosine to the nearest source row
    and the mean cosine to the 10 nearest: how far a composed row sits from anything the body has seen."""
    counts = {name: int((how == code).sum()) for code, name in enumerate(HOW)}
    ordinary = [i for i in range(len(how)) if i not in special]
    identity = sum(1 for i in ordinary if source_row[i] >= 0 and src_tokens[int(source_row[i])] == tgt_tokens[i])
    fresh = np.flatnonzero((how == COMPOSED) | (how == RANDOM))
    cos = nearest_cosines(weights[torch.as_tensor(fresh, dtype=torch.long)], emb)
    out = {"rows": counts, "identity_count": int(identity),
           "identity_rate": identity / len(ordinary) if ordinary else 0.0}
    for name, code in (("composed", COMPOSED), ("random", RANDOM)):
        sel = how[fresh] == code
        if sel.any():
            out[f"{name}_nearest_cosine"] = float(cos[sel, 0].mean())
            out[f"{name}_top{NEAREST_K}_cosine"] = float(cos[sel, 1].mean())
    return out


def movement(init_state: dict[str, torch.Tensor], final_state: dict[str, torch.Tensor]) -> dict[str, float]:
    """How far continued pretraining moved the weights from their initial values: ||W - W0||_F / ||W0||_F over
    the word embeddings, over each encoder layer's tensors together, and over the whole body (every tensor but
    the word embeddings and the MLM head)."""
    groups: dict[str, list[str]] = {}
    for name in init_state:
        if name not in final_state or not init_state[name].is_floating_point():
            continue
        if name.endswith("word_embeddings.weight"):
            groups.setdefault("embeddings", []).append(name)
            continue
        if ".cls." in f".{name}" or name.startswith("cls.") or ".lm_head." in f".{name}":
            continue
        parts = name.split(".")
        if "layer" in parts:
            i = parts.index("layer")
            groups.setdefault(f"layer{int(parts[i + 1])}", []).append(name)
        groups.setdefault("body", []).append(name)
    out = {}
    for g, names in groups.items():
        num = sum(float((final_state[n].float() - init_state[n].float()).pow(2).sum()) for n in names)
        den = sum(float(init_state[n].float().pow(2).sum()) for n in names)
        out[g] = (num ** 0.5) / (den ** 0.5) if den > 0 else float("nan")
    return out

