"""Unlearn with the harness and keep the model: load it with plain transformers, ask it a forgotten question,
and score the saved folder again to the same figures as its cell.

    harness run --preset tofu-mini-smoke --methods simu --save-models --out runs/example-keep
    harness eval --preset tofu-mini-smoke --model runs/example-keep/models/simu-seed0 --out runs/example-keep

Run: python examples/keep_unlearned_model.py [--out DIR] [--cache-dir DIR] [--preset NAME]
"""

from __future__ import annotations

import argparse

from transformers import AutoModelForCausalLM, AutoTokenizer

import harness


def ask(folder, question: str) -> str:
    """Greedy answer of a saved model, loaded as any Hugging Face model is."""
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(f"Question: {question}\nAnswer:", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def main(out: str = "runs/example-keep", cache_dir: str | None = None, preset: str = "tofu-mini-smoke") -> dict:
    board, folder = harness.run(methods=["simu"], preset=preset, out=out, cache_dir=cache_dir, save_models=True)
    saved = folder / "models" / "simu-seed0"
    row = harness.prepare(preset=preset, cache_dir=cache_dir).forget[0]
    print(f"Q: {row['question']}\ntarget's answer: {row['answer']}\nunlearned model's: {ask(saved, row['question'])}")
    again, _ = harness.evaluate(models=[saved], preset=preset, out=folder, cache_dir=cache_dir)
    cell = again.set_index("method").loc["simu"]
    model = again.set_index("method").loc["simu-seed0"]
    shared = [c for c in ("forget_em_contains", "retain_em_contains", "model_utility", "forget_quality")]
    figures = {c: (cell[c], model[c]) for c in shared}
    for column, (a, b) in figures.items():
        print(f"{column}: cell {a:.4g}, saved model scored again {b:.4g}")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-keep")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--preset", default="tofu-mini-smoke")
    args = parser.parse_args()
    main(args.out, args.cache_dir, args.preset)
