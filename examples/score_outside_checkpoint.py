"""Score a model unlearned outside the harness beside the harness's own methods, in one table.

The "outside" trainer here is ten lines of plain PyTorch (gradient ascent on the forget rows, no retain term)
applied to the benchmark's own target, saved with `save_pretrained`, as a checkpoint from another codebase
or a paper would be. `harness.evaluate` scores it with the benchmark's full metric suite into the run folder
of two harness methods, and `harness.table` puts them side by side. The same from the shell:

    harness run --preset tofu-mini-smoke --methods so-graddiff,simu --out runs/example-outside
    harness eval --preset tofu-mini-smoke --model runs/example-outside/outside --name outside-ga --out runs/example-outside
    harness table runs/example-outside

Run: python examples/score_outside_checkpoint.py [--out DIR] [--cache-dir DIR] [--preset NAME]
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import harness
from harness.data.collate import encode_qa, pad_batch


def unlearn_elsewhere(target_dir, forget_rows, folder, steps: int = 10, lr: float = 5e-4) -> None:
    """Someone else's unlearning: a few steps of gradient ascent on the forget answers, then save_pretrained."""
    model, tokenizer = AutoModelForCausalLM.from_pretrained(target_dir), AutoTokenizer.from_pretrained(target_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    batch = pad_batch([encode_qa(tokenizer, r["question"], r["answer"]) for r in forget_rows], tokenizer.pad_token_id)
    model.train()
    for _ in range(steps):
        (-model(**batch).loss).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def main(out: str = "runs/example-outside", cache_dir: str | None = None, preset: str = "tofu-mini-smoke") -> str:
    board, folder = harness.run(methods=["so-graddiff", "simu"], preset=preset, out=out, cache_dir=cache_dir)
    prepared = harness.prepare(preset=preset, cache_dir=cache_dir)  # the same target and forget rows
    unlearn_elsewhere(prepared.target_dir, prepared.forget, folder / "outside")
    harness.evaluate(models=[folder / "outside"], names=["outside-ga"], preset=preset, out=folder, cache_dir=cache_dir)
    text = harness.table(folder)
    print(text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-outside")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--preset", default="tofu-mini-smoke")
    args = parser.parse_args()
    main(args.out, args.cache_dir, args.preset)
