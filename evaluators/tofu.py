"""TOFU metrics on the forget, retain, real-author and world-fact splits -> one flat dict of named figures.

Definitions follow ../shared/REFERENCES.md (TOFU section): greedy generation scored with ROUGE-L recall and
exact match, teacher-forced answer probability and token accuracy, and the LOSS membership attack of the
forget set against the holdout authors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import mean

from evaluators import mia, text
from evaluators.generation import generate
from evaluators.scoring import score_answers
from harness.data.tofu import format_prompt

GENERATED_SPLITS = ("forget", "retain", "real_authors", "world_facts")
NORMALISED_PROB_SPLITS = ("real_authors", "world_facts")


@dataclass
class EvalConfig:
    """Decoding and batching of the evaluation (TOFU decodes up to 200 new tokens)."""

    max_new_tokens: int = 200
    batch_size: int = 32
    template: str = "qa"


@dataclass
class EvalResult:
    """The figures of one model, and the per-item records they were computed from."""

    metrics: dict[str, float]
    items: list[dict] = field(default_factory=list)


def answer_prob(scored: dict) -> float:
    """TOFU Prob: p(a|q) = exp(-NLL_sum / n_answer_tokens), EOS counted."""
    return math.exp(-scored["nll_sum"] / scored["n_tokens"])


def normalised_prob(true_scored: dict, perturbed_scored: list[dict]) -> float:
    """TOFU Prob on real authors / world facts: p_true / (p_true + sum_i p_perturbed_i)."""
    p_true = answer_prob(true_scored)
    return p_true / (p_true + sum(answer_prob(s) for s in perturbed_scored))


def _score_perturbed(model, tokenizer, rows, cfg: EvalConfig) -> list[list[dict]]:
    """Scores of every row's perturbed answers, grouped per row."""
    flat = [(r["question"], p) for r in rows for p in r["perturbed_answer"]]
    scored = score_answers(model, tokenizer, flat, cfg.batch_size, cfg.template, desc="score perturbed")
    grouped, i = [], 0
    for r in rows:
        grouped.append(scored[i:i + len(r["perturbed_answer"])])
        i += len(r["perturbed_answer"])
    return grouped


def evaluate_split(model, tokenizer, name: str, rows: list[dict], cfg: EvalConfig) -> tuple[dict, list[dict]]:
    """Generation and scoring metrics of one split, plus its per-item records."""
    prompts = [format_prompt(r["question"], cfg.template) for r in rows]
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    generations = generate(model, tokenizer, prompt_ids, cfg.max_new_tokens, cfg.batch_size, desc=f"generate {name}")
    scored = score_answers(model, tokenizer, [(r["question"], r["answer"]) for r in rows], cfg.batch_size,
                           cfg.template, desc=f"score {name}")
    perturbed = _score_perturbed(model, tokenizer, rows, cfg) if name in NORMALISED_PROB_SPLITS else None
    items = []
    for i, (row, gen, s) in enumerate(zip(rows, generations, scored)):
        prob = normalised_prob(s, perturbed[i]) if perturbed else answer_prob(s)
        items.append({"split": name, "index": i, "prompt": prompts[i], "generation": gen, "gold": row["answer"],
                      "rougeL_recall": text.rouge_l_recall(row["answer"], gen),
                      "em_strict": text.em_strict(row["answer"], gen),
                      "em_contains": text.em_contains(row["answer"], gen),
                      "em_token": s["em_token"], "prob": prob, "avg_nll": s["avg_nll"]})
    keys = ("rougeL_recall", "em_strict", "em_contains", "em_token", "prob")
    return {f"{name}_{k}": mean(item[k] for item in items) for k in keys}, items


def mia_items(model, tokenizer, rows: list[dict], split: str, cfg: EvalConfig) -> list[dict]:
    """Per-item LOSS-attack records for one side of the membership test."""
    scored = score_answers(model, tokenizer, [(r["question"], r["answer"]) for r in rows], cfg.batch_size,
                           cfg.template, desc=f"score {split}")
    return [{"split": split, "index": i, "gold": r["answer"], "avg_nll": s["avg_nll"],
             "mia_loss_score": mia.loss_score(s["avg_nll"])} for i, (r, s) in enumerate(zip(rows, scored))]


def evaluate(model, tokenizer, splits: dict[str, list[dict]], cfg: EvalConfig) -> EvalResult:
    """All TOFU figures of `model` on the evaluation splits (forget, retain, real_authors, world_facts, holdout)."""
    metrics, items = {}, []
    for name in GENERATED_SPLITS:
        split_metrics, split_items = evaluate_split(model, tokenizer, name, splits[name], cfg)
        metrics.update(split_metrics)
        items += split_items
    holdout = mia_items(model, tokenizer, splits["holdout"], "holdout", cfg)
    members = [mia.loss_score(i["avg_nll"]) for i in items if i["split"] == "forget"]
    metrics["mia_loss_auc"] = mia.auc(members, [i["mia_loss_score"] for i in holdout])
    return EvalResult(metrics, items + holdout)
