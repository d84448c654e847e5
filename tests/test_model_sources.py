"""Model sources: `check_model` passes a GPT-2 folder, a Llama folder, a PEFT LoRA adapter over the Llama one and
a hub name in the local cache, and answers every bad input (missing, a file, no config, bad JSON, an unknown or
non-causal architecture, remote code, pickle-only, missing or truncated weights, no tokenizer, a bad adapter or
base) in one line `--model PATH: ...`, printing nothing else; `load_model` loads all three, the adapter unmerged
with peft's own logits; `resolve_device` raises `SettingError`s with today's wording."""

from __future__ import annotations

import json
import shutil

import huggingface_hub
import pytest
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from harness.embedded import train_tokenizer
from harness.model_check import check_model
from harness.models import ensure_pad_token, load_model, resolve_device, weights_digest
from harness.rules import SettingError

TEXTS = [
    "the author wrote a book about the sea",
    "she was born in a small town by the river",
    "his first novel won a prize",
    "they live in the old house on the hill",
] * 5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random models saved as a user would have them: `gpt2/`, `llama/`, and `lora/` over `llama/`."""
    root = tmp_path_factory.mktemp("models")
    tokenizer = train_tokenizer(TEXTS, 300)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64, **ids)
    ).save_pretrained(root / "gpt2")
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=False,
            **ids,
        )
    ).save_pretrained(root / "llama")
    for name in ("gpt2", "llama"):
        tokenizer.save_pretrained(root / name)
    lora = get_peft_model(
        LlamaForCausalLM.from_pretrained(root / "llama"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, weight in lora.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.5)  # lora_B starts at zero: make the adapter change the logits
    lora.save_pretrained(root / "lora")
    return root


def copy(models, name, to):
    return shutil.copytree(models / name, to)


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def message_of(path, capfd, **kwargs) -> str:
    """The one line check_model answers `path` with; nothing else may be printed."""
    capfd.readouterr()
    with pytest.raises(OSError) as info:
        check_model(path, **kwargs)
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == "", printed
    return str(info.value)


# --- sources that pass ---------------------------------------------------------------------------------------


def test_folders_and_an_adapter_pass(models):
    gpt2, llama, lora = (check_model(models / name) for name in ("gpt2", "llama", "lora"))
    assert (gpt2.kind, gpt2.model_type, gpt2.base) == ("folder", "gpt2", None)
    assert (llama.kind, llama.model_type, llama.path) == ("folder", "llama", str(models / "llama"))
    assert (lora.kind, lora.model_type) == ("adapter", "llama")
    assert (lora.base.kind, lora.base.path) == ("folder", str(models / "llama"))


def test_sharded_pickle_remote_code_and_relative_bases_pass_when_allowed(models, tmp_path, monkeypatch):
    sharded = tmp_path / "sharded"
    LlamaForCausalLM.from_pretrained(models / "llama").save_pretrained(sharded, max_shard_size="20KB")
    shutil.copy(models / "llama" / "tokenizer.json", sharded)
    assert (sharded / "model.safetensors.index.json").exists() and check_model(sharded).kind == "folder"
    pickled = copy(models, "gpt2", tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    assert check_model(pickled, allow_pickle=True).model_type == "gpt2"
    remote = copy(models, "gpt2", tmp_path / "remote")
    edit_json(remote / "config.json", auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"})
    assert check_model(remote, trust_remote_code=True).kind == "folder"
    adapters = tmp_path / "adapters"
    copy(models, "llama", tmp_path / "llama")
    copy(models, "lora", adapters / "lora")
    edit_json(adapters / "lora" / "adapter_config.json", base_model_name_or_path="../../llama")
    assert check_model(adapters / "lora").base.path == str(adapters / "lora" / "../../llama")  # beside it
    monkeypatch.chdir(tmp_path)
    edit_json(adapters / "lora" / "adapter_config.json", base_model_name_or_path="llama")
    assert check_model(adapters / "lora").base.path == "llama"  # from here


def test_an_adapter_brings_its_own_tokenizer_or_takes_its_bases(models, tmp_path):
    base = copy(models, "llama", tmp_path / "base")
    (base / "tokenizer.json").unlink()
    (base / "tokenizer_config.json").unlink()
    lora = copy(models, "lora", tmp_path / "lora")
    edit_json(lora / "adapter_config.json", base_model_name_or_path=str(base))
    shutil.copy(models / "llama" / "tokenizer.json", lora)
    shutil.copy(models / "llama" / "tokenizer_config.json", lora)
    assert check_model(lora).kind == "adapter"
    _, tokenizer = load_model(lora)
    assert len(tokenizer) == len(load_model(models / "llama")[1])


def test_a_hub_name_in_the_local_cache_passes_and_loads(models, tmp_path, monkeypatch):
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-gpt2"
    shutil.copytree(models / "gpt2", repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    source = check_model("tiny-org/tiny-gpt2")
    assert (source.kind, source.model_type) == ("hub", "gpt2")
    model, _ = load_model("tiny-org/tiny-gpt2")
    assert weights_digest(model) == weights_digest(load_model(models / "gpt2")[0])


# --- bad input: one line each ----------------------------------------------------------------------------------


def _truncate(path, by=100):
    size = path.stat().st_size
    with path.open("r+b") as stream:
        stream.truncate(size - by)
    return size


def _missing(models, tmp):
    return tmp / "nowhere" / "model", [
        "no such folder (expected a model folder, an adapter folder or a Hugging Face hub name)"
    ]


def _hub_not_cached(models, tmp):
    return "no-such-org/no-such-model", [
        "neither a folder here nor a model in the local Hugging Face cache",
        "HF_HUB_OFFLINE is set",
    ]


def _a_file(models, tmp):
    (tmp / "weights.safetensors").write_bytes(b"x")
    return tmp / "weights.safetensors", ["is a file, not a folder"]


NO_CONFIG = "no config.json: not a Hugging Face model folder (expected config.json, weights and a tokenizer)"


def _empty(models, tmp):
    (tmp / "empty").mkdir()
    return tmp / "empty", [NO_CONFIG]


def _no_config(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    (folder / "config.json").unlink()
    return folder, [NO_CONFIG]


def _bad_config_json(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    (folder / "config.json").write_text('{"model_type": "gpt2",\n "n_layer": }')
    return folder, ["config.json is not valid JSON (Expecting value at line 2 column 13"]


def _unknown_model_type(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    edit_json(folder / "config.json", model_type="banana-lm")
    return folder, [
        f"unknown architecture: model_type 'banana-lm' is not known to transformers {transformers.__version__}"
    ]


def _remote_code(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    edit_json(folder / "config.json", auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"})
    return folder, [
        "needs --trust-remote-code (its config.json maps to code shipped with the model, which runs when it loads)"
    ]


def _not_causal_type(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    edit_json(folder / "config.json", model_type="t5", architectures=["T5ForConditionalGeneration"])
    return folder, ["not a causal LM: transformers has no causal-LM class for model_type 't5'"]


def _classifier(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    edit_json(folder / "config.json", model_type="bert", architectures=["BertForSequenceClassification"])
    return folder, [
        "not a causal LM: its weights are for BertForSequenceClassification (expected a causal-LM "
        "head such as BertLMHeadModel)"
    ]


def _pickle_only(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    return folder, [
        "the weights are pickle only (pytorch_model.bin), which can run code when loaded",
        "pass --allow-pickle to load them anyway",
    ]


def _sharded_pickle_only(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    (folder / "model.safetensors").rename(folder / "pytorch_model-00001-of-00001.bin")
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "pytorch_model-00001-of-00001.bin"}})
    )
    return folder, ["the weights are pickle only (pytorch_model.bin.index.json)", "--allow-pickle"]


def _no_weights(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    (folder / "model.safetensors").unlink()
    return folder, ["no weights (expected model.safetensors, or model.safetensors.index.json with its shards)"]


def _truncated(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    size = _truncate(folder / "model.safetensors")
    return folder, [f"model.safetensors is truncated or corrupt (expected {size} bytes, found {size - 100})"]


def _cut_in_its_header(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    (folder / "model.safetensors").write_bytes((1000).to_bytes(8, "little") + b'{"a": ')
    return folder, ["model.safetensors is truncated or corrupt (expected at least 1008 bytes, found 14)"]


def _garbage_header(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    (folder / "model.safetensors").write_bytes((6).to_bytes(8, "little") + b"\x00junk!" + bytes(64))
    return folder, ["model.safetensors is corrupt: its header is not a safetensors header"]


def _missing_shard(models, tmp):
    folder = tmp / "m"
    LlamaForCausalLM.from_pretrained(models / "llama").save_pretrained(folder, max_shard_size="20KB")
    shutil.copy(models / "llama" / "tokenizer.json", folder)
    shards = sorted(folder.glob("model-*.safetensors"))
    shards[-1].unlink()
    return folder, [
        f"shard {shards[-1].name} is missing (1 of the {len(shards)} shards model.safetensors.index.json names"
    ]


def _no_tokenizer(models, tmp):
    folder = copy(models, "gpt2", tmp / "m")
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").unlink()
    return folder, [
        "no tokenizer files (expected one of tokenizer.json, tokenizer_config.json, tokenizer.model, vocab.json"
    ]


def _adapter_bad_json(models, tmp):
    folder = copy(models, "lora", tmp / "a")
    (folder / "adapter_config.json").write_text("{")
    return folder, ["adapter_config.json is not valid JSON"]


def _adapter_without_base(models, tmp):
    folder = copy(models, "lora", tmp / "a")
    data = json.loads((folder / "adapter_config.json").read_text())
    del data["base_model_name_or_path"]
    (folder / "adapter_config.json").write_text(json.dumps(data))
    return folder, ["adapter_config.json has no base_model_name_or_path (expected the base model's folder or hub name)"]


def _adapter_base_missing(models, tmp):
    folder = copy(models, "lora", tmp / "a")
    edit_json(folder / "adapter_config.json", base_model_name_or_path=str(tmp / "gone" / "llama"))
    return folder, [f"adapter's base model {tmp / 'gone' / 'llama'}: no such folder"]


def _adapter_base_pickle(models, tmp):
    base = copy(models, "llama", tmp / "base")
    (base / "model.safetensors").rename(base / "pytorch_model.bin")
    folder = copy(models, "lora", tmp / "a")
    edit_json(folder / "adapter_config.json", base_model_name_or_path=str(base))
    return folder, [f"adapter's base model {base}: the weights are pickle only (pytorch_model.bin)"]


def _adapter_no_weights(models, tmp):
    folder = copy(models, "lora", tmp / "a")
    (folder / "adapter_model.safetensors").unlink()
    return folder, ["no weights (expected adapter_model.safetensors)"]


def _adapter_pickle(models, tmp):
    folder = copy(models, "lora", tmp / "a")
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    return folder, ["the weights are pickle only (adapter_model.bin)", "--allow-pickle"]


def _adapter_truncated(models, tmp):
    folder = copy(models, "lora", tmp / "a")
    size = _truncate(folder / "adapter_model.safetensors", 8)
    return folder, [f"adapter_model.safetensors is truncated or corrupt (expected {size} bytes, found {size - 8})"]


def _adapter_and_base_without_tokenizer(models, tmp):
    base = copy(models, "llama", tmp / "base")
    (base / "tokenizer.json").unlink()
    (base / "tokenizer_config.json").unlink()
    folder = copy(models, "lora", tmp / "a")
    edit_json(folder / "adapter_config.json", base_model_name_or_path=str(base))
    return folder, [f"adapter's base model {base}: no tokenizer files"]


BAD = [
    _missing,
    _hub_not_cached,
    _a_file,
    _empty,
    _no_config,
    _bad_config_json,
    _unknown_model_type,
    _remote_code,
    _not_causal_type,
    _classifier,
    _pickle_only,
    _sharded_pickle_only,
    _no_weights,
    _truncated,
    _cut_in_its_header,
    _garbage_header,
    _missing_shard,
    _no_tokenizer,
    _adapter_bad_json,
    _adapter_without_base,
    _adapter_base_missing,
    _adapter_base_pickle,
    _adapter_no_weights,
    _adapter_pickle,
    _adapter_truncated,
    _adapter_and_base_without_tokenizer,
]


@pytest.mark.parametrize("make", BAD, ids=[make.__name__.strip("_") for make in BAD])
def test_bad_input_is_one_line_naming_it(models, tmp_path, capfd, monkeypatch, make):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never ask the hub
    path, words = make(models, tmp_path)
    message = message_of(path, capfd)
    assert message.startswith(f"--model {path}: ") and "\n" not in message, message
    for expected in words:
        assert expected in message, message


def test_the_flag_is_the_callers(models, tmp_path, capfd):
    message = message_of(tmp_path / "none", capfd, flag="--retain-model")
    assert message.startswith(f"--retain-model {tmp_path / 'none'}: no such folder")


# --- loading -------------------------------------------------------------------------------------------------


def logits(model, tokenizer):
    with torch.no_grad():
        return model(**tokenizer(TEXTS[:2], return_tensors="pt", padding=True)).logits


def test_load_model_loads_folders_and_an_unmerged_adapter(models):
    gpt2, gpt2_tokenizer = load_model(models / "gpt2")
    assert isinstance(gpt2, GPT2LMHeadModel) and gpt2_tokenizer.pad_token is not None
    base, tokenizer = load_model(models / "llama")
    adapter, adapter_tokenizer = load_model(models / "lora")
    assert isinstance(adapter, PeftModel) and not adapter.training and len(adapter_tokenizer) == len(tokenizer)
    peft_own = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(models / "llama"), models / "lora").eval()
    assert not torch.allclose(logits(adapter, tokenizer), logits(base, tokenizer))
    assert torch.equal(logits(adapter, tokenizer), logits(peft_own, tokenizer))
    assert weights_digest(adapter) != weights_digest(base)
    assert any("lora_B" in name for name in adapter.state_dict())  # kept unmerged


def test_a_pad_token_is_added_to_an_adapters_tokenizer(models):
    adapter, tokenizer = load_model(models / "lora")
    tokenizer.pad_token, tokenizer.eos_token = None, None
    ensure_pad_token(adapter, tokenizer)
    assert adapter.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert adapter.config.pad_token_id == tokenizer.pad_token_id


def test_a_load_failure_after_the_check_is_one_line(models, tmp_path):
    folder = copy(models, "gpt2", tmp_path / "m")
    _truncate(folder / "model.safetensors")
    with pytest.raises(OSError) as info:
        load_model(folder)
    assert str(info.value).startswith(f"{folder}: cannot load it as a causal LM") and "\n" not in str(info.value)
    pickled = copy(models, "lora", tmp_path / "a")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(OSError, match="only safetensors weights load unless --allow-pickle"):
        load_model(pickled)


def test_resolve_device_raises_setting_errors_in_todays_words():
    with pytest.raises(SettingError) as info:
        resolve_device("tpu")
    assert info.value.cli() == "--device tpu: expected auto, cpu, cuda, cuda:N or mps"
    with pytest.raises(SettingError) as info:
        resolve_device(f"cuda:{torch.cuda.device_count()}")
    count = torch.cuda.device_count()
    assert info.value.cli() == f"--device cuda:{count}: this machine has {count} CUDA device(s)"
