"""muse-mini: MUSE's metrics on a generated world of made-up local news articles in MUSE's layout, with the
embedded tiny Llama trained further on the forget and retain articles (and their questions) as the target and,
without the forget articles, the retain model. Its settings: tofu-mini's `world` and `train` (the base model is
the same) and the articles' `muse`."""

from __future__ import annotations

import dataclasses

from harness.benchmarks.base import Prepared, no_real_paths
from harness.benchmarks.muse import REQUESTS, SCALES, Muse, check_sequential
from harness.benchmarks.tofu_mini import EMBEDDED_SECTIONS, embedded_model_config, world_tasks
from harness.data.muse import MuseWorldConfig, load_muse
from harness.hashing import config_hash

UTILITY_TASK = "embedded_world_facts_mc"  # the general knowledge beside the articles (muse_utility)


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
        name = f"embedded-llama-{config_hash(identity)}"
        return self.prepared(
            load_muse(embedded.data_dir), cfg, embedded.target_dir, embedded.retain_dir, name, identity
        )

    def identity(self, cfg) -> dict:
        """What every row's hash covers: the world, the articles and the recipe the models are trained from."""
        return {name: dataclasses.asdict(cfg.section(name)) for name in ("world", "muse", "train")}

    def model_config(self, cfg):
        return embedded_model_config(cfg)

    def offline_tasks(self, cfg):
        return world_tasks(cfg.section("world"))

    def lm_eval_tasks(self, cfg) -> list[str]:
        """`--lm-eval-tasks`, plus the world facts that `muse_utility` reads."""
        tasks = list(cfg.lm_eval_tasks)
        return tasks if UTILITY_TASK in tasks else tasks + [UTILITY_TASK]
