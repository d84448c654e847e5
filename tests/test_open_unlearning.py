"""The figures open-unlearning also reports, as its code defines them, against hand computations: the token
sets, extraction strength, the truth-ratio aggregators, GradNorm, the reference-model attack, its
TOFU_EVAL.json as a retain reference, and its templates' tokenization. (Its own code's figures on a committed
fixture: tests/test_open_unlearning_crosscheck.py.)"""

import copy
import json
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from evaluators import mia
from evaluators.base import EvalConfig, EvalResult
from evaluators.reference import RetainReference
from evaluators.scoring import gradient_norms
from evaluators.tofu import (
    TRUTH_RATIO_AGGREGATORS,
    exact_memorization,
    extraction_strength,
    reference_metrics,
    split_metrics,
    truth_ratio_prob,
)
from harness.data.collate import IGNORE, encode_qa
from harness.data.templates import prompt_ids, prompt_text
from harness.embedded import train_tokenizer

# --- token-level figures ----------------------------------------------------------------------------------


def test_extraction_strength_is_one_minus_the_shortest_matching_prefix_share():
    assert extraction_strength([True, True, True, True]) == 1.0  # the whole answer is extracted
    assert extraction_strength([False, True, True, True]) == pytest.approx(0.75)  # from token 1 on
    assert extraction_strength([True, False, True, True]) == pytest.approx(0.5)  # from token 2 on
    # open-unlearning's loop stops at k = n - 1 when no suffix matches: 1/n, as when only the last token does
    assert extraction_strength([False, False, False, False]) == pytest.approx(0.25)
    assert extraction_strength([False, False, False, True]) == pytest.approx(0.25)
    assert extraction_strength([]) == 0.0


def test_exact_memorization_leaves_an_answer_without_tokens_out_of_the_mean():
    assert exact_memorization([True, False, True, True]) == pytest.approx(0.75)
    assert exact_memorization([]) is None
    items = [_item(em_token=0.5), _item(em_token=None), _item(em_token=1.0)]
    assert split_metrics("retain", items)["retain_em_token"] == pytest.approx(0.75)


# --- truth ratio under each aggregator ---------------------------------------------------------------------


def _item(**figures) -> dict:
    base = dict(rougeL_recall=0.5, em_strict=0.0, em_contains=0.0, em_token=0.5, extraction_strength=0.5, prob=0.5)
    return base | {"prob_perturbed": 0.1, "truth_ratio_raw": 0.5, "truth_ratio_prob": 0.6} | figures


def test_truth_ratio_aggregators_by_hand():
    items = [_item(truth_ratio_raw=2.0, truth_ratio_prob=0.2), _item(truth_ratio_raw=0.25, truth_ratio_prob=0.9)]
    assert TRUTH_RATIO_AGGREGATORS["closer_to_1_better"](items) == pytest.approx((0.5 + 0.25) / 2)
    assert TRUTH_RATIO_AGGREGATORS["true_better"](items) == pytest.approx((0 + 0.75) / 2)
    assert TRUTH_RATIO_AGGREGATORS["prob_mean"](items) == pytest.approx((0.2 + 0.9) / 2)
    forget, retain = split_metrics("forget", items), split_metrics("retain", items)
    assert forget["forget_truth_ratio"] == forget["forget_truth_ratio_closer_to_1_better"]  # TOFU's defaults
    assert retain["retain_truth_ratio"] == retain["retain_truth_ratio_true_better"]
    assert {f"retain_truth_ratio_{a}" for a in TRUTH_RATIO_AGGREGATORS} <= set(retain)


def test_truth_ratio_prob_is_correct_over_correct_plus_wrong():
    correct, perturbed = {"avg_nll": math.log(2)}, [{"avg_nll": math.log(4)}, {"avg_nll": math.log(4)}]
    assert truth_ratio_prob(correct, perturbed) == pytest.approx(0.5 / (0.5 + 0.25))


# --- GradNorm ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A random 1-layer Llama and a byte-level tokenizer trained on two sentences."""
    tokenizer = train_tokenizer(["Question: Who wrote it?\nAnswer: Kaai Maibri wrote it."] * 20, 300)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval(), tokenizer


def test_gradnorm_is_the_mean_per_parameter_gradient_norm_without_eos(tiny):
    model, tokenizer = tiny
    pairs = [("Who wrote it?", "Kaai Maibri wrote it."), ("Who?", "Kaai.")]
    norms = gradient_norms(model, tokenizer, pairs, "qa")
    for (question, answer), norm in zip(pairs, norms):
        encoded = encode_qa(tokenizer, question, answer, "qa")
        ids, labels = torch.tensor([encoded["input_ids"]]), torch.tensor(encoded["labels"])
        model.zero_grad()
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
        answer_at = [i - 1 for i in range(len(labels)) if labels[i] != IGNORE][:-1]  # EOS dropped
        loss = -torch.stack([logprobs[p, labels[p + 1]] for p in answer_at]).mean()
        loss.backward()
        by_hand = torch.stack([p.grad.norm() for p in model.parameters()]).mean()
        assert norm == pytest.approx(float(by_hand), rel=1e-5)
    model.zero_grad()
    assert mia.gradnorm_score(2.0) == -2.0  # a member's gradient is smaller: higher score


# --- the reference-model attack and open-unlearning's TOFU_EVAL.json --------------------------------------


def _result(forget_nll, holdout_nll) -> EvalResult:
    items = [{"split": "forget", "truth_ratio_raw": 0.5, "avg_nll": v} for v in forget_nll]
    items += [{"split": "holdout", "avg_nll": v} for v in holdout_nll]
    return EvalResult({"mia_loss_auc": 0.75}, items)


