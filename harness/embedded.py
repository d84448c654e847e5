"""The embedded benchmark's models: build, train and cache its tokenizer and tiny Llama.

The embedded benchmark needs three models, trained once and cached under a hash of their configuration:
- base: learns the world's general knowledge (world facts and real authors);
- target: the base trained further on all fictitious authors (what gets unlearned);
- retain: the base trained further on the authors outside the forget split (the reference).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

from harness.checkpoints import save_model
from harness.config import cache_root
from harness.data.collate import encode_qa, pad_batch
from harness.data.lume import LumeWorldConfig, as_qa, load_lume, sums, write_lume
from harness.data.tofu import read_split, retain_split_for
from harness.data.world import WorldConfig, write_world
from harness.hashing import config_hash
from harness.models import load_model, seed_everything
from harness.progress import note, progress

if TYPE_CHECKING:  # the recipe is tofu-mini's `train` section, which imports this module only to prepare
    from harness.benchmarks.tofu_mini import EmbeddedModelConfig

RECIPE_VERSION = 1  # bump when the world generator or the training recipe changes, to invalidate caches
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on the world's own text with the `tokenizers` library."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def llama_config(cfg: EmbeddedModelConfig, vocab_size: int, **token_ids) -> LlamaConfig:
    """The embedded model's architecture (`token_ids`: bos, eos and pad token ids)."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        **token_ids,
    )


