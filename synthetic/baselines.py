"""Baselines measured into the manifest: majority class, bag-of-words and bigram logistic regressions,
lexical overlap, and the per-task stats built on them."""
from __future__ import annotations


# --- baselines ------------------------------------------------------------------------------------
def baselines(train: list, dev: list, pair: bool) -> dict:
    """Dev accuracy of the majority class, a unigram and a unigram+bigram bag-of-words logistic regression.

    Pairs get separate bags for the two sentences (stronger than one bag: it sees words that appear only
    in the hypothesis). Single-letter words count (token pattern \\w+), since "a" vs "some" matters here.
    """
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    y_tr = [ex["label"] for ex in train]
    y_dev = [ex["label"] for ex in dev]
    ones = sum(y_tr) / len(y_tr)
    majority = 1 if ones >= 0.5 else 0
    out = {"majority": round(sum(1 for y in y_dev if y == majority) / len(y_dev), 4)}
    for name, ngrams in (("bow", (1, 1)), ("bigram", (1, 2))):
        cols = ["text", "text2"] if pair else ["text"]
        xs_tr, xs_dev = [], []
        for col in cols:
            vec = CountVectorizer(ngram_range=ngrams, token_pattern=r"(?u)\b\w+\b")
            xs_tr.append(vec.fit_transform([ex[col] for ex in train]))
            xs_dev.append(vec.transform([ex[col] for ex in dev]))
        x_tr, x_dev = hstack(xs_tr).tocsr(), hstack(xs_dev).tocsr()
        clf = LogisticRegression(max_iter=2000, C=1.0)
        clf.fit(x_tr, y_tr)
        out[name] = round(float((clf.predict(x_dev) == y_dev).mean()), 4)
    if pair:
        out["overlap"] = _overlap_baseline(train, dev)
    return out


def _overlap_baseline(train: list, dev: list) -> float:
    """Logistic regression on lexical overlap features (share of hypothesis words in the premise, length
    difference, new words): RTE must not be decidable this way."""
    from sklearn.linear_model import LogisticRegression

    def feats(ex):
        p, h = ex["text"].lower().rstrip(".").split(), ex["text2"].lower().rstrip(".").split()
        ps = set(p)
        new = sum(1 for w in h if w not in ps)
        return [1 - new / len(h), len(p) - len(h), new, len(h)]

    clf = LogisticRegression(max_iter=2000)
    clf.fit([feats(ex) for ex in train], [ex["label"] for ex in train])
    pred = clf.predict([feats(ex) for ex in dev])
    return round(float(sum(int(a == ex["label"]) for a, ex in zip(pred, dev)) / len(dev)), 4)


def _task_stats(splits: dict, pair: bool) -> dict:
    st = {}
    for split, exs in splits.items():
        lens = [len(ex["text"].split()) + (len(ex["text2"].split()) if pair else 0) for ex in exs]
        st[split] = {"examples": len(exs), "positive_rate": round(sum(ex["label"] for ex in exs) / len(exs), 4),
                     "mean_words": round(sum(lens) / len(lens), 2), "max_words": max(lens)}
    st["baselines"] = baselines(splits["train"], splits["dev"], pair)
    return st
