"""TOFU from its official files (a folder or a hub name) and any target model: generation and teacher-forced
scoring on the forget, retain, real-author and world-fact splits, MIA against the holdout authors, and,
against the retain model, forget quality and privleak (the metrics: evaluators/tofu.py). The evaluators (torch,
scipy) are imported where they are used, so checking a run (`check`) loads neither."""

from __future__ import annotations

import dataclasses

from evaluators.base import EvalResult
from evaluators.reference import RetainReference
from harness.benchmarks.base import Benchmark, Prepared, model_name, need_real_paths, target_identity
from harness.data.templates import prompt_ids, prompt_text
from harness.data.tofu import FORGET_SPLITS, load_splits


class Tofu(Benchmark):
    retain_reference = True
    privleak_column = "privleak_loss"
    forget_splits = FORGET_SPLITS
    memorised = ("forget_em_contains", "retain_em_contains")
    definitions = 2  # 2 (2026-12): open-unlearning's token sets for Min-K%, Min-K%++, zlib and exact memorization

    def check(self, cfg) -> None:
        need_real_paths(cfg, "a TOFU folder or hub name")
        self.check_retain_reference(cfg)
        load_splits(cfg.data, cfg.forget_split)

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
        """Every TOFU figure that needs no retain model. Every split's generations and scores are one pool of
        batches (`distributed.run_jobs`), which several processes share."""
        from evaluators import tofu
        from harness.distributed import run_jobs

        splits, metrics, items = prepared.splits.eval, {}, []
        jobs = {name: split_jobs(model, tokenizer, splits[name], cfg.eval, name) for name in tofu.GENERATED_SPLITS}
        jobs["holdout"] = split_jobs(model, tokenizer, splits["holdout"], cfg.eval, "holdout")
        flat = [job for split in jobs.values() for job in split.values()]
        done, results = iter(run_jobs(flat, "evaluate TOFU")), {}
        for name, split in jobs.items():
            results[name] = {key: next(done) for key in split}
        for name in tofu.GENERATED_SPLITS:
            split_items = split_records(tokenizer, name, splits[name], cfg.eval, results[name])
            metrics |= tofu.split_metrics(name, split_items)
            items += split_items
        items += mia_records(tokenizer, splits["holdout"], "holdout", cfg.eval, results["holdout"])
        return EvalResult(metrics | tofu.suite_metrics(metrics, items), items)

    def sample(self, prepared: Prepared, n: int) -> Prepared:
        from harness.curves import sample_rows

        cut = {name: sample_rows(rows, n) for name, rows in prepared.splits.eval.items()}
        return dataclasses.replace(prepared, splits=dataclasses.replace(prepared.splits, eval=cut))

    def load_reference(self, path, what: str = "--retain-eval"):
        return RetainReference.load(path, what)

    def reference_from(self, result: EvalResult, source: str):
        return RetainReference.from_result(result, source)

    def reference_metrics(self, result: EvalResult, reference, itself: bool = False) -> dict[str, float]:
        from evaluators import tofu

        return tofu.reference_metrics(result, reference, itself)


def split_jobs(model, tokenizer, rows: list[dict], cfg, name: str) -> dict:
    """What one split needs of the model, as jobs (`distributed.Job`): a generated split's greedy generations,
    the answer's, each perturbed answer's and (forget, retain) the paraphrase's teacher-forced scores; the
    holdout (the membership test's other side) only its answers' scores; the forget split and the holdout
    their GradNorm gradient norms when `eval.gradnorm` is on."""
    from evaluators import tofu
    from evaluators.generation import generation_job
    from evaluators.scoring import gradient_norm_job, scoring_job

    def scores(pairs):
        return scoring_job(model, tokenizer, pairs, cfg.batch_size, cfg.template)

    jobs = {"answer": scores([(r["question"], r["answer"]) for r in rows])}
    if name in tofu.GENERATED_SPLITS:
        prompts = [prompt_ids(tokenizer, r["question"], cfg.template) for r in rows]
        jobs["generated"] = generation_job(model, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size)
        jobs["perturbed"] = scores([(r["question"], p) for r in rows for p in r["perturbed_answer"]])
    if name in tofu.PARAPHRASED_SPLITS:
        jobs["paraphrased"] = scores([(r["question"], r["paraphrased_answer"]) for r in rows])
    if cfg.gradnorm and name in ("forget", "holdout"):
        jobs["gradnorm"] = gradient_norm_job(
            model, tokenizer, [(r["question"], r["answer"]) for r in rows], cfg.template
        )
    return jobs


def split_records(tokenizer, name: str, rows: list[dict], cfg, results: dict) -> list[dict]:
    """One generated split's per-item records from its jobs' results (`split_jobs`)."""
    from evaluators import tofu

    flat, perturbed, i = results["perturbed"], [], 0
    for r in rows:
        perturbed.append(flat[i : i + len(r["perturbed_answer"])])
        i += len(r["perturbed_answer"])
    scored = results["answer"]
    correct = results.get("paraphrased", scored)
    norms = results.get("gradnorm", [None] * len(rows))
    return [
        tofu.item_record(
            name,
            i,
            row,
            prompt_text(tokenizer, row["question"], cfg.template),
            results["generated"][i],
            scored[i],
            correct[i],
            perturbed[i],
            cfg.min_k,
            norms[i],
        )
        for i, row in enumerate(rows)
    ]


def mia_records(tokenizer, rows: list[dict], split: str, cfg, results: dict) -> list[dict]:
    """Per-item attack scores for one side of the membership test, from its jobs' results (`split_jobs`)."""
    from evaluators import tofu

    norms = results.get("gradnorm", [None] * len(rows))
    return [
        tofu.mia_record(split, i, r, prompt_text(tokenizer, r["question"], cfg.template), s, cfg.min_k, g)
        for i, (r, s, g) in enumerate(zip(rows, results["answer"], norms))
    ]