def build_model(cfg: EmbeddedModelConfig, tokenizer) -> LlamaForCausalLM:
    seed_everything(cfg.seed)
    return LlamaForCausalLM(
        llama_config(
            cfg,
            len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def train_lm(model, tokenizer, rows: list[dict], cfg: EmbeddedModelConfig, epochs: int, desc: str):
    """Plain supervised training on QA rows (loss on the answer, and on the question if the recipe says so),
    AdamW with a cosine schedule. A row's `template` (default qa) says how it is prompted."""
    seed_everything(cfg.seed)
    examples = [
        encode_qa(tokenizer, r["question"], r["answer"], r.get("template", "qa"), loss_on_prompt=cfg.loss_on_question)
        for r in rows
    ]
    steps_per_epoch = -(-len(examples) // cfg.batch_size)
    total = steps_per_epoch * epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model.train()
    bar, began = progress(total=total, desc=desc, unit="step"), time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(examples)).tolist()
        for start in range(0, len(order), cfg.batch_size):
            batch = pad_batch([examples[i] for i in order[start : start + cfg.batch_size]], tokenizer.pad_token_id)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    note(f"{desc}: {total} steps, last loss {loss.item():.3f}, {time.perf_counter() - began:.0f} s")
    model.eval()
    return model


def _ensure(folder: Path, make) -> Path:
    """Make the model at `folder` with `make()` unless the cache already has it."""
    if not (folder / "config.json").exists():
        model, tokenizer = make()
        save_model(model, tokenizer, folder)
    return folder


def _world_texts(world_dir: Path) -> list[str]:
    """Every string of every split, in a fixed order, for training the tokenizer."""
    texts = []
    for path in sorted(world_dir.glob("*.json")):
        if path.name != "world_config.json":
            for row in read_split(path):
                texts += [
                    row["question"],
                    row["answer"],
                    row.get("paraphrased_question", ""),
                    row.get("paraphrased_answer", ""),
                    *row.get("perturbed_answer", []),
                ]
    return texts


@dataclass
class EmbeddedModels:
    """Paths of the embedded benchmark's world data and models."""

    world_dir: Path
    target_dir: Path
    retain_dir: Path


def _embedded_root(world_cfg: WorldConfig, model_cfg: EmbeddedModelConfig, cache_dir) -> tuple[Path, Path]:
    """The cache folder of one world and recipe, and its world data (generated on first use)."""
    root = cache_root(cache_dir) / f"embedded-{config_hash(RECIPE_VERSION, world_cfg, model_cfg)}"
    world_dir = root / "world"
    if not (world_dir / "world_config.json").exists():
        write_world(world_cfg, world_dir)
    return root, world_dir


def _general(world_dir: Path) -> list[dict]:
    """The world's general knowledge, which the base learns and every fine-tune replays."""
    return read_split(world_dir / "world_facts.json") + read_split(world_dir / "real_authors.json")


def _finetune(root: Path, world_dir: Path, model_cfg: EmbeddedModelConfig, rows: list[dict], epochs: int, desc: str):
    """A maker for the base trained further on `rows`; general facts are replayed so the tiny model keeps
    them, as a large pretrained model would."""

    def make_base():
        tokenizer = train_tokenizer(_world_texts(world_dir), model_cfg.vocab_size)
        model = build_model(model_cfg, tokenizer)
        model = train_lm(model, tokenizer, _general(world_dir), model_cfg, model_cfg.base_epochs, "train base")
        return model, tokenizer

    def make():
        model, tokenizer = load_model(_ensure(root / "base", make_base))
        return train_lm(model, tokenizer, rows + _general(world_dir), model_cfg, epochs, desc), tokenizer

    return make


def prepare_embedded(
    world_cfg: WorldConfig, model_cfg: EmbeddedModelConfig, forget_split: str, cache_dir=None
) -> EmbeddedModels:
    """Generate the world and train (or find in the cache) the base, target and retain models."""
    root, world_dir = _embedded_root(world_cfg, model_cfg, cache_dir)
    read = lambda name: read_split(world_dir / f"{name}.json")  # noqa: E731
    target_dir = _ensure(
        root / "target", _finetune(root, world_dir, model_cfg, read("full"), model_cfg.target_epochs, "train target")
    )
    retain_rows = read(retain_split_for(forget_split))
    retain_dir = _ensure(
        root / f"retain-{forget_split}",
        _finetune(
            root, world_dir, model_cfg, retain_rows, model_cfg.target_epochs, f"train retain ({forget_split} held out)"
        ),
    )
    return EmbeddedModels(world_dir, target_dir, retain_dir)


@dataclass
class EmbeddedLume:
    """Paths of the embedded LUME benchmark: its documents, the TOFU-style world (the bridge's tasks) and
    the target model."""

    data_dir: Path
    world_dir: Path
    target_dir: Path


def prepare_embedded_lume(
    world_cfg: WorldConfig, lume_cfg: LumeWorldConfig, model_cfg: EmbeddedModelConfig, cache_dir=None
) -> EmbeddedLume:
    """The LUME documents, and a target model: the embedded base (world facts and real authors) trained
    further on every forget and retain row, prompted raw as LUME does, and on the learned share of `sums` (the
    general knowledge its MMLU stand-in probes). There is no retain model: LUME's metrics do not need one."""
    root, world_dir = _embedded_root(world_cfg, model_cfg, cache_dir)
    lume_root = root / f"lume-{config_hash(RECIPE_VERSION, lume_cfg)}"
    data_dir = lume_root / "data"
    if not (data_dir / "lume_config.json").exists():
        write_lume(lume_cfg, data_dir)
    splits = load_lume(data_dir)
    rows = [dict(r, template="raw") for r in as_qa(splits.forget + splits.retain)] + sums(lume_cfg)[0]
    target_dir = _ensure(
        lume_root / "target", _finetune(root, world_dir, model_cfg, rows, lume_cfg.epochs, "train LUME target")
    )
    return EmbeddedLume(data_dir, world_dir, target_dir)


@dataclass
class EmbeddedMuse:
    """Paths of the embedded MUSE benchmark: its articles in MUSE's layout, the target and the retain model."""

    data_dir: Path
    target_dir: Path
    retain_dir: Path


def _muse_rows(folder: Path, forget: bool) -> list[dict]:
    """What a muse-mini model learns, prompted raw: the articles as whole documents, and each article's questions
    after their in-context examples as KnowMem asks them (a model this small, trained for minutes, does not
    answer questions about facts it only read in prose). The retain model learns neither the forget articles
    nor their questions; the methods unlearn both (`harness.benchmarks.muse_mini`)."""
    from harness.data.muse import as_documents, knowmem_rows, read_split, sequence

    def docs(split):
        return as_documents(read_split(folder, "raw", split))

    def questions(split):
        return knowmem_rows(
            read_split(folder, "knowmem", f"{split}_qa_icl"), read_split(folder, "knowmem", f"{split}_qa")
        )

    rows = docs("retain1") + docs("retain2") + docs("icl") + questions("retain")
    if forget:  # every forget part (the forget set is the first: `harness.data.muse.generate_muse`)
        rows += [
            r for part in sequence(folder, "sust") or [read_split(folder, "raw", "forget")] for r in as_documents(part)
        ]
        rows += questions("forget")
    return [dict(r, template="raw") for r in rows]


def prepare_embedded_muse(
    world_cfg: WorldConfig, muse_cfg, model_cfg: EmbeddedModelConfig, cache_dir=None
) -> EmbeddedMuse:
    """The news articles, and the embedded base (world facts and real authors) trained further on all of them
    (the target) and on all but the forget articles (the retain model)."""
    from harness.data.muse import write_muse

    root, world_dir = _embedded_root(world_cfg, model_cfg, cache_dir)
    muse_root = root / f"muse-{config_hash(RECIPE_VERSION, muse_cfg)}"
    data_dir = muse_root / "data"
    if not (data_dir / "muse_config.json").exists():
        write_muse(muse_cfg, data_dir)
    models = {}
    for name, forget in (("target", True), ("retain", False)):
        rows = _muse_rows(data_dir, forget)
        desc = "train MUSE target" if forget else "train MUSE retain (forget articles held out)"
        models[name] = _ensure(muse_root / name, _finetune(root, world_dir, model_cfg, rows, muse_cfg.epochs, desc))
    return EmbeddedMuse(data_dir, models["target"], models["retain"])


@dataclass
class EmbeddedWmdp:
    """Paths of the embedded WMDP benchmark: its corpora and questions, and the target model."""

    data_dir: Path
    target_dir: Path


def prepare_embedded_wmdp(
    world_cfg: WorldConfig, wmdp_cfg, model_cfg: EmbeddedModelConfig, cache_dir=None
) -> EmbeddedWmdp:
    """The pathogen world's corpora, and the embedded base (world facts and real authors) trained further on all
    three of them, as raw documents: the forget corpus, the retain corpus and the neighbours'. There is no retain
    model: WMDP's figures do not need one."""
    from harness.data.muse import as_documents
    from harness.data.records import read_records
    from harness.data.wmdp import write_wmdp

    root, world_dir = _embedded_root(world_cfg, model_cfg, cache_dir)
    wmdp_root = root / f"wmdp-{config_hash(RECIPE_VERSION, wmdp_cfg)}"
    data_dir = wmdp_root / "data"
    if not (data_dir / "wmdp_config.json").exists():
        write_wmdp(wmdp_cfg, data_dir)
    rows = [
        dict(r, template="raw")
        for name in ("bio-forget-corpus", "bio-retain-corpus", "neighbour-corpus")
        for r in as_documents(read_records(data_dir / f"{name}.jsonl"))
    ]
    target_dir = _ensure(
        wmdp_root / "target", _finetune(root, world_dir, model_cfg, rows, wmdp_cfg.epochs, "train WMDP target")
    )
    return EmbeddedWmdp(data_dir, target_dir)
