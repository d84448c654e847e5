"""TOFU metrics on the forget, retain, real-author and world-fact splits -> one flat dict of named figures.

Definitions follow ../shared/REFERENCES.md (TOFU section): greedy generation scored with ROUGE-L recall and
exact match; teacher-forced answer probability, exact memorization, extraction strength and truth ratio;
model utility; the MIA suite of the forget set against the holdout authors; and, against the retain model
(`RetainReference`), forget quality, privleak and the reference-model attack.

Whose definition, per figure: every figure open-unlearning also reports is computed as its code computes it
(`src/evals/metrics/`, commit d3d7cf9), token sets and epsilons included, and
tests/test_open_unlearning_crosscheck.py holds the figures its code printed on a committed fixture. Ours
alone: the exact-match variants (`em_strict`, `em_contains`, the SIMU paper's EM) and the LUME-style
aggregate.
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
TRUTH_RATIO_EPSILON = 1e-10  # open-unlearning's, in every truth-ratio denominator


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
        "forget_em_contains",
        "lower",
        "forget exact match (contains)",
        default=True,
        role="forget",
        items=("forget",),
        item_field="em_contains",
    ),
    Metric(
        "retain_em_contains",
        "higher",
        "retain exact match (contains)",
        default=True,
        role="retain",
        items=("retain",),
        item_field="em_contains",
    ),
    Metric(
        "world_facts_em_contains",
        "higher",
        "world facts exact match (contains)",
        default=True,
        items=("world_facts",),
        item_field="em_contains",
    ),
    Metric(
        "forget_rougeL_recall",
        "lower",
        "forget ROUGE-L recall",
        default=True,
        items=("forget",),
        item_field="rougeL_recall",
    ),
    Metric(
        "retain_rougeL_recall",
        "higher",
        "retain ROUGE-L recall",
        default=True,
        items=("retain",),
        item_field="rougeL_recall",
    ),
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
    Metric("forget_em_token", "lower", "forget exact memorization (token accuracy)", items=("forget",)),
    Metric("retain_em_token", "higher", "retain exact memorization (token accuracy)", items=("retain",)),
    Metric("forget_extraction_strength", "lower", "forget extraction strength", items=("forget",)),
    Metric("retain_extraction_strength", "higher", "retain extraction strength", items=("retain",)),
    Metric("mia_gradnorm_auc", "half", "MIA AUC (GradNorm)", items=("forget",)),
    Metric("mia_reference_auc", "half", "MIA AUC (reference model: the retain model)", items=("forget",)),
    # the truth ratio under each open-unlearning aggregator: on the forget split only "cannot tell correct from
    # perturbed" is the goal; on the kept splits it is the failure
    Metric(
        "forget_truth_ratio_closer_to_1_better", "higher", "forget truth ratio (closer_to_1_better)", items=("forget",)
    ),
    Metric("forget_truth_ratio_true_better", "lower", "forget truth ratio (true_better)", items=("forget",)),
    Metric("forget_truth_ratio_prob_mean", "lower", "forget truth ratio (prob_mean)", items=("forget",)),
    Metric("*_truth_ratio_closer_to_1_better", "lower", "truth ratio (closer_to_1_better) on a kept split"),
    Metric("*_prob_perturbed", "none", "mean probability of the perturbed answers"),
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
    """TOFU Prob on real authors / world facts: p_true / (p_true + sum_i p_perturbed_i + 1e-10)
    (open-unlearning's `probability_w_options`)."""
    p_true = answer_prob(true_scored)
    return p_true / (p_true + sum(answer_prob(s) for s in perturbed_scored) + TRUTH_RATIO_EPSILON)


def _correct_and_wrong(correct_scored: dict, perturbed_scored: list[dict]) -> tuple[float, float]:
    """The truth ratio's two sides: exp(-avgNLL(correct)) and exp(-mean_i avgNLL(perturbed_i))."""
    return math.exp(-correct_scored["avg_nll"]), math.exp(-mean(s["avg_nll"] for s in perturbed_scored))


def truth_ratio(correct_scored: dict, perturbed_scored: list[dict]) -> float:
    """TOFU's raw R = wrong / (correct + 1e-10), both sides as `_correct_and_wrong`; R < 1 prefers the correct."""
    correct, wrong = _correct_and_wrong(correct_scored, perturbed_scored)
    return wrong / (correct + TRUTH_RATIO_EPSILON)


def truth_ratio_prob(correct_scored: dict, perturbed_scored: list[dict]) -> float:
    """open-unlearning's "extent of knowledge" form: correct / (correct + wrong + 1e-10) (its PR #163)."""
    correct, wrong = _correct_and_wrong(correct_scored, perturbed_scored)
    return correct / (correct + wrong + TRUTH_RATIO_EPSILON)


# open-unlearning's truth-ratio aggregators (`truth_ratio` in src/evals/metrics/memorization.py), each over the
# items' raw R (`closer_to_1_better`, `true_better`) or their `truth_ratio_prob` (`prob_mean`). The TOFU paper
# writes the forget statistic as 1 - R and its code as min(R, 1/R), a recurring question (open-unlearning
# #26, #138, #160); every aggregator is reported, and the default columns keep TOFU's code.
TRUTH_RATIO_AGGREGATORS = {
    "closer_to_1_better": lambda items: mean(
        min(i["truth_ratio_raw"], 1 / (i["truth_ratio_raw"] + TRUTH_RATIO_EPSILON)) for i in items
    ),
    "true_better": lambda items: mean(max(0.0, 1 - i["truth_ratio_raw"]) for i in items),
    "prob_mean": lambda items: mean(i["truth_ratio_prob"] for i in items),
}


def default_truth_ratio_aggregator(split: str) -> str:
    """Forget: `closer_to_1_better`, highest when the model cannot tell correct from perturbed. Retain, real
    authors, world facts: `true_better`, highest when it prefers the correct answer (TOFU's and
    open-unlearning's choices)."""
    return "closer_to_1_better" if split == "forget" else "true_better"


def truth_ratio_stat(split: str, ratios: list[float]) -> float:
    """The split's default truth-ratio statistic over raw ratios."""
    return TRUTH_RATIO_AGGREGATORS[default_truth_ratio_aggregator(split)]([{"truth_ratio_raw": r} for r in ratios])


def exact_memorization(token_correct: list[bool]) -> float | None:
    """The share of answer tokens (EOS dropped) that are the model's argmax prediction (Tirumala et al. 2022;
    open-unlearning's `exact_memorization`); None, left out of the mean, for an answer with no such token."""
    return sum(token_correct) / len(token_correct) if token_correct else None


def extraction_strength(token_correct: list[bool]) -> float:
    """Extraction strength (open-unlearning's paper and its `extraction_strength` metric): 1 - k/n for the
    smallest k from which every answer token (EOS dropped) is the argmax prediction. As open-unlearning's
    loop does, k stops at n - 1 when no suffix matches, so such an answer scores 1/n, not 0; 0 when n is 0."""
    n = len(token_correct)
    if n == 0:
        return 0.0
    k = next((k for k in range(n) if all(token_correct[k:])), n - 1)
    return 1 - k / n


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
    gradient_norm: float | None = None,
) -> dict:
    """One question's figures: generation scores, teacher-forced scores, the raw truth ratio and its
    probability form and, on the forget split, its MIA attack scores. `correct` is the truth ratio's correct
    answer (the paraphrase on forget and retain), `perturbed` the perturbed answers' scores, `gradient_norm`
    the item's for the GradNorm attack (forget split, when it runs)."""
    prob = answer_prob(scored)
    item = {
        "split": split,
        "index": index,
        "prompt": prompt,
        "generation": generation,
        "gold": row["answer"],
        "rougeL_recall": text.rouge_l_recall(row["answer"], generation),
        "em_strict": text.em_strict(row["answer"], generation),
        "em_contains": text.em_contains(row["answer"], generation),
        "em_token": exact_memorization(scored["token_correct"]),
        "extraction_strength": extraction_strength(scored["token_correct"]),
        "prob": normalised_prob(scored, perturbed) if split in NORMALISED_PROB_SPLITS else prob,
        "prob_perturbed": mean(answer_prob(s) for s in perturbed),
        "avg_nll": scored["avg_nll"],
        "truth_ratio_raw": truth_ratio(correct, perturbed),
        "truth_ratio_prob": truth_ratio_prob(correct, perturbed),
    }
    if split in NORMALISED_PROB_SPLITS:
        item["prob_unnormalised"] = prob
    if split in PARAPHRASED_SPLITS:
        item["prob_paraphrased"] = answer_prob(correct)
    if split == "forget":
        item |= {f"mia_{a}_score": v for a, v in mia.attack_scores(scored, gradient_norm, min_k).items()}
    return item


