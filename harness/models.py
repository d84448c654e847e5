"""Load any Hugging Face causal LM (a folder, a hub name or a PEFT adapter over one) with its tokenizer on a
device and in a dtype (harness/model_check.py checks one before), seed the random generators a run uses, and measure
a cell's peak memory."""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import sys
from pathlib import Path

import huggingface_hub
import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils.peft_utils import ADAPTER_CONFIG_NAME, ADAPTER_SAFE_WEIGHTS_NAME, find_adapter_config_file

from harness import distributed, rules
from harness.model_check import TOKENIZER_FILES, _base_path, _first_line
from harness.rules import SettingError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> str:
    """The device this process uses. `auto` is the accelerator when there is one (CUDA, then Apple's MPS), else
    the CPU; any other value is checked against what this machine has, with a `SettingError` naming the flag when
    it does not. With several processes on a machine, `cuda` is this process's GPU (`cuda:LOCAL_RANK`)."""
    if not rules.DEVICE.test(device):
        raise SettingError("device", device, f"expected {rules.DEVICE.expected}", via="flag")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind == "cuda" and (not torch.cuda.is_available() or int(index or 0) >= torch.cuda.device_count()):
        raise SettingError("device", device, f"this machine has {torch.cuda.device_count()} CUDA device(s)", via="flag")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise SettingError("device", device, "MPS is not available on this machine", via="flag")
    return distributed.device_for(device)


# --- loading --------------------------------------------------------------------------------------------------


def load_model(
    path: str | os.PathLike,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
):
    """Load any `AutoModelForCausalLM` folder (or hub name), or a PEFT adapter folder over one, with its
    tokenizer, in `dtype` on `device`. Weights load from safetensors only, unless `allow_pickle` (a pickle
    checkpoint can run code); `trust_remote_code` stays off unless asked for."""
    try:
        adapter_config = find_adapter_config_file(str(path))
        if adapter_config is None:
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            model = _causal_lm(path, trust_remote_code, allow_pickle, device, dtype)
        else:
            model, tokenizer = _load_adapter(
                path, Path(adapter_config).parent, trust_remote_code, allow_pickle, device, dtype
            )
    except (OSError, ValueError, SafetensorError) as err:
        hint = "" if allow_pickle else "; only safetensors weights load unless --allow-pickle"
        raise OSError(f"{path}: cannot load it as a causal LM with its tokenizer ({_first_line(err)}{hint})") from None
    ensure_pad_token(model, tokenizer)
    return model, tokenizer


def _causal_lm(path, trust_remote_code: bool, allow_pickle: bool, device: str, dtype: str):
    return AutoModelForCausalLM.from_pretrained(
        path, trust_remote_code=trust_remote_code, dtype=DTYPES[dtype], use_safetensors=None if allow_pickle else True
    ).to(device)


def _load_adapter(path, folder: Path, trust_remote_code: bool, allow_pickle: bool, device: str, dtype: str):
    """A PEFT adapter over its base model, kept unmerged: the adapter is evaluated exactly as peft computes it
    (merging rounds the sum into the base's dtype). Its own tokenizer if it ships one, else the base's."""
    from peft import PeftModel  # importing peft takes seconds; only adapters need it

    base = json.loads((folder / ADAPTER_CONFIG_NAME).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise OSError(f"{ADAPTER_CONFIG_NAME} has no base_model_name_or_path")
    if not allow_pickle and not _has_safe_adapter(path, folder):
        raise OSError(f"no {ADAPTER_SAFE_WEIGHTS_NAME}")
    base = _base_path(base, folder)
    home = folder if any((folder / name).is_file() for name in TOKENIZER_FILES) else base
    tokenizer = AutoTokenizer.from_pretrained(home, trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(
        _causal_lm(base, trust_remote_code, allow_pickle, device, dtype), str(path), torch_device=device
    )
    return model.to(device).eval(), tokenizer


def _has_safe_adapter(path, folder: Path) -> bool:
    """Whether the adapter's weights are safetensors: in its folder (or cached copy), or, online, on the hub."""
    if (folder / ADAPTER_SAFE_WEIGHTS_NAME).is_file():
        return True
    if Path(path).is_dir() or huggingface_hub.is_offline_mode():
        return False
    try:
        return huggingface_hub.file_exists(str(path), ADAPTER_SAFE_WEIGHTS_NAME)
    except Exception:  # the hub cannot say: treat the weights as not safetensors
        return False


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
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30
