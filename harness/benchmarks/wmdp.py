"""WMDP (Li et al. 2024) from the official corpora (`cais/wmdp-corpora`, one domain's pair: harness/data/wmdp.py)
and any target model: the methods unlearn the forget corpus and keep the retain corpus, and every model is
scored by lm-eval's own `wmdp_<domain>` and `mmlu` tasks (open-unlearning's WMDP experiment asks for the same),
which run offline only where their data is in the local datasets cache (checked before anything is trained).
WMDP needs no retain model. The columns: evaluators/wmdp.py."""

from __future__ import annotations

import dataclasses

from evaluators.base import EvalResult
from harness.benchmarks.base import Benchmark, Prepared, model_name, need_real_paths, no_retain_model, target_identity
from harness.data.muse import as_documents
from harness.data.wmdp import WmdpConfig, load_corpora

GENERAL = "mmlu"  # lm-eval's task for general knowledge


class Wmdp(Benchmark):
    sections = {"wmdp": WmdpConfig}
    eval_defaults = {"template": "raw"}  # the methods train on raw documents (lm-eval's tasks bring their prompt)

    def check(self, cfg) -> None:
        self.no_retain_reference(cfg)
        if cfg.methods:  # `harness eval` scores models on lm-eval's questions alone, and needs no corpora
            need_real_paths(cfg, "a cais/wmdp-corpora folder")
        if cfg.data:
            load_corpora(cfg.data, cfg.section("wmdp"))

    def no_retain_reference(self, cfg) -> None:
        no_retain_model(cfg, "WMDP's figures")

    def identity(self, cfg) -> dict:
        return {"data": str(cfg.data or ""), "wmdp": dataclasses.asdict(cfg.section("wmdp"))}

    def prepare(self, cfg) -> Prepared:
        section = cfg.section("wmdp")
        corpora = load_corpora(cfg.data, section) if cfg.data else None
        return Prepared(
            splits=corpora,
            forget=as_documents(corpora.forget) if corpora else [],
            retain=as_documents(corpora.retain) if corpora else [],
            identity=self.identity(cfg),
            model_name=model_name(cfg.model),
            forget_split=section.domain,
            target_dir=cfg.model,
            target_identity=target_identity(cfg),
        )

    def evaluate(self, model, tokenizer, prepared: Prepared, cfg) -> EvalResult:
        """Nothing of its own: every WMDP figure is an lm-eval task's (`lm_eval_tasks`), or made from them."""
        return EvalResult({}, [])

    def sample(self, prepared: Prepared, n: int) -> Prepared:
        return prepared  # its own evaluation reads no items; the curves' points are lm-eval's whole tasks

    def tasks(self, cfg) -> tuple[str, list[str], list[str]]:
        """lm-eval's forget-domain task, the neighbouring subjects' and the general ones (the first that ran)."""
        from evaluators.wmdp import NEIGHBOURS

        domain = cfg.section("wmdp").domain
        return f"wmdp_{domain}", list(NEIGHBOURS[domain]), [GENERAL]

    def lm_eval_tasks(self, cfg) -> list[str]:
        """`--lm-eval-tasks`, plus the forget domain's task and MMLU (whose subjects hold the neighbours)."""
        forget, _, general = self.tasks(cfg)
        tasks = list(cfg.lm_eval_tasks)
        return tasks + [t for t in (forget, general[0]) if t not in tasks]

    def final_metrics(self, metrics: dict[str, float], cfg, before: dict | None) -> dict[str, float]:
        from evaluators import wmdp

        return wmdp.columns(metrics, *self.tasks(cfg))
