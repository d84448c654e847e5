"""LUME (SemEval-2025 Task 4) from its official files and any target model: regurgitation and knowledge on the
forget and retain documents, the MIA score of members against non-members, and the final score (the metrics:
evaluators/lume.py). LUME needs no retain model; it prompts with the raw input and decodes up to 256 tokens.
The evaluators (torch) are imported where they are used, so checking a run (`check`) loads none."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from evaluators.base import EvalResult
from evaluators.lm_eval_bridge import OfflineTask
from harness import rules
from harness.benchmarks.base import Benchmark, Prepared, model_name, need_real_paths, no_retain_model, target_identity
from harness.data.lume import LumeWorldConfig, as_qa, load_lume, sums
from harness.progress import note

MMLU_SUBSTITUTE = "embedded_arithmetic_mc"  # the final score without MMLU: held-out sums (`arithmetic_task`)


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """LUME's award gate (the organisers' site, "Challenge Evaluation"): a submission counted only if its MMLU
    stayed above `share` of the model's before unlearning (75%: 0.371 for their 7B). `mmlu_before` gives that
    figure for models scored without their target in the run (`harness eval`); 0 takes the run's target row."""

    RULES: ClassVar[dict] = {"mmlu_before": rules.UNIT, "share": rules.SHARE}

    mmlu_before: float = 0.0
    share: float = 0.75


def arithmetic_task(cfg: LumeWorldConfig) -> OfflineTask:
    """Multiple choice over sums no model was trained on, the true sum among its nearest wrong ones
    (`harness.data.lume.sums`): lume-mini's target learns to add from the other sums, so this is its MMLU
    stand-in, which memorised facts cannot saturate."""
    return OfflineTask(
        MMLU_SUBSTITUTE,
        "multiple_choice",
        f"held-out sums below {cfg.sum_operands} as multiple choice (only lume-mini's target learns to add)",
        lambda: sums(cfg)[1],
    )


def gate_identity(cfg) -> dict:
    """The award gate's settings in a row's hash when they are set (at their defaults they add nothing, so
    the hashes of rows made before the gate existed stay valid)."""
    gate = cfg.section("gate")
    return {"gate": dataclasses.asdict(gate)} if gate != GateConfig() else {}


class Lume(Benchmark):
    _gate_noted = False  # the gate's note is printed once per run
    sections = {"lume": LumeWorldConfig, "gate": GateConfig}  # the held-out sums' sizes (and lume-mini's
    #          documents); the award gate
    eval_defaults = {"template": "raw", "max_new_tokens": 256}
    memorised = (
        "lume_forget_knowledge",
        "lume_forget_regurgitation",
        "lume_retain_knowledge",
        "lume_retain_regurgitation",
    )

    def check(self, cfg) -> None:
        self.no_retain_reference(cfg)
        need_real_paths(cfg, "a folder of the official LUME files")
        load_lume(cfg.data)

    def identity(self, cfg) -> dict:
        """The data, and the held-out sums' settings when they are set (at their defaults they add nothing, so
        the hashes of rows made before they were part of it stay valid)."""
        sums = cfg.section("lume")
        return (
            {"data": str(cfg.data)}
            | ({"lume": dataclasses.asdict(sums)} if sums != LumeWorldConfig() else {})
            | gate_identity(cfg)
        )

    def prepare(self, cfg) -> Prepared:
        return self.prepared(
            load_lume(cfg.data), cfg.model, model_name(cfg.model), self.identity(cfg), target_identity(cfg)
        )

    def no_retain_reference(self, cfg) -> None:
        no_retain_model(cfg, "LUME's metrics")

    @staticmethod
    def prepared(splits, target, name: str, identity: dict, of_target: dict | None = None) -> Prepared:
        return Prepared(
            splits=splits,
            forget=as_qa(splits.forget),
            retain=as_qa(splits.retain),
            identity=identity,
            model_name=name,
            forget_split="forget",
            target_dir=target,
            target_identity=of_target,
        )

    def sample(self, prepared: Prepared, n: int) -> Prepared:
        from harness.curves import sample_rows

        splits = prepared.splits
        cut = {name: sample_rows(getattr(splits, name), n) for name in ("forget", "retain", "members", "nonmembers")}
        return dataclasses.replace(prepared, splits=dataclasses.replace(splits, **cut))

    def evaluate(self, model, tokenizer, prepared: Prepared, cfg) -> EvalResult:
        """Every LUME figure but the final score: greedy generations of the forget and retain rows, and the
        member and non-member documents' NLLs, as one pool of batches (`distributed.run_jobs`)."""
        from evaluators import lume
        from evaluators.generation import generation_job
        from evaluators.scoring import document_job
        from harness.distributed import run_jobs

        splits, cfg = prepared.splits, cfg.eval
        rows = splits.forget + splits.retain
        documents = {"member": splits.members, "nonmember": splits.nonmembers}
        prompts = [tokenizer(r["input"])["input_ids"] for r in rows]
        generations, *sides = run_jobs(
            [generation_job(model, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size)]
            + [
                document_job(model, tokenizer, [d["document"] for d in docs], cfg.batch_size)
                for docs in documents.values()
            ],
            "evaluate LUME",
        )
        items = [lume.item_record(row, gen) for row, gen in zip(rows, generations)]
        nll = dict(zip(documents, sides))
        metrics = lume.lume_metrics(items, nll["member"], nll["nonmember"])
        for side, docs in documents.items():
            items += [{"split": side, "id": d["id"], "avg_nll": v} for d, v in zip(docs, nll[side])]
        return EvalResult(metrics, items)

    def offline_tasks(self, cfg) -> list[OfflineTask]:
        return [arithmetic_task(cfg.section("lume"))]

    def lm_eval_tasks(self, cfg) -> list[str]:
        """`--lm-eval-tasks`, plus, without MMLU, the named substitute the final score uses."""
        tasks = list(cfg.lm_eval_tasks)
        if "mmlu" not in tasks and MMLU_SUBSTITUTE not in tasks:
            tasks.append(MMLU_SUBSTITUTE)
        return tasks

    def final_metrics(self, metrics: dict[str, float], cfg, before: dict | None) -> dict[str, float]:
        """`lume_final_score_mmlu`, or `lume_final_score_<substitute>` when no MMLU was run, and the general
        knowledge it used as `lume_general` (the utility side of LUME's trade-off); then the award gate
        against the model before unlearning (`lume.gate`), left out with a note when that is unknown."""
        from evaluators import lume

        if "lmeval_mmlu_acc" in metrics:
            name, general = "mmlu", metrics["lmeval_mmlu_acc"]
        else:
            name, general = "arithmetic_mc", metrics[f"lmeval_{MMLU_SUBSTITUTE}_acc"]
        out = {
            f"lume_final_score_{name}": lume.final_score(
                metrics["lume_task_aggregate"], general, metrics["lume_mia_score"]
            ),
            "lume_general": general,
        }
        gate = cfg.section("gate")
        if gate.mmlu_before:
            reference = gate.mmlu_before
        elif before is metrics:  # the target itself
            reference = general
        else:
            reference = (before or {}).get("lume_general")
        if reference is None:
            if not self._gate_noted:
                note("LUME award gate: no model before unlearning in this run; --set gate.mmlu_before=V gives its MMLU")
                self._gate_noted = True
            return out
        return out | lume.award_gate(general, reference, gate.share)
