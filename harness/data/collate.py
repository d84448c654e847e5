"""QA rows -> token ids with answer-only labels, padded into batches."""

from __future__ import annotations

import torch

from harness.data.tofu import format_answer, prompt_ids

IGNORE = -100


def encode_qa(tokenizer, question: str, answer: str, template: str = "qa", loss_on_prompt: bool = False) -> dict:
    """Prompt and answer are tokenized separately and joined, so the answer tokens are the same at training,
    scoring and generation time; EOS ends the answer and is part of its loss."""
    prompt = prompt_ids(tokenizer, question, template)
    answer_ids = tokenizer(format_answer(answer, template), add_special_tokens=False)["input_ids"]
    answer_ids = answer_ids + [tokenizer.eos_token_id]
    labels = (prompt if loss_on_prompt else [IGNORE] * len(prompt)) + answer_ids
    return {"input_ids": prompt + answer_ids, "labels": labels}


def device_of(model) -> torch.device:
    """Where a model's weights are (any torch module, not only a transformers model with `.device`; one with no
    weights computes on the CPU)."""
    return next(model.parameters(), torch.empty(0)).device


def pad_batch(examples: list[dict], pad_id: int, device=None) -> dict[str, torch.Tensor]:
    """Right-pad `input_ids` / `labels` and build the attention mask, on `device` (the model's)."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def qa_batches(tokenizer, rows: list[dict], batch_size: int, template: str = "qa", answer_key: str = "answer"):
    """Yield padded batches of `rows`, in order."""
    encoded = [encode_qa(tokenizer, r["question"], r[answer_key], template) for r in rows]
    for start in range(0, len(encoded), batch_size):
        yield pad_batch(encoded[start:start + batch_size], tokenizer.pad_token_id)
