"""TOFU from its official files (a folder or a hub name) and any target model: generation and teacher-forced
scoring on the forget, retain, real-author and world-fact splits, MIA against the holdout authors, and,
against the retain model, forget quality and privleak (the metrics: evaluators/tofu.py). The evaluators (torch,
scipy) are imported where they are used, so checking a run (`check`) loads neither."""

from __future__ import annotations

from evaluators.base import EvalResult
from evaluators.reference import RetainReference
from harness.benchmarks.base import Benchmark, Prepared, model_name, need_real_paths, target_identity
from harness.data.templates import prompt_ids, prompt_text
from harness.data.tofu import FORGET_SPLITS, load_splits


class Tofu(Benchmark):
    retain_reference = True
    forget_splits = FORGET_SPLITS
    memorised = ("forget_em_contains", "retain_em_contains")
    definitions = 2  # 2 (2026-12): open-unlearning's token sets for Min-K%, Min-K%++, zlib and exact memorization

    def check(self, cfg) -> None:
        need_real_paths(cfg, "a TOFU folder or hub name")
        self.check_retain_reference(cfg)
        load_splits(cfg.data, cfg.forget_split)

    def check_retain_reference(self, cfg) -> None:
        if cfg.retain_model and cfg.retain_eval:
            raise ValueError("--retain-model and --retain-eval: give one retain reference, not both")
        if cfg.retain_eval:
            RetainReference.load(cfg.retain_eval)

    def identity(self, cfg) -> dict:
        return {"data": str(cfg.data), "retain_model": cfg.retain_model}

    def prepare(self, cfg) -> Prepared:
        splits = load_splits(cfg.data, cfg.forget_split)
        return Prepared(
            splits=splits,
            forget=splits.forget,
            retain=splits.retain,
            identity=self.identity(cfg),
            model_name=model_name(cfg.model),
            forget_split=cfg.forget_split,
            target_dir=cfg.model,
            retain_dir=cfg.retain_model,
            target_identity=target_identity(cfg),
        )

    def evaluate(self, model, tokenizer, prepared: Prepared, cfg) -> EvalResult:
        """Every TOFU figure that needs no retain model."""
        from evaluators import tofu

        splits, metrics, items = prepared.splits.eval, {}, []
        for name in tofu.GENERATED_SPLITS:
            split_items = evaluate_split(model, tokenizer, name, splits[name], cfg.eval)
            metrics |= tofu.split_metrics(name, split_items)
            items += split_items
        items += mia_items(model, tokenizer, splits["holdout"], "holdout", cfg.eval)
        return EvalResult(metrics | tofu.suite_metrics(metrics, items), items)

    def load_reference(self, path, what: str = "--retain-eval"):
        return RetainReference.load(path, what)

    def reference_from(self, result: EvalResult, source: str):
        return RetainReference.from_result(result, source)

    def reference_metrics(self, result: EvalResult, reference, itself: bool = False) -> dict[str, float]:
        from evaluators import tofu

        return tofu.reference_metrics(result, reference, itself)


def _scores(model, tokenizer, pairs, cfg, desc: str) -> list[dict]:
    from evaluators.scoring import score_answers

    return score_answers(model, tokenizer, pairs, cfg.batch_size, cfg.template, desc=desc)


def _gradient_norms(model, tokenizer, rows: list[dict], cfg) -> list[float | None]:
    """The GradNorm attack's per-item gradient norms, or None for each when `eval.gradnorm` is off."""
    if not cfg.gradnorm:
        return [None] * len(rows)
    from evaluators.scoring import gradient_norms

    return gradient_norms(model, tokenizer, [(r["question"], r["answer"]) for r in rows], cfg.template)


def evaluate_split(model, tokenizer, name: str, rows: list[dict], cfg) -> list[dict]:
    """One split's per-item records: the greedy generation, the answer's, the paraphrase's (forget and
    retain) and each perturbed answer's teacher-forced scores."""
    from evaluators import tofu
    from evaluators.generation import generate

    prompts = [prompt_text(tokenizer, r["question"], cfg.template) for r in rows]
    generations = generate(
        model,
        tokenizer,
        [prompt_ids(tokenizer, r["question"], cfg.template) for r in rows],
        cfg.max_new_tokens,
        cfg.batch_size,
        desc=f"generate {name}",
    )
    scored = _scores(model, tokenizer, [(r["question"], r["answer"]) for r in rows], cfg, f"score {name}")
    flat = _scores(
        model,
        tokenizer,
        [(r["question"], p) for r in rows for p in r["perturbed_answer"]],
        cfg,
        f"score {name} perturbed",
    )
    perturbed, i = [], 0
    for r in rows:
        perturbed.append(flat[i : i + len(r["perturbed_answer"])])
        i += len(r["perturbed_answer"])
    correct = scored
    if name in tofu.PARAPHRASED_SPLITS:
        correct = _scores(
            model, tokenizer, [(r["question"], r["paraphrased_answer"]) for r in rows], cfg, f"score {name} paraphrased"
        )
    norms = _gradient_norms(model, tokenizer, rows, cfg) if name == "forget" else [None] * len(rows)
    return [
        tofu.item_record(
            name, i, row, prompts[i], generations[i], scored[i], correct[i], perturbed[i], cfg.min_k, norms[i]
        )
        for i, row in enumerate(rows)
    ]


def mia_items(model, tokenizer, rows: list[dict], split: str, cfg) -> list[dict]:
    """Per-item attack scores for one side of the membership test."""
    from evaluators import tofu

    scored = _scores(model, tokenizer, [(r["question"], r["answer"]) for r in rows], cfg, f"score {split}")
    norms = _gradient_norms(model, tokenizer, rows, cfg)
    return [
        tofu.mia_record(split, i, r, prompt_text(tokenizer, r["question"], cfg.template), s, cfg.min_k, g)
        for i, (r, s, g) in enumerate(zip(rows, scored, norms))
    ]
