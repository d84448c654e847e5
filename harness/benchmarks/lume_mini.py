"""lume-mini: LUME's metrics on generated documents in LUME's schema, with the embedded tiny Llama trained
further on every forget and retain row as the target. Its settings: tofu-mini's `world` and `train` (the base
model is the same) and the documents' `lume`."""

from __future__ import annotations

import dataclasses

from harness.benchmarks.base import Prepared, no_real_paths
from harness.benchmarks.lume import Lume, gate_identity
from harness.benchmarks.tofu_mini import EMBEDDED_SECTIONS, embedded_model_config, world_tasks
from harness.data.lume import load_lume
from harness.hashing import config_hash


class LumeMini(Lume):
    sections = EMBEDDED_SECTIONS | Lume.sections

    def check(self, cfg) -> None:
        self.no_retain_reference(cfg)
        no_real_paths(cfg)
        cfg.section("world").check()

    def prepare(self, cfg) -> Prepared:
        from harness.embedded import prepare_embedded_lume  # torch and transformers: only to prepare

        embedded = prepare_embedded_lume(cfg.section("world"), cfg.section("lume"), cfg.section("train"), cfg.cache_dir)
        identity = self.identity(cfg)
        return self.prepared(
            load_lume(embedded.data_dir), embedded.target_dir, f"embedded-llama-{config_hash(identity)}", identity
        )

    def identity(self, cfg) -> dict:
        """What every row's hash covers: the world, the documents and the recipe the target is trained from."""
        return {name: dataclasses.asdict(cfg.section(name)) for name in ("world", "lume", "train")} | gate_identity(cfg)

    def model_config(self, cfg):
        return embedded_model_config(cfg)

    def offline_tasks(self, cfg):
        return world_tasks(cfg.section("world")) + super().offline_tasks(cfg)