ITEM_MEANS = (
    "rougeL_recall",
    "em_strict",
    "em_contains",
    "em_token",
    "extraction_strength",
    "prob",
    "prob_unnormalised",
    "prob_paraphrased",
    "prob_perturbed",
)  # the item figures a split reports as their mean, where its items have them


def split_metrics(split: str, items: list[dict]) -> dict[str, float]:
    """`<split>_<figure>`: the mean of each item figure (None values left out, as open-unlearning does), the
    split's default truth-ratio statistic, and the statistic under each named aggregator."""
    metrics = {}
    for key in ITEM_MEANS:
        values = [item[key] for item in items if item.get(key) is not None]
        if values:
            metrics[f"{split}_{key}"] = mean(values)
    metrics[f"{split}_truth_ratio"] = TRUTH_RATIO_AGGREGATORS[default_truth_ratio_aggregator(split)](items)
    for name, aggregate in TRUTH_RATIO_AGGREGATORS.items():
        metrics[f"{split}_truth_ratio_{name}"] = aggregate(items)
    return metrics


def mia_record(
    split: str, index: int, row: dict, prompt: str, scored: dict, min_k: float, gradient_norm: float | None = None
) -> dict:
    """One side of the membership test: an item's prompt, average NLL and attack scores."""
    return {
        "split": split,
        "index": index,
        "prompt": prompt,
        "gold": row["answer"],
        "avg_nll": scored["avg_nll"],
        **{f"mia_{a}_score": v for a, v in mia.attack_scores(scored, gradient_norm, min_k).items()},
    }


