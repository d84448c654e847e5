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
    # open-unlearning's `template_args` (configs/model/*.yaml, commit d3d7cf9), tokenized as it tokenizes them:
    "ou-base": ("Question: {q}\nAnswer: ", "{a}"),  # its base models' (Llama-2-7b-hf, phi-1_5, Llama-2-13b-hf)
    "ou-llama2-chat": ("[INST] {q} [/INST]", "{a}"),  # its Llama-2-7b-chat-hf's (the TOFU paper's model)
    "ou-chat": None,  # its chat models' (Llama-3.x-Instruct, Qwen2.5, Phi-3.5, zephyr): system prompt and date
}
# Tokenized as open-unlearning's `preprocess_chat_instance` does: prompt and answer as one text, the labels
# the tokens past the prompt's own tokenization, EOS appended unless the text already ends with it. Where the
# prompt ends in a space ("Answer: "), a BPE tokenizer joins that space to the answer's first word, which the
# prompt alone tokenizes apart, so that word is not labelled (open-unlearning's "tokenization mismatch"). Every
# other template tokenizes prompt and answer apart, so the answer's tokens are the same at training, scoring
# and generation time.
JOINT = ("ou-base", "ou-llama2-chat", "ou-chat")
CHAT = ("chat", "ou-chat")  # rendered by the tokenizer's chat template
OU_SYSTEM_PROMPT = "You are a helpful assistant."  # open-unlearning's chat models' `system_prompt`
OU_DATE = "10 Apr 2025"  # and `date_string` (read by Llama-3's template, ignored by the others)


def check_template(template: str) -> None:
    if template not in TEMPLATES:
        raise ValueError(f"template '{template}': expected one of {', '.join(TEMPLATES)}")


def _chat(question: str, template: str, answer: str | None = None) -> tuple[list[dict], dict]:
    """The messages and template keywords of a chat-template prompt (with its answer, when given)."""
    system = [{"role": "system", "content": OU_SYSTEM_PROMPT}] if template == "ou-chat" else []
    reply = [{"role": "assistant", "content": answer}] if answer is not None else []
    return system + [{"role": "user", "content": question}] + reply, (
        {"date_string": OU_DATE} if template == "ou-chat" else {}
    )


def _need_chat_template(tokenizer, template: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"template '{template}': tokenizer {type(tokenizer).__name__} has no chat_template; "
            "use --template qa, ou-base or llama2"
        )


def _chat_ids(tokenizer, messages: list[dict], keywords: dict, generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=generation_prompt, return_dict=False, **keywords
    )
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def prompt_text(tokenizer, question: str, template: str = "qa") -> str:
    """The prompt as text; `chat` and `ou-chat` render the tokenizer's chat template with a generation prompt."""
    check_template(template)
    if template not in CHAT:
        return TEMPLATES[template][0].format(q=question)
    _need_chat_template(tokenizer, template)
    messages, keywords = _chat(question, template)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **keywords)


def prompt_ids(tokenizer, question: str, template: str = "qa") -> list[int]:
    """Prompt token ids. A chat template writes its own BOS, so no special tokens are added to it."""
    if template == "ou-chat":
        _need_chat_template(tokenizer, template)
        return _chat_ids(tokenizer, *_chat(question, template), generation_prompt=True)
    return tokenizer(prompt_text(tokenizer, question, template), add_special_tokens=template != "chat")["input_ids"]


def joint_ids(tokenizer, question: str, answer: str, template: str) -> list[int]:
    """A `JOINT` template's prompt and answer tokenized as one (open-unlearning's `chat_ids`)."""
    if template == "ou-chat":
        return _chat_ids(tokenizer, *_chat(question, template, answer), generation_prompt=False)
    text = prompt_text(tokenizer, question, template) + format_answer(answer, template)
    return tokenizer(text, add_special_tokens=True)["input_ids"]


def format_answer(answer: str, template: str = "qa") -> str:
    return answer if template in CHAT else TEMPLATES[template][1].format(a=answer)
