"""Load any Hugging Face causal LM with its tokenizer, and seed the random generators a run uses."""

from __future__ import annotations

import hashlib
import os
import random

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def load_model(path: str | os.PathLike, trust_remote_code: bool = False, allow_pickle: bool = False):
    """Load any `AutoModelForCausalLM` folder (or hub name) with its tokenizer, in float32. Weights load from
    safetensors only, unless `allow_pickle` (a pickle checkpoint can run code); `trust_remote_code` stays
    off unless asked for."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=torch.float32,
                                                     use_safetensors=None if allow_pickle else True)
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = "" if allow_pickle else "; only safetensors weights load unless --allow-pickle"
        raise OSError(f"{path}: cannot load it as a causal LM with its tokenizer ({first_line}{hint})") from None
    ensure_pad_token(model, tokenizer)
    return model, tokenizer


def ensure_pad_token(model, tokenizer) -> None:
    """Give a tokenizer without a pad token one. Padding is always masked out (attention mask, IGNORE
    labels), so reusing EOS is safe; with no EOS either, a new `<pad>` token is added and embeddings grow."""
    if tokenizer.pad_token is not None:
        return
    if tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    else:
        tokenizer.add_special_tokens({"pad_token": "<pad>"})
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id


def weights_digest(model) -> str:
    """A digest of every weight's name and bytes: equal digests, equal models."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
