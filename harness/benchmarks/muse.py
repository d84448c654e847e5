"""MUSE (Shi et al. 2024) from its official files (`muse-bench/MUSE-News` or `MUSE-Books`, one folder per
configuration: harness/data/muse.py) and any target model: VerbMem and KnowMem by greedy generation, PrivLeak
from the Min-40% attack against the retain model (`--retain-model`, or its AUC as `--retain-eval FILE`). The
methods unlearn the raw forget corpus and keep retain1, as MUSE's scripts do. The metrics: evaluators/muse.py,
imported where they are used, so checking a run loads no torch."""

from __future__ import annotations

import dataclasses

from evaluators.base import EvalResult
from harness.benchmarks.base import Benchmark, Prepared, model_name, need_real_paths, target_identity
from harness.data.muse import as_documents, knowmem_prompt, load_muse

UTILITY_TASKS = ("lmeval_mmlu_acc", "lmeval_embedded_world_facts_mc_acc")  # muse_utility's sources, in order
SCALES = tuple(f"scal_{k}" for k in range(1, 5))  # MUSE's scalability: unlearn scal/forget_K, the first K parts
REQUESTS = tuple(f"sust_{k}" for k in range(1, 5))  # its sustainability: sust/forget_1..K unlearned in turn


def forget_sets(splits, forget_split: str) -> list[list[dict]]:
    """The forget sets the methods unlearn one after another: `scal_K`, the first K forget parts at once
    (MUSE's scalability), `sust_K` the parts 1..K one after another (its sustainability), or else the raw
    forget set. The metrics stay on the forget set, as MUSE evaluates its scal and sust checkpoints. A folder
    without the split is one line naming it."""
    kind, _, k = forget_split.partition("_")
    if kind not in ("scal", "sust"):
        return [splits.forget]
    parts, k = splits.sequences.get(kind, []), int(k)
    if k > len(parts):
        raise ValueError(
            f"--set forget_split={forget_split}: the data has {len(parts)} {kind}/forget_K split(s); expected "
            f"{kind}/forget_1 to {kind}/forget_{k}"
        )
    return [parts[k - 1]] if kind == "scal" else parts[:k]


def check_sequential(cfg) -> None:
    """`sust_K` runs each method K times on one model: refuse what cannot chain (LoRA adapters, which wrap the
    model; curves; sharding) in one line each, before anything loads."""
    from harness.config import method_config

    if not cfg.forget_split.startswith("sust_"):
        return
    if cfg.eval.every:
        raise ValueError(f"--set forget_split={cfg.forget_split}: sequential requests take no curve; drop eval.every")
    if cfg.compute.shard not in ("", "none"):
        raise ValueError(f"--set forget_split={cfg.forget_split}: sequential requests run unsharded; drop --shard")
    for name in cfg.methods:
        if getattr(method_config(name, cfg.overrides_for(name)), "lora_r", 0):
            raise ValueError(
                f"--set forget_split={cfg.forget_split}: {name} trains LoRA adapters, which do not chain from one "
                f"request to the next; use its full-update method"
            )


