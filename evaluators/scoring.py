"""Teacher-forced scoring, in batches: per-item answer NLL, token log-probs and argmax accuracy (TOFU), and
whole-document NLL (LUME's membership test)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.data.collate import IGNORE, device_of, encode_qa, pad_batch
from harness.progress import progress


@torch.no_grad()
def score_answers(
    model, tokenizer, pairs: list[tuple[str, str]], batch_size: int, template: str = "qa", desc: str = "score"
) -> list[dict]:
    """For each (question, answer): the answer tokens' log-probs (EOS included), their NLL sum and count,
    the fraction of answer tokens that are the argmax prediction (`em_token`), and per token the mean and
    std of log p under the model's own next-token distribution (for Min-K%++)."""
    model.eval()
    encoded = [encode_qa(tokenizer, q, a, template) for q, a in pairs]
    results = []
    for start in progress(range(0, len(encoded), batch_size), desc=desc, leave=False):
        batch = pad_batch(encoded[start : start + batch_size], tokenizer.pad_token_id, device_of(model))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        logprobs = F.log_softmax(logits, dim=-1)
        token_logprobs = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        correct = logits.argmax(-1) == targets
        probs = logprobs.exp()
        means = (probs * logprobs).sum(-1)
        stds = ((probs * logprobs.square()).sum(-1) - means.square()).clamp(min=0).sqrt()
        for row in range(targets.shape[0]):
            keep = targets[row] != IGNORE
            lp = token_logprobs[row][keep]
            results.append(
                {
                    "token_logprobs": lp.tolist(),
                    "nll_sum": float(-lp.sum()),
                    "n_tokens": int(keep.sum()),
                    "avg_nll": float(-lp.mean()),
                    "em_token": float(correct[row][keep].float().mean()),
                    "token_means": means[row][keep].tolist(),
                    "token_stds": stds[row][keep].tolist(),
                }
            )
    return results


@torch.no_grad()
def document_nll(model, tokenizer, documents: list[str], batch_size: int) -> list[float]:
    """Mean next-token NLL of each whole document, tokenized as is: `model(ids, labels=ids).loss` per doc."""
    model.eval()
    out = []
    for start in progress(range(0, len(documents), batch_size), desc="score documents", leave=False):
        ids = [tokenizer(d)["input_ids"] for d in documents[start : start + batch_size]]
        batch = pad_batch([{"input_ids": i, "labels": i} for i in ids], tokenizer.pad_token_id, device_of(model))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        keep = (targets != IGNORE).float()
        out += ((nll * keep).sum(1) / keep.sum(1)).tolist()
    return out
