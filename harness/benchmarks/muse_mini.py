"""muse-mini: MUSE's metrics on a generated world of made-up local news articles in MUSE's layout, with the
embedded tiny Llama trained further on the forget and retain articles (and their questions) as the target and,
without the forget articles and their questions, the retain model; the methods unlearn both. Its settings:
tofu-mini's `world` and `train` (the base model is the same) and the articles' `muse`."""

from __future__ import annotations

import dataclasses

from harness.benchmarks.base import Prepared, no_real_paths
from harness.benchmarks.muse import REQUESTS, SCALES, Muse, check_sequential
from harness.benchmarks.tofu_mini import EMBEDDED_SECTIONS, embedded_model_config, world_tasks
from harness.data.muse import MuseWorldConfig, knowmem_rows, load_muse
from harness.hashing import config_hash

UTILITY_TASK = "embedded_world_facts_mc"  # the general knowledge beside the articles (muse_utility)
FORGET_SET = "articles+questions"  # what the methods unlearn (before 2026-12-07: the articles alone)


def with_forget_questions(prepared: Prepared, questions: list[dict]) -> Prepared:
    """The forget set is what the target learned and the retain model did not: the forget articles and their
    questions as KnowMem asks them (`harness.embedded._muse_rows`). The questions join the first request, the
    one that holds the forget set (scal_K's only one, sust_K's first)."""
    first, *later = prepared.earlier + [prepared.forget]
    *earlier, forget = [first + questions] + later
    return dataclasses.replace(prepared, earlier=earlier, forget=forget)


class MuseMini(Muse):
    sections = EMBEDDED_SECTIONS | {"muse": MuseWorldConfig}
    memorised = ("muse_forget_verbmem", "muse_forget_knowmem", "muse_retain_knowmem")  # its target learns them all

    def check(self, cfg) -> None:
        no_real_paths(cfg)
        cfg.section("world").check()
        self.check_retain_reference(cfg)
        check_sequential(cfg)
        parts = cfg.section("muse").forget_parts
        if cfg.forget_split in SCALES + REQUESTS and int(cfg.forget_split.split("_")[1]) > parts:
            raise ValueError(
                f"--set forget_split={cfg.forget_split}: muse.forget_parts is {parts}; raise it or pick a smaller K"
            )

    def prepare(self, cfg) -> Prepared:
        from harness.embedded import prepare_embedded_muse  # torch and transformers: only to prepare

        embedded = prepare_embedded_muse(cfg.section("world"), cfg.section("muse"), cfg.section("train"), cfg.cache_dir)
        identity = self.identity(cfg)
        models = {k: v for k, v in identity.items() if k != "forget_set"}  # what the models are trained from
        name = f"embedded-llama-{config_hash(models)}"
        splits = load_muse(embedded.data_dir)
        prepared = self.prepared(splits, cfg, embedded.target_dir, embedded.retain_dir, name, identity)
        return with_forget_questions(prepared, knowmem_rows(splits.forget_icl, splits.forget_qa))

    def identity(self, cfg) -> dict:
        """What every row's hash covers: the world, the articles, the recipe the models are trained from, and
        what the methods unlearn (`FORGET_SET`)."""
        sections = {name: dataclasses.asdict(cfg.section(name)) for name in ("world", "muse", "train")}
        return sections | {"forget_set": FORGET_SET}

    def model_config(self, cfg):
        return embedded_model_config(cfg)

    def offline_tasks(self, cfg):
        return world_tasks(cfg.section("world"))

    def lm_eval_tasks(self, cfg) -> list[str]:
        """`--lm-eval-tasks`, plus the world facts that `muse_utility` reads."""
        tasks = list(cfg.lm_eval_tasks)
        return tasks if UTILITY_TASK in tasks else tasks + [UTILITY_TASK]
