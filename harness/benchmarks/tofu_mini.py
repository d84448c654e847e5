"""tofu-mini, the default benchmark: TOFU's metrics on a generated world of fictitious authors, with a tiny
Llama trained on it from scratch (and cached) as the target and, without the forget authors, the retain model.
Its settings: the world's sizes (`world.*`) and the model's recipe (`train.*`)."""

from __future__ import annotations

import dataclasses
import functools
import random
from dataclasses import dataclass
from typing import ClassVar

from evaluators.lm_eval_bridge import OfflineTask
from harness import rules
from harness.benchmarks.base import Prepared, no_real_paths
from harness.benchmarks.tofu import Tofu
from harness.data.tofu import load_splits
from harness.data.world import WorldConfig, generate_world
from harness.hashing import config_hash

SIZES = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_layers",
    "num_heads",
    "batch_size",
    "base_epochs",
    "target_epochs",
)


@dataclass(frozen=True)
class EmbeddedModelConfig:
    """The embedded model's architecture and training recipe (`--set train.KEY=V`; harness/embedded.py trains
    it). Hidden size 128 memorised the world faster on 2 CPU cores than DESIGN.md's 256 (100% forget/retain
    em_contains after 40 epochs, against 53% after 30)."""

    RULES: ClassVar[dict] = {"lr": rules.POSITIVE, "warmup_ratio": rules.FRACTION, "seed": rules.at_least(0)} | {
        k: rules.at_least(1) for k in SIZES
    }

    vocab_size: int = 2048
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    lr: float = 3e-3
    batch_size: int = 16
    base_epochs: int = 80
    target_epochs: int = 40
    warmup_ratio: float = 0.05
    loss_on_question: bool = True
    seed: int = 0


EMBEDDED_SECTIONS = {"world": WorldConfig, "train": EmbeddedModelConfig}


def embedded_model_config(cfg):
    """The embedded target's transformers config (`--dry-run` reads it without training anything)."""
    from harness.embedded import llama_config

    train = cfg.section("train")
    return llama_config(train, train.vocab_size)


def world_tasks(world_cfg: WorldConfig) -> list[OfflineTask]:
    """lm-eval tasks on the world's general knowledge, which the base model learned before the authors:
    `embedded_world_facts_mc` (each world fact's answer among its perturbed ones) and
    `embedded_real_authors_loglik` (the real authors' answers' perplexity, and whether greedy)."""

    world = functools.cache(lambda: generate_world(world_cfg))  # generated once, and only when the rows are asked

    def mc_rows() -> list[dict]:
        rng, rows = random.Random(world_cfg.seed), []
        for row in world()["world_facts"]:
            choices = [row["answer"], *row["perturbed_answer"]]
            rng.shuffle(choices)
            rows.append({"question": row["question"], "choices": choices, "label": choices.index(row["answer"])})
        return rows

    def real_authors() -> list[dict]:
        return [{"question": r["question"], "answer": r["answer"]} for r in world()["real_authors"]]

    seed = f"from the embedded world (seed {world_cfg.seed})"
    return [
        OfflineTask(
            "embedded_world_facts_mc",
            "multiple_choice",
            f"world facts as multiple choice among their perturbed answers, {seed}",
            mc_rows,
        ),
        OfflineTask(
            "embedded_real_authors_loglik", "loglikelihood", f"the real authors' answers, {seed}", real_authors
        ),
    ]


class TofuMini(Tofu):
    sections = EMBEDDED_SECTIONS

    def check(self, cfg) -> None:
        no_real_paths(cfg)
        cfg.section("world").check()
        self.check_retain_reference(cfg)

    def prepare(self, cfg) -> Prepared:
        from harness.embedded import prepare_embedded  # torch and transformers: only to prepare

        embedded = prepare_embedded(cfg.section("world"), cfg.section("train"), cfg.forget_split, cfg.cache_dir)
        identity = self.identity(cfg)
        splits = load_splits(embedded.world_dir, cfg.forget_split)
        return Prepared(
            splits=splits,
            forget=splits.forget,
            retain=splits.retain,
            identity=identity,
            model_name=f"embedded-llama-{config_hash(identity)}",
            forget_split=cfg.forget_split,
            target_dir=embedded.target_dir,
            retain_dir=embedded.retain_dir,
        )

    def identity(self, cfg) -> dict:
        """What every row's hash covers: the world and the recipe the models are trained from."""
        return {"world": dataclasses.asdict(cfg.section("world")), "train": dataclasses.asdict(cfg.section("train"))}

    def model_config(self, cfg):
        return embedded_model_config(cfg)

    def offline_tasks(self, cfg) -> list[OfflineTask]:
        return world_tasks(cfg.section("world"))