def suite_metrics(metrics: dict[str, float], items: list[dict]) -> dict[str, float]:
    """What the split figures add up to: each attack's AUC (forget against holdout), model utility and our
    LUME-style aggregate."""
    out = {}
    forget = [i for i in items if i["split"] == "forget"]
    holdout = [i for i in items if i["split"] == "holdout"]
    for attack in mia.ATTACKS:
        key = f"mia_{attack}_score"
        if all(key in i for i in forget + holdout):
            out[f"mia_{attack}_auc"] = mia.auc([i[key] for i in forget], [i[key] for i in holdout])
    out["model_utility"] = model_utility(metrics | out)
    return out | lume_style_aggregate(metrics | out)


def reference_metrics(result: EvalResult, reference: RetainReference, itself: bool = False) -> dict[str, float]:
    """Forget quality, `ks_2samp(R_model_forget, R_retain_forget).pvalue`; privleak per MIA attack both have;
    and the reference-model attack's AUC, which pairs each forget and holdout item's average NLL with the
    retain model's on the same item (left out for the retain model itself, and when the reference holds no
    per-item NLLs for these items). (open-unlearning labels forget 0 but scores by loss, so its AUCs have our
    orientation.)"""
    forget = [i for i in result.items if i["split"] == "forget"]
    holdout = [i for i in result.items if i["split"] == "holdout"]
    ratios = [i["truth_ratio_raw"] for i in forget]
    metrics = {"forget_quality": float(ks_2samp(ratios, reference.forget_truth_ratios).pvalue)}
    for attack, ref_auc in reference.mia_auc.items():
        if f"mia_{attack}_auc" in result.metrics:
            metrics[f"privleak_{attack}"] = mia.privleak(result.metrics[f"mia_{attack}_auc"], ref_auc)
    paired = len(reference.forget_avg_nll) == len(forget) and len(reference.holdout_avg_nll) == len(holdout)
    if not itself and paired and forget and holdout:
        metrics["mia_reference_auc"] = mia.auc(
            [mia.reference_score(i["avg_nll"], r) for i, r in zip(forget, reference.forget_avg_nll)],
            [mia.reference_score(i["avg_nll"], r) for i, r in zip(holdout, reference.holdout_avg_nll)],
        )
    return metrics
