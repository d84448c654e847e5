"""The pre-flight of a model source: whether a folder, a hub name or a PEFT adapter folder is one
`harness.models.load_model` can load as a causal LM, as the run's flags allow, found from its files without
reading a weight (one line naming the flag and the cause otherwise). Transformers' model registries, which
import torch, are consulted last and only for a folder whose files passed, so a missing or broken folder is
answered in about a second (perf/bad_input.py)."""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import transformers
from huggingface_hub.errors import GatedRepoError, HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id
from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME
from transformers.utils.peft_utils import ADAPTER_CONFIG_NAME, ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME

# Each kind's weight files: (safetensors, its sharded index) and (pickle, its sharded index); peft never shards.
MODEL_WEIGHTS = ((SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME), (WEIGHTS_NAME, WEIGHTS_INDEX_NAME))
ADAPTER_WEIGHTS = ((ADAPTER_SAFE_WEIGHTS_NAME,), (ADAPTER_WEIGHTS_NAME,))
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)


@dataclass(frozen=True)
class ModelSource:
    """What `check_model` found: the path as given, its kind (`folder`, `hub` or `adapter`), an adapter's base
    model (else None), and the config's model_type (an adapter's is its base's)."""

    path: str
    kind: str
    base: ModelSource | None = None
    model_type: str | None = None


@dataclass(frozen=True)
class _Files:
    """A model's files: a folder here (`root`), or a hub repository's file names, its small files fetched when
    read."""

    root: Path | None = None
    names: frozenset[str] = frozenset()
    repo: str | None = None

    def has(self, name: str) -> bool:
        return (self.root / name).is_file() if self.root is not None else name in self.names

    def path(self, name: str) -> Path:
        return self.root / name if self.root is not None else Path(huggingface_hub.hf_hub_download(self.repo, name))


def check_model(
    path: str | os.PathLike, *, trust_remote_code: bool = False, allow_pickle: bool = False, flag: str = "--model"
) -> ModelSource:
    """A pre-flight that loads no weights: what `path` is if `load_model` can load it as a causal LM, else an
    `OSError` of one line (`FLAG PATH: what is wrong (expected ...)`), before a run loads or writes anything."""
    with _quiet():
        return _check(str(path), trust_remote_code, allow_pickle, f"{flag} {path}")


def _check(
    path: str, trust_remote_code: bool, allow_pickle: bool, where: str, need_tokenizer: bool = True
) -> ModelSource:
    """`check_model` for one model; `where` starts each error line, `need_tokenizer` is off for an adapter's base
    when the adapter brings its own tokenizer."""
    files, kind = _locate(path, where)
    if files.has(ADAPTER_CONFIG_NAME):
        return _check_adapter(path, files, trust_remote_code, allow_pickle, where, need_tokenizer)
    if not files.has(CONFIG_NAME):
        raise OSError(
            f"{where}: no {CONFIG_NAME}: not a Hugging Face model folder (expected {CONFIG_NAME}, "
            "weights and a tokenizer)"
        )
    config = _read_json(files, CONFIG_NAME, where)
    _check_weights(files, MODEL_WEIGHTS, allow_pickle, where)
    if need_tokenizer and not _has_tokenizer(files):
        raise OSError(f"{where}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)})")
    return ModelSource(path, kind, None, _check_config(config, trust_remote_code, where))  # last: imports torch


def _check_adapter(
    path: str, files: _Files, trust_remote_code: bool, allow_pickle: bool, where: str, need_tokenizer: bool
) -> ModelSource:
    """A PEFT adapter: its config names a base model, its weights are whole, and the base passes the same checks
    (its errors say `adapter's base model BASE: ...`)."""
    base = _read_json(files, ADAPTER_CONFIG_NAME, where).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise OSError(
            f"{where}: {ADAPTER_CONFIG_NAME} has no base_model_name_or_path (expected the base model's "
            "folder or hub name)"
        )
    _check_weights(files, ADAPTER_WEIGHTS, allow_pickle, where)
    base = _base_path(base, files.root)
    where_base = f"{where}: adapter's base model {base}"
    source = _check(base, trust_remote_code, allow_pickle, where_base, need_tokenizer and not _has_tokenizer(files))
    if source.kind == "adapter":
        raise OSError(f"{where_base}: is itself an adapter (expected a full model under the adapter)")
    return ModelSource(path, "adapter", source, source.model_type)


