"""Prompt templates: how a question (or a document's beginning) becomes a prompt, and its answer the text the
model is trained and scored on. One table for every benchmark and method, since a template belongs to how a
model is prompted, not to a benchmark: the methods train with the run's template and the benchmarks score with
it (LUME's default, `raw`, is a benchmark's choice, declared in its `eval_defaults`)."""

from __future__ import annotations

TEMPLATES = {
    "qa": ("Question: {q}\nAnswer:", " {a}"),  # base models (and the embedded model)
    "llama2": ("[INST] {q} [/INST]", " {a}"),  # TOFU's Llama-2 chat format
    "chat": None,  # the tokenizer's own chat template
    "raw": ("{q}", "{a}"),  # the input as the prompt, the output appended as is (LUME)
}


def check_template(template: str) -> None:
    if template not in TEMPLATES:
        raise ValueError(f"template '{template}': expected one of {', '.join(TEMPLATES)}")


def prompt_text(tokenizer, question: str, template: str = "qa") -> str:
    """The prompt as text; `chat` renders the tokenizer's chat template with a generation prompt."""
    check_template(template)
    if template != "chat":
        return TEMPLATES[template][0].format(q=question)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"template 'chat': tokenizer {type(tokenizer).__name__} has no chat_template; use --template qa or llama2"
        )
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def prompt_ids(tokenizer, question: str, template: str = "qa") -> list[int]:
    """Prompt token ids. A chat template writes its own BOS, so no special tokens are added to it."""
    return tokenizer(prompt_text(tokenizer, question, template), add_special_tokens=template != "chat")["input_ids"]


def format_answer(answer: str, template: str = "qa") -> str:
    return answer if template == "chat" else TEMPLATES[template][1].format(a=answer)
