"""Unlearned models kept as Hugging Face folders (`harness run --save-models`): `OUT/models/<cell>/` holds the
weights as safetensors in the run's dtype, the tokenizer, and a model card (`README.md`) that `from_pretrained`
ignores and the hub reads, with the method, its settings, the seed, the config hash, the cell's leaderboard
row and the harness version. `harness eval --model OUT/models/<cell>` scores it again to the same figures."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from harness.files import named

CARD_KEY = "unlearning_harness"  # the card's metadata this harness writes and reads back


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def is_saved(folder: Path, config_hash: str) -> bool:
    """The cell's model for these settings is saved: the folder is complete (renamed into place whole) and its
    card names the cell's config hash (a folder of the cell's earlier settings is not its model)."""
    complete = (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()  # a model or an adapter
    card = read_card(folder) if complete else None
    return bool(card) and card.get("config_hash") == config_hash


def discard_stale(folder: Path, config_hash: str) -> None:
    """A cell about to run again drops the model saved for its earlier settings, which its new row would
    contradict (it is saved anew with `--save-models`)."""
    card = read_card(folder)
    if card and card.get("config_hash") != config_hash:
        from harness.progress import note

        shutil.rmtree(folder)
        note(f"{folder}: removed, the model of this cell's earlier settings (config hash {card.get('config_hash')})")


def save_model(model, tokenizer, folder: Path, card: str | None = None) -> int:
    """Write the model, its tokenizer and `card` (if any) into a temporary sibling of `folder`, then rename it
    into place, so an interrupted save leaves no half folder under its name (a cell's, or a cached embedded
    model's); returns the bytes written."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_error(err, folder) from None
    return folder_size(folder)


def disk_error(err: BaseException, path: Path) -> BaseException:
    """An error of writing `path`, as the OS error naming it: safetensors reports a full disk as its own error
    type ("I/O error: No space left on device (os error 28)"), and a failed `write()` names no file."""
    if isinstance(err, OSError):
        return named(err, path)
    if f"(os error {errno.ENOSPC})" in str(err) or f"code: {errno.ENOSPC}," in str(err):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return err


def keep_cell(folder: Path, model, tokenizer, row: dict, settings: dict, origin: dict) -> None:
    """A cell's unlearned model as `folder` (`OUT/models/<cell>/`), before the row that marks the cell done,
    with that row in its card; prints where and how large."""
    from harness import __version__
    from harness.progress import note

    flat = {k: v for k, v in settings.items() if k != "options"} | settings["options"]
    size = save_model(model, tokenizer, folder, model_card(row, flat, origin, __version__))
    note(f"{origin['cell']}: model saved to {folder} ({size / 2**20:.1f} MiB)")


def model_card(row: dict, settings: dict, origin: dict, version: str | None) -> str:
    """The card of one saved cell: metadata the hub indexes (library, tags, the harness' own record under
    `unlearning_harness`), then the method, its settings and the cell's leaderboard row as tables."""
    record = {
        "version": version,
        "cell": origin["cell"],
        "method": row["method"],
        "seed": row["seed"],
        "benchmark": row["benchmark"],
        "benchmark_identity": origin["benchmark_identity"],
        "target": row["model"],
        "config_hash": row["config_hash"],
        "weights_digest": row.get("weights_digest"),
        "dtype": row.get("dtype"),
        "template": row.get("template"),
    }
    data = ModelCardData(
        library_name="transformers",
        tags=["unlearning", "unlearning-harness", row["method"], row["benchmark"]],
        **{CARD_KEY: record},
    )
    figures = "\n".join(f"| `{k}` | {_shown(v)} |" for k, v in row.items())
    options = "\n".join(f"| `{k}` | {_shown(v)} |" for k, v in settings.items())
    body = f"""
# {origin["cell"]}: `{row["method"]}` unlearned on `{row["benchmark"]}`

The target model `{row["model"]}`, unlearned by the method `{row["method"]}` with seed {row["seed"]}, by
[unlearning-harness](https://pypi.org/project/unlearning-harness/) {version or ""}. The weights are in the run's dtype
({row.get("dtype")}); the prompt template is `{row.get("template")}`.

```bash
harness eval --model PATH_OF_THIS_FOLDER --benchmark {row["benchmark"]} --dtype {row.get("dtype")}  # and the run's other settings
```

scores it again (on the same benchmark configuration, the same figures as the row below).

## Settings

| setting | value |
|---|---|
{options}

## Leaderboard row

| column | value |
|---|---|
{figures}
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return f"`{json.dumps(value, sort_keys=True)}`"
    return str(value)


def read_card(folder: str | Path) -> dict | None:
    """The harness' record in a model folder's card, or None when the folder has none (not saved by us)."""
    path = Path(folder) / "README.md"
    if not path.is_file():
        return None
    try:
        return ModelCard.load(path).data.to_dict().get(CARD_KEY)
    except Exception:  # any card we cannot parse is simply not ours
        return None
