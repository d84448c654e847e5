"""wmdp-mini: WMDP's figures on a generated world of made-up pathogens and crops (harness/data/wmdp.py), with
the embedded tiny Llama trained further on all its corpora as the target. The forget-domain, neighbour and
retain-corpus questions run through lm-eval as offline tasks (lm-eval's `mmlu_continuation` prompt, each
choice's log-likelihood after `Question: q\\nAnswer:`: a model this small cannot answer by letter), and the
world facts stand in for MMLU. Its settings: tofu-mini's `world` and `train` (the base model is the same) and the
world's `wmdp`."""

from __future__ import annotations

import dataclasses
import functools

from evaluators.lm_eval_bridge import OfflineTask
from harness.benchmarks.base import Prepared, no_real_paths
from harness.benchmarks.tofu_mini import EMBEDDED_SECTIONS, embedded_model_config, world_tasks
from harness.benchmarks.wmdp import GENERAL, Wmdp
from harness.data.muse import as_documents
from harness.data.records import read_records
from harness.data.wmdp import WmdpWorldConfig, generate_wmdp
from harness.hashing import config_hash

FORGET_TASK, RETAIN_TASK, NEIGHBOUR_TASK = "wmdp_mini", "wmdp_mini_retain", "wmdp_mini_neighbour"
WORLD_FACTS = "embedded_world_facts_mc"  # general knowledge, the base's (MMLU's stand-in where MMLU did not run)


def question_tasks(cfg: WmdpWorldConfig) -> list[OfflineTask]:
    """The world's three sets of four-choice questions as lm-eval tasks (cais/wmdp's `answer` as the bridge's
    `label`)."""
    world = functools.cache(lambda: generate_wmdp(cfg))  # generated once, and only when the rows are asked

    def rows(name):
        return lambda: [
            {"question": q["question"], "choices": q["choices"], "label": q["answer"]} for q in world()[f"mcq/{name}"]
        ]

    seed = f"4 choices, from the embedded world (seed {cfg.seed})"
    return [
        OfflineTask(
            FORGET_TASK, "multiple_choice", f"the made-up pathogens (the forget domain), {seed}", rows("forget")
        ),
        OfflineTask(RETAIN_TASK, "multiple_choice", f"the retain corpus' crops, {seed}", rows("retain")),
        OfflineTask(
            NEIGHBOUR_TASK, "multiple_choice", f"crops outside both corpora (the neighbours), {seed}", rows("neighbour")
        ),
    ]


class WmdpMini(Wmdp):
    sections = EMBEDDED_SECTIONS | {"wmdp": WmdpWorldConfig}
    memorised = ("wmdp_forget_acc", "wmdp_retain_acc")  # its target learns both domains

    def check(self, cfg) -> None:
        self.no_retain_reference(cfg)
        no_real_paths(cfg)
        cfg.section("world").check()
        cfg.section("wmdp").check()

    def identity(self, cfg) -> dict:
        """What every row's hash covers: the worlds and the recipe the target is trained from."""
        return {name: dataclasses.asdict(cfg.section(name)) for name in ("world", "wmdp", "train")}

    def prepare(self, cfg) -> Prepared:
        from harness.embedded import prepare_embedded_wmdp  # torch and transformers: only to prepare

        embedded = prepare_embedded_wmdp(cfg.section("world"), cfg.section("wmdp"), cfg.section("train"), cfg.cache_dir)
        identity = self.identity(cfg)
        corpus = lambda side: read_records(embedded.data_dir / f"bio-{side}-corpus.jsonl")  # noqa: E731
        return Prepared(
            splits=None,
            forget=as_documents(corpus("forget")),
            retain=as_documents(corpus("retain")),
            identity=identity,
            model_name=f"embedded-llama-{config_hash(identity)}",
            forget_split="bio",
            target_dir=embedded.target_dir,
        )

    def model_config(self, cfg):
        return embedded_model_config(cfg)

    def offline_tasks(self, cfg) -> list[OfflineTask]:
        return world_tasks(cfg.section("world")) + question_tasks(cfg.section("wmdp"))

    def tasks(self, cfg) -> tuple[str, list[str], list[str]]:
        return FORGET_TASK, [NEIGHBOUR_TASK], [GENERAL, WORLD_FACTS]

    def lm_eval_tasks(self, cfg) -> list[str]:
        """`--lm-eval-tasks`, plus the three question sets and, without MMLU, the world facts."""
        tasks = list(cfg.lm_eval_tasks)
        ours = [FORGET_TASK, NEIGHBOUR_TASK, RETAIN_TASK] + ([] if GENERAL in tasks else [WORLD_FACTS])
        return tasks + [t for t in ours if t not in tasks]
