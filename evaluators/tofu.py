"""TOFU metrics on the forget, retain, real-author and world-fact splits -> one flat dict of named figures.

Definitions follow ../shared/REFERENCES.md (TOFU section): greedy generation scored with ROUGE-L recall and
exact match; teacher-forced answer probability, token accuracy and truth ratio; model utility; the MIA
suite of the forget set against the holdout authors; and, against the retain model (`RetainReference`),
forget quality and privleak.
"""

from __future__ import annotations

import math
from statistics import mean

from scipy.stats import hmean, ks_2samp

from evaluators import mia, text
from evaluators.base import EvalResult
from evaluators.reference import RetainReference
from harness.metrics import Metric

GENERATED_SPLITS = ("forget", "retain", "real_authors", "world_facts")
NORMALISED_PROB_SPLITS = ("real_authors", "world_facts")
PARAPHRASED_SPLITS = ("forget", "retain")  # their truth ratio's "correct" answer is the paraphrase
UTILITY_SPLITS = ("retain", "real_authors", "world_facts")
UTILITY_METRICS = ("prob", "rougeL_recall", "truth_ratio")


def _forget_quality_floor(column: str, counts: dict[str, int], boards: list) -> float:
    """One forget item moves the KS statistic by 1/n: the largest log10 step of the p-value next to any value
    the leaderboards hold."""
    n = counts.get("forget", 0)
    if not n:
        return 0.0
    base = list(range(n))
    steps = [math.log10(max(ks_2samp(base, [x + k for x in base]).pvalue, 1e-300)) for k in range(n + 1)]
    values = [v for b in boards if column in b for v in b[column].dropna()]
    floor = 0.0
    for value in values:
        k = min(range(len(steps)), key=lambda i: abs(steps[i] - math.log10(max(value, 1e-300))))
        floor = max(floor, *(abs(steps[j] - steps[k]) for j in (k - 1, k + 1) if 0 <= j < len(steps)))
    return floor


def _privleak_floor(column: str, counts: dict[str, int], boards: list) -> float:
    """One forget item moves the AUC by 1/n, and privleak by that over the retain model's 1 - AUC."""
    forget = counts.get("forget", 0)
    if not forget:
        return 0.0
    auc = f"mia_{column.removeprefix('privleak_')}_auc"
    retain = [b.loc[b["method"] == "retain", auc] for b in boards if auc in b]
    gap = min((1 - v for r in retain for v in r.dropna()), default=1.0)
    return 100 / (forget * max(gap, 1e-10))


def _split(split: str, better: str) -> Metric:
    return Metric(f"{split}_*", better, f"{split} split", items=(split,))


# What each column means (harness/metrics.py): defaults in `harness table`'s order, then the families.
METRICS = [
    Metric(
        "forget_em_contains", "lower", "forget exact match (contains)", default=True, role="forget", items=("forget",)
    ),
    Metric(
        "retain_em_contains", "higher", "retain exact match (contains)", default=True, role="retain", items=("retain",)
    ),
    Metric(
        "world_facts_em_contains", "higher", "world facts exact match (contains)", default=True, items=("world_facts",)
    ),
    Metric("forget_rougeL_recall", "lower", "forget ROUGE-L recall", default=True, items=("forget",)),
    Metric("retain_rougeL_recall", "higher", "retain ROUGE-L recall", default=True, items=("retain",)),
    Metric(
        "model_utility",
        "higher",
        "model utility",
        default=True,
        role="utility",
        items=UTILITY_SPLITS,
        parts=tuple(f"{s}_{m}" for s in UTILITY_SPLITS for m in UTILITY_METRICS),
    ),
    Metric(
        "forget_quality",
        "higher",
        "forget quality (KS p-value)",
        default=True,
        tolerance=1.0,
        scale="log10",
        floor=_forget_quality_floor,
    ),
    Metric("mia_loss_auc", "half", "MIA AUC (LOSS)", default=True, role="privacy", items=("forget",)),
    Metric("forget_truth_ratio", "higher", "forget truth ratio", items=("forget",)),
    _split("forget", "lower"),
    *(_split(s, "higher") for s in UTILITY_SPLITS),
    Metric("mia_*_auc", "half", "MIA AUC", items=("forget",)),
    Metric("mia_score", "higher", "MIA score", items=("forget",), item_weight=2.0),
    Metric("privleak_*", "zero", "privleak", tolerance=10.0, floor=_privleak_floor),
    Metric("lume_style_*", "higher", "LUME-style aggregate", items=("forget", "retain")),
]


def answer_prob(scored: dict) -> float:
    """TOFU Prob: p(a|q) = exp(-NLL_sum / n_answer_tokens), EOS counted."""
    return math.exp(-scored["nll_sum"] / scored["n_tokens"])


def normalised_prob(true_scored: dict, perturbed_scored: list[dict]) -> float:
    """TOFU Prob on real authors / world facts: p_true / (p_true + sum_i p_perturbed_i)."""
    p_true = answer_prob(true_scored)
    return p_true / (p_true + sum(answer_prob(s) for s in perturbed_scored))


def truth_ratio(correct_scored: dict, perturbed_scored: list[dict]) -> float:
    """TOFU's raw R = exp(-mean_i avgNLL(perturbed_i)) / exp(-avgNLL(correct)); R < 1 prefers the correct."""
    return math.exp(correct_scored["avg_nll"] - mean(s["avg_nll"] for s in perturbed_scored))


