"""Batched greedy generation with left padding, cut at EOS (TOFU's and LUME's decoding)."""

from __future__ import annotations

import torch

from harness import distributed
from harness.data.collate import device_of, pad


def generate(
    model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, batch_size: int, desc: str = "generate"
) -> list[str]:
    """Greedy continuations of already-tokenized prompts, decoded without special tokens; in a run of several
    processes each rank generates its share of the batches (`distributed.run_jobs`)."""
    return distributed.run_jobs([generation_job(model, tokenizer, prompt_ids, max_new_tokens, batch_size)], desc)[0]


def generation_job(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, batch_size: int):
    """`generate` as a job, to be run with a model's other evaluations (`distributed.run_jobs`)."""
    model.eval()
    pad_id, device = tokenizer.pad_token_id, device_of(model)

    @torch.no_grad()
    def one_batch(chunk: list[list[int]]) -> list[str]:
        ids, mask = pad(chunk, pad_id, side="left", device=device)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        return [o.strip() for o in tokenizer.batch_decode(out[:, ids.shape[1] :].cpu(), skip_special_tokens=True)]

    return distributed.Job(one_batch, prompt_ids, batch_size)
