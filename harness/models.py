"""Load any Hugging Face causal LM with its tokenizer on a device and in a dtype, seed the random generators a
run uses, and measure a cell's peak memory."""

from __future__ import annotations

import hashlib
import os
import random
import resource
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness import distributed, rules


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> str:
    """The device this process uses. `auto` is the accelerator when there is one (CUDA, then Apple's MPS), else
    the CPU; any other value is checked against what this machine has, with one line naming the flag when it
    does not. With several processes on a machine, `cuda` is this process's GPU (`cuda:LOCAL_RANK`)."""
    if not rules.DEVICE.test(device):
        raise ValueError(f"--device {device}: expected {rules.DEVICE.expected}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind == "cuda" and (not torch.cuda.is_available() or int(index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine")
    return distributed.device_for(device)


def load_model(path: str | os.PathLike, trust_remote_code: bool = False, allow_pickle: bool = False,
               device: str = "cpu", dtype: str = "float32"):
    """Load any `AutoModelForCausalLM` folder (or hub name) with its tokenizer, in `dtype` on `device`. Weights
    load from safetensors only, unless `allow_pickle` (a pickle checkpoint can run code); `trust_remote_code`
    stays off unless asked for."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=DTYPES[dtype],
                                                     use_safetensors=None if allow_pickle else True).to(device)
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


def reset_peak_memory(device: str) -> None:
    """Start measuring a cell's peak: CUDA's allocator counter, or on Linux the process's peak RSS
    (`/proc/self/clear_refs`; elsewhere the peak since the process started)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    elif sys.platform.startswith("linux"):
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_memory_gib(device: str) -> float:
    """The peak since `reset_peak_memory`: `torch.cuda.max_memory_allocated` on CUDA, peak RSS elsewhere."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**30
    if sys.platform.startswith("linux"):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    scale = 1 if sys.platform == "darwin" else 1024   # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30