def truth_ratio_stat(split: str, ratios: list[float]) -> float:
    """Forget: mean(min(R, 1/R)), highest when the model cannot tell correct from perturbed. Retain, real
    authors, world facts: mean(max(0, 1 - R)), highest when it prefers the correct answer."""
    if split == "forget":
        return mean(min(r, 1 / r) for r in ratios)
    return mean(max(0.0, 1 - r) for r in ratios)


def model_utility(metrics: dict[str, float]) -> float:
    """TOFU model utility: `scipy.stats.hmean` of {retain, real authors, world facts} x {Prob, ROUGE-L,
    truth ratio}; any zero makes it zero."""
    values = [metrics[f"{s}_{m}"] for s in UTILITY_SPLITS for m in UTILITY_METRICS]
    return 0.0 if min(values) <= 0 else float(hmean(values))


def lume_style_aggregate(metrics: dict[str, float]) -> dict[str, float]:
    """Our LUME-style aggregate on TOFU (REFERENCES.md; the SIMU paper's own TOFU aggregate is undefined):
    mean(task_aggregate, mia_score, utility) with task_aggregate = hmean(1-forget ROUGE-L, 1-forget EM,
    retain ROUGE-L, retain EM), EM being em_contains, mia_score = 1 - 2|AUC_loss - 0.5| and utility the
    world-facts em_contains."""
    task = [
        1 - metrics["forget_rougeL_recall"],
        1 - metrics["forget_em_contains"],
        metrics["retain_rougeL_recall"],
        metrics["retain_em_contains"],
    ]
    task_aggregate = 0.0 if min(task) <= 0 else float(hmean(task))
    score = mia.mia_score(metrics["mia_loss_auc"])
    return {
        "lume_style_task_aggregate": task_aggregate,
        "mia_score": score,
        "lume_style_aggregate": mean([task_aggregate, score, metrics["world_facts_em_contains"]]),
    }


def item_record(
    split: str,
    index: int,
    row: dict,
    prompt: str,
    generation: str,
    scored: dict,
    correct: dict,
    perturbed: list[dict],
    min_k: float,
) -> dict:
    """One question's figures: generation scores, teacher-forced scores, raw truth ratio and, on the forget
    split, its MIA attack scores. `correct` is the truth ratio's correct answer (the paraphrase on forget and
    retain), `perturbed` the perturbed answers' scores."""
    prob = normalised_prob(scored, perturbed) if split in NORMALISED_PROB_SPLITS else answer_prob(scored)
    item = {
        "split": split,
        "index": index,
        "prompt": prompt,
        "generation": generation,
        "gold": row["answer"],
        "rougeL_recall": text.rouge_l_recall(row["answer"], generation),
        "em_strict": text.em_strict(row["answer"], generation),
        "em_contains": text.em_contains(row["answer"], generation),
        "em_token": scored["em_token"],
        "prob": prob,
        "avg_nll": scored["avg_nll"],
        "truth_ratio_raw": truth_ratio(correct, perturbed),
    }
    if split == "forget":
        item |= {f"mia_{a}_score": v for a, v in mia.attack_scores(scored, row["answer"], min_k).items()}
    return item


def split_metrics(split: str, items: list[dict]) -> dict[str, float]:
    """`<split>_<figure>`: the mean of each item figure, and the split's truth-ratio statistic."""
    keys = ("rougeL_recall", "em_strict", "em_contains", "em_token", "prob")
    metrics = {f"{split}_{k}": mean(item[k] for item in items) for k in keys}
    metrics[f"{split}_truth_ratio"] = truth_ratio_stat(split, [item["truth_ratio_raw"] for item in items])
    return metrics


def mia_record(split: str, index: int, row: dict, scored: dict, min_k: float) -> dict:
    """One side of the membership test: an item's attack scores."""
    return {
        "split": split,
        "index": index,
        "gold": row["answer"],
        "avg_nll": scored["avg_nll"],
        **{f"mia_{a}_score": v for a, v in mia.attack_scores(scored, row["answer"], min_k).items()},
    }


def suite_metrics(metrics: dict[str, float], items: list[dict]) -> dict[str, float]:
    """What the split figures add up to: each attack's AUC (forget against holdout), model utility and our
    LUME-style aggregate."""
    out = {}
    forget = [i for i in items if i["split"] == "forget"]
    holdout = [i for i in items if i["split"] == "holdout"]
    for attack in mia.ATTACKS:
        key = f"mia_{attack}_score"
        out[f"mia_{attack}_auc"] = mia.auc([i[key] for i in forget], [i[key] for i in holdout])
    out["model_utility"] = model_utility(metrics | out)
    return out | lume_style_aggregate(metrics | out)


def reference_metrics(result: EvalResult, reference: RetainReference) -> dict[str, float]:
    """Forget quality, `ks_2samp(R_model_forget, R_retain_forget).pvalue`, and privleak per MIA attack.
    (open-unlearning labels forget 0 but scores by loss, so its AUCs have our orientation.)"""
    ratios = [i["truth_ratio_raw"] for i in result.items if i["split"] == "forget"]
    metrics = {"forget_quality": float(ks_2samp(ratios, reference.forget_truth_ratios).pvalue)}
    for attack, ref_auc in reference.mia_auc.items():
        metrics[f"privleak_{attack}"] = mia.privleak(result.metrics[f"mia_{attack}_auc"], ref_auc)
    return metrics
