#!/usr/bin/env python3
"""Would a Japanese word segmenter or passage-window scoring close the Japanese recall gap?

An experiment, not part of the product (docs/RETRIEVAL.md, "Japanese: a morphological analyser
and passage windows, measured"). It reads the chunks `mailroom eval retrieval --reuse` left in
its database and ranks every `simple`-configuration chunk (the Chinese and Japanese ones) for
the set's Japanese and Chinese questions with BM25 (k1 1.2, idf over those chunks, as
`vector_store::lexical` does) under several analyses, printing the rank of the first right
chunk per question and how many land in the first four.

`tokens_bigram` approximates `vector_store::lexical::index_text` for Han/kana runs (the
product's own analysis is the Rust one; this copy only lets the variants be compared on the
same footing, and reproduces the product's lexical Japanese 6/10 and Chinese 8/10).

    target/debug/mailroom eval retrieval --reuse
    pip install --target /tmp/ja-exp fugashi unidic-lite tinysegmenter
    PYTHONPATH=/tmp/ja-exp python3 scripts/ja-lexical-experiment.py [database [set]]

`set` defaults to tests/retrieval-eval/set.json; tests/retrieval-eval/heldout.json holds
questions written after the experiment's first run, by writers who saw only the manuals, to
check what the first run found on questions it was not chosen on.
"""

import collections
import json
import math
import re
import subprocess
import sys

import fugashi  # MeCab with the UniDic-lite dictionary (PyPI: fugashi, unidic-lite)
import tinysegmenter  # a dictionary-free statistical segmenter (PyPI: tinysegmenter)

DATABASE = sys.argv[1] if len(sys.argv) > 1 else "mailroom_eval"
SET = json.load(open(sys.argv[2] if len(sys.argv) > 2 else "tests/retrieval-eval/set.json"))
SOURCES = {"debian-reference-ja": "debian-reference.ja.pdf", "debian-reference-zh-cn": "debian-reference.zh-cn.pdf"}
QUESTIONS = [q for q in SET["questions"] if q.get("language") in ("ja", "zh") and not q.get("off_topic")]
CHUNKS = [
    c
    for c in json.loads(
        subprocess.run(
            ["psql", "-d", DATABASE, "-Atc",
             "SELECT json_agg(json_build_object('src', source, 'page', page, 'cfg', search_config, 'text', text)) FROM chunks"],
            check=True, capture_output=True, text=True,
        ).stdout
    )
    if c["cfg"] == "simple"
]
MECAB = fugashi.Tagger()
TINY = tinysegmenter.TinySegmenter()


def writing(c):
    o = ord(c)
    if 0x3040 <= o <= 0x309F:
        return "H"
    if 0x30A0 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF or 0xFF66 <= o <= 0xFF9F:
        return "K"
    if 0x3005 <= o <= 0x3007 or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
        return "C"
    return None


def has_kana(text):
    return any(writing(c) in ("H", "K") for c in text)


def tokens_bigram(text, hiragana=True):
    """Runs cut where the writing system changes, bigrams, Han characters also alone."""
    out, run, word = [], [], []

    def flush():
        if run and (hiragana or writing(run[0]) != "H"):
            if len(run) == 1:
                out.append(run[0])
            else:
                if writing(run[0]) == "C":
                    out.extend(run)
                out.extend(a + b for a, b in zip(run, run[1:]))
        run.clear()

    for c in text:
        if writing(c):
            if word:
                out.append("".join(word).lower())
                word.clear()
            if run and writing(run[-1]) != writing(c):
                flush()
            run.append(c)
        else:
            flush()
            if c.isalnum():
                word.append(c)
            elif word:
                out.append("".join(word).lower())
                word.clear()
    flush()
    if word:
        out.append("".join(word).lower())
    return out


CONTENT = {"名詞", "動詞", "形容詞", "副詞", "形状詞", "接頭辞", "接尾辞"}


def tokens_mecab(text):
    """Content words (by UniDic part of speech) as lemmas; particles and auxiliaries dropped."""
    out = []
    for w in MECAB(text):
        if not any(writing(c) for c in w.surface):
            if re.match(r"\w", w.surface):
                out.append(w.surface.lower())
            continue
        if w.feature.pos1 in CONTENT:
            lemma = (w.feature.lemma or w.surface).split("-")[0]
            if not (len(lemma) == 1 and writing(lemma[0]) == "H"):
                out.append(lemma)
    return out


def tokens_tiny(text):
    """TinySegmenter words, short Hiragana words (particles) dropped."""
    out = []
    for w in TINY.tokenize(text):
        if not any(writing(c) for c in w):
            if re.match(r"\w", w):
                out.append(w.lower())
        elif not (all(writing(c) == "H" for c in w) and len(w) <= 2):
            out.append(w)
    return out


def japanese(segment, with_bigrams):
    """A Japanese analysis for text with kana; Chinese text keeps the bigram analysis."""
    def analyse(text):
        if not has_kana(text):
            return tokens_bigram(text)
        return segment(text) + (tokens_bigram(text, hiragana=False) if with_bigrams else [])
    return analyse


def squash(s):
    return re.sub(r"\s+", "", s)


def evaluate(name, analyse, window=None, k1=1.2):
    """BM25 per chunk, or (window = characters) the best BM25 of any half-overlapping window."""
    docs = [collections.Counter(analyse(c["text"])) for c in CHUNKS]
    df = collections.Counter()
    for d in docs:
        df.update(d.keys())
    n = len(docs)
    idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
    unseen = math.log(1 + (n + 0.5) / 0.5)
    if window:
        parts = [[collections.Counter(analyse(c["text"][i:i + window]))
                  for i in range(0, max(1, len(c["text"]) - window // 2), window // 2)] for c in CHUNKS]
    else:
        parts = [[d] for d in docs]

    def bm25(counts, terms):
        # A window can cut a word into one no whole chunk has: as rare as a term can be.
        return sum(idf.get(t, unseen) * counts[t] * (k1 + 1) / (counts[t] + k1) for t in terms if counts.get(t))

    ranks = collections.defaultdict(list)
    for q in QUESTIONS:
        terms = set(analyse(q["question"]))
        scored = sorted(((max(bm25(p, terms) for p in parts[i]), i) for i in range(n)), reverse=True)[:50]
        evidence = squash(q.get("evidence", ""))
        rank = next((r + 1 for r, (_, i) in enumerate(scored)
                     if CHUNKS[i]["src"] == SOURCES[q["document"]]
                     and (CHUNKS[i]["page"] in q["pages"] or (evidence and evidence in squash(CHUNKS[i]["text"])))), None)
        ranks[q["language"]].append(rank)
    print(f"{name:44s}", "  ".join(
        f"{lang} {sum(1 for r in rs if r and r <= 4)}/{len(rs)} {['-' if r is None else r for r in rs]}" for lang, rs in ranks.items()))


VARIANTS = [
    ("bigrams (the product's analysis)", tokens_bigram),
    ("MeCab/UniDic content words", japanese(tokens_mecab, False)),
    ("MeCab/UniDic content words + bigrams", japanese(tokens_mecab, True)),
    ("TinySegmenter words", japanese(tokens_tiny, False)),
    ("TinySegmenter words + bigrams", japanese(tokens_tiny, True)),
]
for name, analyse in VARIANTS:
    evaluate(name + ", whole chunk", analyse)
for window in (80, 120, 200, 400):
    for name, analyse in VARIANTS:
        evaluate(f"{name}, best {window}-char window", analyse, window)
