"""lume-mini: LUME's metrics on generated documents in LUME's schema, with the embedded tiny Llama trained
further on every forget and retain row as the target."""

from __future__ import annotations

import dataclasses

from harness.benchmarks.base import Prepared, no_real_paths
from harness.benchmarks.lume import Lume
from harness.data.lume import load_lume
from harness.results import config_hash


class LumeMini(Lume):
    def check(self, cfg) -> None:
        self.no_retain_reference(cfg)
        no_real_paths(cfg)
        cfg.world.check()

    def prepare(self, cfg) -> Prepared:
        from harness.embedded import prepare_embedded_lume   # torch and transformers: only to prepare
        embedded = prepare_embedded_lume(cfg.world, cfg.lume, cfg.train, cfg.cache_dir)
        identity = {"world": dataclasses.asdict(cfg.world), "lume": dataclasses.asdict(cfg.lume),
                    "train": dataclasses.asdict(cfg.train)}
        return self.prepared(load_lume(embedded.data_dir), embedded.target_dir,
                             f"embedded-llama-{config_hash(identity)}", identity)