def _base_path(base: str, adapter_folder: Path | None) -> str:
    """An adapter's base as its config names it: a path from the current directory if there is one, else from
    the adapter's folder (a base saved beside it), else as given (a hub name, or a folder that is missing)."""
    if Path(base).exists() or Path(base).is_absolute() or adapter_folder is None:
        return base
    beside = adapter_folder / base
    return str(beside) if beside.exists() else base


def _locate(path: str, where: str) -> tuple[_Files, str]:
    """A folder here, else a hub name (`name` or `org/name`) found on the hub or in the local cache."""
    folder = Path(path)
    if folder.is_dir():
        for file in sorted(folder.iterdir()):  # else the load fails mid-run, as if the machine were at fault
            if file.is_file() and not os.access(file, os.R_OK):
                raise OSError(
                    f"{where}: {file.name} cannot be read (permission denied; expected every file of the "
                    "model readable)"
                )
        return _Files(root=folder), "folder"
    if folder.exists():
        raise OSError(
            f"{where}: is a file, not a folder (expected a model folder with {CONFIG_NAME}, weights and a tokenizer)"
        )
    try:
        validate_repo_id(path)
    except HFValidationError:
        raise OSError(
            f"{where}: no such folder (expected a model folder, an adapter folder or a Hugging Face hub name)"
        ) from None
    return _hub_files(path, where), "hub"


def _hub_files(name: str, where: str) -> _Files:
    """A hub name's files: the hub's own listing when online (what `from_pretrained` would download), else, or
    when the hub cannot be reached, the local Hugging Face cache's copy. Asks the hub once, with no retries."""
    why = "HF_HUB_OFFLINE is set"
    if not huggingface_hub.is_offline_mode():
        try:
            info = huggingface_hub.model_info(name)
            return _Files(names=frozenset(s.rfilename for s in info.siblings or ()), repo=name)
        except GatedRepoError:
            why = "it is gated on the hub: accept its terms there and log in with `hf auth login`"
        except RepositoryNotFoundError:
            why = "the hub has no such model, or it is private"
        except Exception as err:  # no network, a proxy, a server error: the cache may have it, as for transformers
            why = f"the hub could not be reached: {_first_line(err)}"
    try:
        return _Files(root=Path(huggingface_hub.snapshot_download(name, local_files_only=True)))
    except LocalEntryNotFoundError:
        raise OSError(
            f"{where}: neither a folder here nor a model in the local Hugging Face cache ({why}; "
            "expected a model folder, or the hub name of a model downloaded before)"
        ) from None


