"""Teacher-forced scoring, in batches: per-item answer NLL, token log-probs and argmax accuracy (TOFU), per-item
gradient norms (the GradNorm attack), and whole-document NLL (LUME's membership test). In a run of several
processes each rank scores its share of the batches and every rank gets all results (`distributed.run_jobs`); each
has a `*_job` form that a benchmark pools with its other evaluations of a model.

Two token sets, as open-unlearning has them (`src/evals/metrics/utils.py`, commit d3d7cf9): the answer's NLL,
probability and the LOSS attack count every labelled token, the EOS that ends the answer included
(`evaluate_probability`); the token-level figures (Min-K%, Min-K%++, exact memorization, extraction
strength, GradNorm) drop the last labelled token, that EOS ("ignore eos prediction", `tokenwise_logprobs`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness import distributed
from harness.data.collate import IGNORE, device_of, encode_qa, pad_batch


def score_answers(
    model, tokenizer, pairs: list[tuple[str, str]], batch_size: int, template: str = "qa", desc: str = "score"
) -> list[dict]:
    """`scoring_job`'s results."""
    return distributed.run_jobs([scoring_job(model, tokenizer, pairs, batch_size, template)], desc)[0]


def scoring_job(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int, template: str = "qa"):
    """For each (question, answer): the NLL sum, count and mean over all labelled tokens (EOS included); the
    labelled tokens decoded without special tokens (`label_text`, what open-unlearning's zlib compresses);
    and over the answer tokens without the final EOS, each token's log-prob, whether it is the argmax
    prediction, and the mean and variance of log p under the model's own next-token distribution there (for
    Min-K%++)."""
    model.eval()
    encoded = [encode_qa(tokenizer, q, a, template) for q, a in pairs]

    @torch.no_grad()
    def one_batch(examples: list[dict]) -> list[dict]:
        batch = pad_batch(examples, tokenizer.pad_token_id, device_of(model))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        logprobs = F.log_softmax(logits, dim=-1)
        token_logprobs = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        correct = logits.argmax(-1) == targets
        probs = logprobs.exp()
        means = (probs * logprobs).sum(-1)
        variances = ((probs * logprobs.square()).sum(-1) - means.square()).clamp(min=0)
        results = []
        for row in range(targets.shape[0]):
            labelled = (targets[row] != IGNORE).nonzero().squeeze(-1)
            answer = labelled[:-1]  # the answer tokens without the EOS that ends them
            lp = token_logprobs[row][labelled]
            results.append(
                {
                    "nll_sum": float(-lp.sum()),
                    "n_tokens": len(labelled),
                    "avg_nll": float(-lp.mean()),
                    "label_text": tokenizer.decode(targets[row][labelled].tolist(), skip_special_tokens=True),
                    "token_logprobs": token_logprobs[row][answer].tolist(),
                    "token_correct": correct[row][answer].tolist(),
                    "token_means": means[row][answer].tolist(),
                    "token_variances": variances[row][answer].tolist(),
                }
            )
        return results

    return distributed.Job(one_batch, encoded, batch_size)


def gradient_norms(model, tokenizer, pairs: list[tuple[str, str]], template: str = "qa", p: float = 2.0) -> list[float]:
    """`gradient_norm_job`'s results."""
    return distributed.run_jobs([gradient_norm_job(model, tokenizer, pairs, template, p)], "gradnorm")[0]


def model_weights(model) -> list[torch.nn.Parameter]:
    """The weights a model computes with: a PEFT model's base weights without its adapters' tensors. The
    gradient with respect to a base W equals that with respect to the merged W + BA, so an unmerged adapter
    gets the GradNorm of its merged model."""
    prefix = getattr(getattr(model, "base_model", None), "prefix", None) if hasattr(model, "peft_config") else None
    return [p for name, p in model.named_parameters() if not (prefix and prefix in name)]


def gradient_norm_job(model, tokenizer, pairs: list[tuple[str, str]], template: str = "qa", p: float = 2.0):
    """GradNorm (Wang et al. 2024, as open-unlearning's `GradNormAttack`): per item, one at a time, the
    gradient of the mean NLL of the answer tokens (EOS dropped) with respect to every parameter, and the mean
    over parameters of each gradient's p-norm. Gradients go to `torch.autograd.grad`, so no `.grad` is
    touched; the model stays in eval mode (open-unlearning switches to train mode, which differs only for a
    model with dropout)."""
    model.eval()
    params = model_weights(model)

    def one_item(pair: list[tuple[str, str]]) -> list[float]:
        flags = [q.requires_grad for q in params]
        for q in params:
            q.requires_grad_(True)
        try:
            return [item_norm(*pair[0])]
        finally:
            for q, flag in zip(params, flags):
                q.requires_grad_(flag)

    def item_norm(question: str, answer: str) -> float:
        batch = pad_batch([encode_qa(tokenizer, question, answer, template)], tokenizer.pad_token_id, device_of(model))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        targets = batch["labels"][0, 1:]
        answer_positions = (targets != IGNORE).nonzero().squeeze(-1)[:-1]
        if len(answer_positions) == 0:
            return 0.0
        logprobs = F.log_softmax(logits[0, answer_positions], dim=-1)
        loss = -logprobs.gather(-1, targets[answer_positions].unsqueeze(-1)).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        per_param = [g.detach().float().norm(p=p) for g in grads if g is not None]
        return float(torch.stack(per_param).mean())

    return distributed.Job(one_item, pairs, 1)


def document_nll(model, tokenizer, documents: list[str], batch_size: int) -> list[float]:
    """Mean next-token NLL of each whole document, tokenized as is: `model(ids, labels=ids).loss` per doc."""
    return distributed.run_jobs([document_job(model, tokenizer, documents, batch_size)], "score documents")[0]


def document_job(model, tokenizer, documents: list[str], batch_size: int):
    """`document_nll` as a job, to be run with a model's other evaluations (`distributed.run_jobs`)."""
    model.eval()

    @torch.no_grad()
    def one_batch(chunk: list[str]) -> list[float]:
        ids = [tokenizer(d)["input_ids"] for d in chunk]
        batch = pad_batch([{"input_ids": i, "labels": i} for i in ids], tokenizer.pad_token_id, device_of(model))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        keep = (targets != IGNORE).float()
        return ((nll * keep).sum(1) / keep.sum(1)).tolist()

    return distributed.Job(one_batch, documents, batch_size)
