"""tofu-mini, the default benchmark: TOFU's metrics on a generated world of fictitious authors, with a tiny
Llama trained on it from scratch (and cached) as the target and, without the forget authors, the retain model."""

from __future__ import annotations

import dataclasses

from harness.benchmarks.base import Prepared, no_real_paths
from harness.benchmarks.tofu import Tofu
from harness.data.tofu import load_splits
from harness.results import config_hash


class TofuMini(Tofu):
    def check(self, cfg) -> None:
        no_real_paths(cfg)
        cfg.world.check()
        self.check_retain_reference(cfg)

    def prepare(self, cfg) -> Prepared:
        from harness.embedded import prepare_embedded   # torch and transformers: only to prepare
        embedded = prepare_embedded(cfg.world, cfg.train, cfg.forget_split, cfg.cache_dir)
        identity = {"world": dataclasses.asdict(cfg.world), "train": dataclasses.asdict(cfg.train)}
        splits = load_splits(embedded.world_dir, cfg.forget_split)
        return Prepared(splits, splits.forget, splits.retain, cfg.forget_split, embedded.target_dir,
                        embedded.retain_dir, f"embedded-llama-{config_hash(identity)}", identity)