def _read_json(files: _Files, name: str, where: str) -> dict:
    """One of the model's JSON files as a dict, or one line saying why it is not one."""
    try:
        data = json.loads(files.path(name).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise OSError(
            f"{where}: {name} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}; "
            "expected a JSON object)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise OSError(f"{where}: cannot read {name} ({_first_line(err)})") from None
    if not isinstance(data, dict):
        raise OSError(f'{where}: {name} is not a JSON object (expected {{"key": value, ...}})')
    return data


def _check_config(config: dict, trust_remote_code: bool, where: str) -> str | None:
    """The config's model_type, if `AutoModelForCausalLM` can build it as `from_pretrained` decides: code shipped
    with the model (`auto_map`), trusted; else a model_type transformers knows, in its causal-LM mapping."""
    auto_map = config.get("auto_map")
    if auto_map and not trust_remote_code:
        raise OSError(
            f"{where}: needs --trust-remote-code (its {CONFIG_NAME} maps to code shipped with the model, "
            "which runs when it loads)"
        )
    model_type = config.get("model_type")
    if isinstance(auto_map, dict) and "AutoModelForCausalLM" in auto_map:
        return model_type
    if not isinstance(model_type, str) or not model_type:
        raise OSError(
            f"{where}: {CONFIG_NAME} has no model_type (expected a transformers model type such as llama or gpt2)"
        )
    # the registries import torch: only for a config that got here; their name tables first (no model class
    # imported), the classes only for a model_type registered at run time
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise OSError(
            f"{where}: unknown architecture: model_type {model_type!r} is not known to transformers "
            f"{transformers.__version__} (expected one it supports; a newer transformers may)"
        )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and not _registered_causal_lm(model_type):
        raise OSError(
            f"{where}: not a causal LM: transformers has no causal-LM class for model_type "
            f"{model_type!r} (expected a model AutoModelForCausalLM loads, such as llama or gpt2)"
        )
    _check_head(config.get("architectures"), model_type, where)
    return model_type


def _registered_causal_lm(model_type: str) -> bool:
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return CONFIG_MAPPING[model_type] in AutoModelForCausalLM._model_mapping


def _check_head(architectures, model_type: str, where: str) -> None:
    """Refuse weights saved from a transformers head that is not a causal LM's (`BertForSequenceClassification`):
    `AutoModelForCausalLM` goes by model_type alone and would start the LM head from random weights. A bare base
    model, or a class transformers does not know, is left to the load."""
    if not isinstance(architectures, list) or not architectures:
        return
    from transformers.models.auto import modeling_auto

    causal = set(modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    if any(name in causal for name in architectures) or not all(name in _other_heads() for name in architectures):
        return
    raise OSError(
        f"{where}: not a causal LM: its weights are for {', '.join(map(str, architectures))} (expected a "
        f"causal-LM head such as {modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]})"
    )


def _other_heads() -> set[str]:
    """The class names of transformers' task heads (its auto mappings), less the bare base models."""
    from transformers.models.auto import modeling_auto

    names = set()
    for key, mapping in vars(modeling_auto).items():
        if key.endswith("_MAPPING_NAMES") and key != "MODEL_MAPPING_NAMES" and isinstance(mapping, dict):
            for value in mapping.values():
                names.update([value] if isinstance(value, str) else value)
    return names


def _check_weights(files: _Files, weights: tuple, allow_pickle: bool, where: str) -> None:
    """Safetensors weights that are whole (every shard present, no file cut short), or pickle weights only with
    `allow_pickle`, since unpickling can run code."""
    safe, pickle = weights
    for name in safe:
        if files.has(name):
            for shard in _shards(files, name, where):
                _check_safetensors(files, shard, where)
            return
    found = [name for name in pickle if files.has(name)]
    if found and not allow_pickle:
        raise OSError(
            f"{where}: the weights are pickle only ({found[0]}), which can run code when loaded (expected "
            f"{safe[0]}; pass --allow-pickle to load them anyway)"
        )
    if not found:
        shards = f", or {safe[1]} with its shards" if len(safe) > 1 else ""
        raise OSError(f"{where}: no weights (expected {safe[0]}{shards})")
    _shards(files, found[0], where)


def _shards(files: _Files, name: str, where: str) -> list[str]:
    """The weight files `name` stands for: itself, or every shard its index names, each present."""
    if not name.endswith(".index.json"):
        return [name]
    weight_map = _read_json(files, name, where).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise OSError(f"{where}: {name} has no weight_map (expected each weight's name mapped to its shard file)")
    shards = sorted(set(weight_map.values()))
    missing = [shard for shard in shards if not files.has(shard)]
    if missing:
        raise OSError(
            f"{where}: shard {missing[0]} is missing ({len(missing)} of the {len(shards)} shards {name} "
            "names; expected all of them beside it)"
        )
    return shards


def _check_safetensors(files: _Files, name: str, where: str) -> None:
    """A safetensors file as long as its header says: 8 bytes of little-endian header length, the JSON header,
    then the tensors up to the largest `data_offsets` end."""
    # Hand-written on purpose, not safetensors.safe_open: it reads 8 bytes and the header whatever the file's
    # size, and can say how many bytes were expected and found.
    if files.root is None:
        return  # still on the hub: checked as it downloads
    path = files.root / name
    found = path.stat().st_size
    with path.open("rb") as stream:
        head = stream.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else 0
        if len(head) < 8 or 8 + length > found:
            raise OSError(
                f"{where}: {name} is truncated or corrupt (expected at least {8 + length} bytes, found {found})"
            )
        try:
            header = json.loads(stream.read(length))
            end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise OSError(
                f"{where}: {name} is corrupt: its header is not a safetensors header (expected JSON "
                "naming each tensor's data_offsets)"
            ) from None
    if 8 + length + end != found:
        raise OSError(f"{where}: {name} is truncated or corrupt (expected {8 + length + end} bytes, found {found})")


def _has_tokenizer(files: _Files) -> bool:
    return any(files.has(name) for name in TOKENIZER_FILES)


@contextmanager
def _quiet():
    """Transformers' and the hub's log lines and Python's warnings silenced, so that a check says one line."""
    levels = transformers.logging.get_verbosity(), huggingface_hub.utils.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(levels[0])
        huggingface_hub.utils.logging.set_verbosity(levels[1])


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