def test_reference_attack_pairs_each_item_with_the_retain_models_nll():
    reference = RetainReference([0.5, 0.5], {"loss": 0.5}, "retain", [3.0, 3.0], [2.0, 2.0])
    # scores: retain NLL - model NLL = forget [2, 0.5], holdout [1, -1]: 3 of 4 pairs ordered right
    metrics = reference_metrics(_result([1.0, 2.5], [1.0, 3.0]), reference)
    assert metrics["mia_reference_auc"] == pytest.approx(0.75)
    assert metrics["privleak_loss"] == pytest.approx(((1 - 0.75) - 0.5) / 0.5 * 100, rel=1e-6)
    assert "mia_reference_auc" not in reference_metrics(_result([1.0, 2.5], [1.0, 3.0]), reference, itself=True)
    unpaired = RetainReference([0.5], {"loss": 0.5}, "elsewhere", [3.0], [2.0])  # other items: no pairing
    assert "mia_reference_auc" not in reference_metrics(_result([1.0, 2.5], [1.0, 3.0]), unpaired)


def test_open_unlearnings_tofu_eval_json_is_a_retain_reference(tmp_path):
    by_index = lambda values: {str(i): {"score": v} for i, v in enumerate(values)}  # noqa: E731
    logs = {
        "forget_truth_ratio": {"agg_value": 0.6, "value_by_index": {"1": {"score": 0.4}, "0": {"score": 0.9}}},
        "mia_loss": {
            "agg_value": 0.4,
            "forget": {"value_by_index": by_index([1.5, 2.5])},
            "holdout": {"value_by_index": by_index([2.0])},
        },
        "mia_min_k": {"agg_value": 0.45},
        "mia_gradnorm": {"agg_value": 0.55},
    }
    path = tmp_path / "TOFU_EVAL.json"
    path.write_text(json.dumps(logs))
    reference = RetainReference.load(path)
    assert reference.forget_truth_ratios == [0.9, 0.4]  # in index order
    assert reference.mia_auc == {"loss": 0.4, "min_k": 0.45, "gradnorm": 0.55}
    assert (reference.forget_avg_nll, reference.holdout_avg_nll) == ([1.5, 2.5], [2.0])
    saved = tmp_path / "retain.json"
    reference.save(saved)
    assert RetainReference.load(saved) == RetainReference(
        reference.forget_truth_ratios, reference.mia_auc, str(path), [1.5, 2.5], [2.0]
    )


# --- the evaluation settings -------------------------------------------------------------------------------


def test_gradnorm_at_its_default_leaves_old_hashes_valid():
    assert "gradnorm" not in EvalConfig().hashed()
    assert EvalConfig(gradnorm=False).hashed()["gradnorm"] is False


# --- open-unlearning's templates, tokenized as it tokenizes them -------------------------------------------


def test_ou_base_labels_what_follows_the_prompts_own_tokens(tiny):
    _, tokenizer = tiny
    question, answer = "Who wrote it?", "Kaai Maibri wrote it."
    encoded = encode_qa(tokenizer, question, answer, "ou-base")
    assert prompt_text(tokenizer, question, "ou-base") == "Question: Who wrote it?\nAnswer: "
    # open-unlearning's preprocess_chat_instance: the whole text tokenized once, EOS appended, labels past
    # the prompt's own token count
    whole = tokenizer("Question: Who wrote it?\nAnswer: Kaai Maibri wrote it.")["input_ids"] + [tokenizer.eos_token_id]
    prompt = prompt_ids(tokenizer, question, "ou-base")
    assert encoded["input_ids"] == whole
    assert encoded["labels"] == [IGNORE] * len(prompt) + whole[len(prompt) :]
    # the prompt's trailing space is a token of its own, which the whole text joins to "Kaai": so "Kaai" is
    # not labelled (its "tokenization mismatch"); `qa` labels the whole answer
    labelled = tokenizer.decode([t for t in encoded["labels"] if t != IGNORE], skip_special_tokens=True)
    assert labelled == " Maibri wrote it."
    qa = encode_qa(tokenizer, question, answer, "qa")
    assert tokenizer.decode([t for t in qa["labels"] if t != IGNORE], skip_special_tokens=True) == " " + answer


def test_ou_chat_renders_its_system_prompt_and_labels_past_the_generation_prompt(tiny):
    _, tokenizer = tiny
    tokenizer = copy.deepcopy(tokenizer)  # the module's tokenizer keeps having no chat template
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}{{ date_string | default('') }}"
    )
    question, answer = "Who wrote it?", "Kaai Maibri wrote it."
    text = prompt_text(tokenizer, question, "ou-chat")
    assert text == "<system>You are a helpful assistant.\n<user>Who wrote it?\n<assistant>10 Apr 2025"
    encoded = encode_qa(tokenizer, question, answer, "ou-chat")
    whole = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
        tokenize=True,
        return_dict=False,
        date_string="10 Apr 2025",
    )
    prompt = prompt_ids(tokenizer, question, "ou-chat")
    assert encoded["input_ids"] == list(whole) + [tokenizer.eos_token_id]  # EOS appended: the text lacks it
    assert encoded["labels"] == [IGNORE] * len(prompt) + encoded["input_ids"][len(prompt) :]
    assert prompt_text(tokenizer, question, "chat") == "<user>Who wrote it?\n<assistant>"  # no system prompt