class Muse(Benchmark):
    retain_reference = True
    privleak_column = "muse_privleak"
    forget_splits = SCALES + REQUESTS
    eval_defaults = {"template": "raw"}  # the methods train on the raw corpus; MUSE's prompts are raw text
    # no `memorised`: MUSE's own targets score 0.58 VerbMem and 0.56 retain KnowMem on News (open-unlearning's
    #   reproduction), so a check against 0.9 would warn on every real run

    def check(self, cfg) -> None:
        need_real_paths(cfg, "a MUSE folder: raw/, verbmem/, knowmem/, privleak/")
        self.check_retain_reference(cfg)
        forget_sets(load_muse(cfg.data), cfg.forget_split)
        check_sequential(cfg)

    def identity(self, cfg) -> dict:
        return {"data": str(cfg.data), "retain_model": cfg.retain_model}

    def prepare(self, cfg) -> Prepared:
        return self.prepared(
            load_muse(cfg.data),
            cfg,
            cfg.model,
            cfg.retain_model,
            model_name(cfg.model),
            self.identity(cfg),
            target_identity(cfg),
        )

    @staticmethod
    def prepared(splits, cfg, target, retain, name: str, identity: dict, of_target: dict | None = None) -> Prepared:
        *earlier, forget = [as_documents(rows) for rows in forget_sets(splits, cfg.forget_split)]
        return Prepared(
            splits=splits,
            forget=forget,
            earlier=earlier,
            retain=as_documents(splits.retain),
            identity=identity,
            model_name=name,
            forget_split=cfg.forget_split if cfg.forget_split in SCALES + REQUESTS else "forget",
            target_dir=target,
            retain_dir=retain,
            target_identity=of_target,
        )

    def sample(self, prepared: Prepared, n: int) -> Prepared:
        from harness.curves import sample_rows

        splits = prepared.splits
        names = ("verbmem", "forget_qa", "retain_qa", "members", "nonmembers")
        cut = {name: sample_rows(getattr(splits, name), n) for name in names}
        return dataclasses.replace(prepared, splits=dataclasses.replace(splits, **cut))

    def evaluate(self, model, tokenizer, prepared: Prepared, cfg) -> EvalResult:
        """VerbMem's and KnowMem's generations and the privleak documents' token log-probs, as one pool of
        batches (`distributed.run_jobs`)."""
        from evaluators import muse
        from evaluators.generation import generation_job
        from evaluators.scoring import scoring_job
        from harness.distributed import run_jobs

        splits, batch = prepared.splits, cfg.eval.batch_size
        ids = lambda texts: [tokenizer(t)["input_ids"] for t in texts]  # noqa: E731
        qa = {
            "forget_qa": [knowmem_prompt(splits.forget_icl, r["question"]) for r in splits.forget_qa],
            "retain_qa": [knowmem_prompt(splits.retain_icl, r["question"]) for r in splits.retain_qa],
        }
        documents = {"member": splits.members, "nonmember": splits.nonmembers}
        verbmem, forget_qa, retain_qa, *sides = run_jobs(
            [generation_job(model, tokenizer, ids([r["prompt"] for r in splits.verbmem]), muse.VERBMEM_TOKENS, batch)]
            + [generation_job(model, tokenizer, ids(prompts), muse.KNOWMEM_TOKENS, batch) for prompts in qa.values()]
            + [
                scoring_job(model, tokenizer, [("", d["text"]) for d in docs], batch, "raw")
                for docs in documents.values()
            ],
            "evaluate MUSE",
        )
        items = [muse.verbmem_record(r, g, i) for i, (r, g) in enumerate(zip(splits.verbmem, verbmem))]
        for split, generations in (("forget_qa", forget_qa), ("retain_qa", retain_qa)):
            rows = getattr(splits, split)
            items += [
                muse.knowmem_record(split, r, p, g, i) for i, (r, p, g) in enumerate(zip(rows, qa[split], generations))
            ]
        for side, scored in zip(documents, sides):
            items += [muse.document_record(side, i, s["token_logprobs"]) for i, s in enumerate(scored)]
        return EvalResult(muse.muse_metrics(items), items)

    def load_reference(self, path, what: str = "--retain-eval"):
        from evaluators.muse import MuseReference

        return MuseReference.load(path, what)

    def reference_from(self, result: EvalResult, source: str):
        from evaluators.muse import MuseReference

        return MuseReference(result.metrics["muse_mia_min_k_auc"], source)

    def reference_metrics(self, result: EvalResult, reference, itself: bool = False) -> dict[str, float]:
        from evaluators import muse

        return muse.reference_metrics(result.metrics, reference)

    def final_metrics(self, metrics: dict[str, float], cfg, before: dict | None) -> dict[str, float]:
        """`muse_utility`: MMLU where it was run, else the embedded world facts, else KnowMem on the retain set
        (MUSE's own utility)."""
        source = next((c for c in UTILITY_TASKS if c in metrics), "muse_retain_knowmem")
        return {"muse_utility": metrics[source]}
