"""QA rows -> token ids with answer-only labels, padded into batches."""

from __future__ import annotations

import torch

from harness.data.templates import JOINT, format_answer, joint_ids, prompt_ids

IGNORE = -100


def encode_qa(tokenizer, question: str, answer: str, template: str = "qa", loss_on_prompt: bool = False) -> dict:
    """Prompt and answer are tokenized separately and joined, so the answer tokens are the same at training,
    scoring and generation time; EOS ends the answer and is part of its loss. The open-unlearning templates
    (`templates.JOINT`) are tokenized as it tokenizes them: the whole text at once, labelled past the
    prompt's own length, EOS appended unless it ends the text already."""
    prompt = prompt_ids(tokenizer, question, template)
    if template in JOINT:
        ids = joint_ids(tokenizer, question, answer, template)
        ids = ids if ids and ids[-1] == tokenizer.eos_token_id else ids + [tokenizer.eos_token_id]
        labels = ids[: len(prompt)] if loss_on_prompt else [IGNORE] * min(len(prompt), len(ids))
        return {"input_ids": ids, "labels": labels + ids[len(prompt) :]}
    answer_ids = tokenizer(format_answer(answer, template), add_special_tokens=False)["input_ids"]
    answer_ids = answer_ids + [tokenizer.eos_token_id]
    labels = (prompt if loss_on_prompt else [IGNORE] * len(prompt)) + answer_ids
    return {"input_ids": prompt + answer_ids, "labels": labels}


def device_of(model) -> torch.device:
    """Where a model's weights are (any torch module, not only a transformers model with `.device`; one with no
    weights computes on the CPU)."""
    return next(model.parameters(), torch.empty(0)).device


def pad(
    sequences: list[list[int]], pad_value: int, side: str = "right", device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences padded on `side` to one width (the only padder, so every batch is padded alike): the
    (rows, width) long tensor filled with `pad_value`, and its 0/1 long attention mask, on `device`."""
    if side not in ("right", "left"):
        raise ValueError(f"pad side {side!r}: expected right or left")
    width = max(len(s) for s in sequences)
    values = torch.full((len(sequences), width), pad_value, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        cols = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        values[row, cols], mask[row, cols] = torch.tensor(seq, dtype=torch.long), 1
    return values.to(device), mask.to(device)


def pad_batch(examples: list[dict], pad_id: int, device=None) -> dict[str, torch.Tensor]:
    """Right-pad `input_ids` (with `pad_id`) and `labels` (with IGNORE) and build the attention mask, on
    `device` (the model's)."""
    ids, mask = pad([e["input_ids"] for e in examples], pad_id, device=device)
    labels, _ = pad([e["labels"] for e in examples], IGNORE, device=device)
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
