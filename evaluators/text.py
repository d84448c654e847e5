"""Text metrics: ROUGE-L recall (rouge-score, as TOFU computes it) and the exact-match variants."""

from __future__ import annotations

import re
import string
from functools import lru_cache

from rouge_score import rouge_scorer

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


@lru_cache(maxsize=1)
def _scorer():
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(gold: str, generation: str) -> float:
    """TOFU: `RougeScorer(["rougeL"], use_stemmer=True).score(gt, gen)["rougeL"].recall`."""
    return _scorer().score(gold, generation)["rougeL"].recall


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace (SQuAD-style, keeping articles)."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def em_strict(gold: str, generation: str) -> float:
    """1 if the normalised generation equals the normalised gold."""
    return float(normalize(gold) == normalize(generation))


def em_contains(gold: str, generation: str) -> float:
    """1 if the normalised gold occurs in the normalised generation (the paper tables' 'EM')."""
    g, s = normalize(gold), normalize(generation)
    return float(bool(g) and f" {g} " in f" {s} ")


@lru_cache(maxsize=2)
def _l_scorer(stemmer: bool):
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)


def rouge_l(gold: str, generation: str, measure: str = "fmeasure", stemmer: bool = True) -> float:
    """ROUGE-L of `generation` against `gold` (rouge-score): `fmeasure` (F1), `recall` or `precision`."""
    return getattr(_l_scorer(stemmer).score(gold, generation)["rougeL"], measure)
