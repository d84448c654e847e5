import torch

from evaluators.generation import generate
from harness.benchmarks.tofu_mini import EmbeddedModelConfig
from harness.embedded import build_model, train_tokenizer

TEXTS = ["Question: Where was Kaai born?\nAnswer: Kaai was born in Maibri.", "The capital of Quilzimia is Grisel."] * 4


def test_left_padded_batches_generate_what_single_prompts_do():
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    model = build_model(EmbeddedModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2), tokenizer)
    prompts = [tokenizer(t)["input_ids"] for t in ("Question: Where", "The capital of Quilzimia is", "Kaai")]
    together = generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=3)
    alone = [generate(model, tokenizer, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert together == alone
    assert all(isinstance(g, str) for g in together) and any(g for g in together)


def test_tokenizer_round_trips_world_text():
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    ids = tokenizer(TEXTS[0])["input_ids"]
    assert tokenizer.decode(ids) == TEXTS[0] and tokenizer.eos_token_id is not None
    assert torch.tensor(ids).max() < len(tokenizer)
