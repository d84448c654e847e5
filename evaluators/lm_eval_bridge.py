"""lm-eval in-process on the live (unlearned) model: `HFLM(pretrained=model, tokenizer=tokenizer)`.

Any lm-eval task name (`mmlu`, `arc_easy`, ...) can be named; one that cannot be loaded offline is an error
naming it. A benchmark may also offer offline tasks built from its own data (`OfflineTask`: tofu-mini's world
facts, LUME's held-out sums), whose data and YAMLs the bridge writes at run time with absolute paths (lm-eval
resolves relative `data_files` against the working directory). Results become columns
`lmeval_<task>_<metric>`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.data.templates import TEMPLATES
from harness.files import write_atomically
from harness.metrics import Metric

# lm-eval's metrics (accuracy and the like) are better higher, perplexities lower (harness/metrics.py)
METRICS = [
    Metric("lmeval_*", "higher", "lm-eval metric"),
    Metric("lmeval_*perplexity", "lower", "lm-eval perplexity"),
    Metric("lmeval_seconds", "lower", "lm-eval's time (s)", cost=True),
]
PROMPT = TEMPLATES["qa"][0].format(q="{{question}}")  # the offline tasks' prompt: the `qa` template (lm-eval's
#                                                     Jinja), an answer or choice following after a space


@dataclass(frozen=True)
class OfflineTask:
    """An lm-eval task a benchmark builds from its data: `multiple_choice` rows hold question, choices and
    label; `loglikelihood` rows a question and its answer. `rows` is called only when the run asks for it."""

    name: str
    kind: str
    description: str
    rows: Callable[[], list[dict]]


MC_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{prompt}"
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""
YAML = {
    "multiple_choice": MC_YAML,
    "loglikelihood": """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood
doc_to_text: "{prompt}"
doc_to_target: " {{answer}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
""",
}


def check_template(tasks: list[str], offline: list[str], template: str) -> None:
    """The offline tasks prompt as the embedded models learned (`Question: q\nAnswer:`); a chat or Llama-2
    template cannot be applied to them, so asking for both is an error rather than a silent mismatch."""
    asked = [t for t in tasks if t in offline]
    if asked and template not in ("qa", "raw"):
        raise ValueError(
            f"--lm-eval-tasks {','.join(asked)}: built from the benchmark's data with the prompt "
            f"'Question: q\\nAnswer:', they cannot follow --template {template}; drop them, or use "
            f"--template qa"
        )


TASK_LINE = re.compile(r"^[\"']?(task|group|tag)[\"']?:\s*(\S.*)$")  # a key may be quoted: "task": "wmdp_bio"


def check_tasks(tasks: list[str], offline: list[str], cache_dir=None) -> None:
    """Every task name is the bridge's or lm-eval's, known without loading any data: first from a scan of the
    `task:`/`group:`/`tag:` lines of lm-eval's own YAMLs (a third of a second), and only for a name that scan
    misses (a task defined by an include or a group's list), from lm-eval's full index, which takes seconds
    to build and is kept in the harness cache for the installed lm-eval version."""
    unknown = [t for t in tasks if t not in offline and t not in _scanned_names()]
    if unknown:
        index = _full_index(cache_dir)
        unknown = [t for t in unknown if t not in index]
    if unknown:
        raise ValueError(
            f"--lm-eval-tasks {unknown[0]}: not an lm-eval task of lm-eval {_lm_eval_version()} (the "
            f"benchmark's own are {', '.join(offline) or 'none'}; `lm-eval ls tasks` lists the others)"
        )


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


@functools.cache
def _scanned_names() -> set[str]:
    """The names on the `task:`, `group:` and `tag:` lines of lm-eval's YAMLs (once a process)."""
    return set(_scanned())


@functools.cache
def _scanned() -> dict[str, list[tuple[Path, str]]]:
    """Each name on the `task:`, `group:` and `tag:` lines of lm-eval's YAMLs, with every YAML naming it and
    the line's key (a task's own file, a group's, or a task file that carries the tag)."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval.tasks")
    names: dict[str, list[tuple[Path, str]]] = {}
    for path in sorted(Path(spec.origin).parent.rglob("*.yaml")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if match := TASK_LINE.match(line):  # `task: name`, or a list: `tag: [a, b]`
                values = match.group(2).strip().strip("'\"")
                values = values.strip("[]").split(",") if values.startswith("[") else [values]
                for value in values:
                    names.setdefault(value.strip().strip("'\""), []).append((path, match.group(1)))
    return names


FIELD_LINE = re.compile(
    r"^[\"']?(dataset_path|dataset_name|dataset_kwargs|include)[\"']?:\s*[\"']?([^\"'#]*?)[\"']?\s*(?:#.*)?$"
)
MEMBER_LINE = re.compile(r"^\s+-\s+[\"']?([\w.-]+)[\"']?\s*(?:#.*)?$")  # `  - mmlu_stem` under a group's `task:`


def _fields(path: Path, depth: int = 0) -> dict[str, str]:
    """A task YAML's top-level `dataset_*` fields, its own over those of the file it includes (lm-eval's YAMLs
    carry `!function` tags a plain YAML parser refuses, so the top-level lines are read as text)."""
    fields = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if match := FIELD_LINE.match(line):
            fields.setdefault(match.group(1), match.group(2).strip())
    if "include" in fields and depth < 4 and (path.parent / fields["include"]).is_file():
        fields = _fields(path.parent / fields.pop("include"), depth + 1) | fields
    return fields


def _members(path: Path) -> list[str]:
    """The names a group's YAML lists under its top-level `task:` key."""
    members, listing = [], False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if re.match(r"^[\"']?task[\"']?:\s*(#.*)?$", line):
            listing = True
        elif listing and (match := MEMBER_LINE.match(line)):
            members.append(match.group(1))
        elif listing and line.strip() and not line.startswith((" ", "-")):
            listing = False
    return members


def _hub_datasets(task: str, seen: set[str] | None = None) -> list[tuple[str, str | None]]:
    """The hub datasets (`org/name`, configuration) a task reads, as far as lm-eval's YAMLs say: a task's own
    file's, a group's members' (MMLU: its four groups, each a tag of subjects), a tag's tasks'. Left out (for
    lm-eval to find at the first evaluation): a name the scan does not place, a task reading local files
    (`json`, a folder), one with `dataset_kwargs` (`datasets` caches those under another folder)."""
    seen = set() if seen is None else seen
    if task in seen:
        return []
    seen.add(task)
    found = _scanned().get(task, [])
    own = [path for path, key in found if key == "task"][:1]  # a task's first definition
    files = own + [path for path, key in found if key == "tag"]
    pairs = set()
    for path in files:
        fields = _fields(path)
        if "dataset_kwargs" not in fields:
            pairs.add((fields.get("dataset_path", ""), fields.get("dataset_name") or None))
    for path in [path for path, key in found if key == "group"][:1]:
        pairs.update(pair for member in _members(path) for pair in _hub_datasets(member, seen))
    return sorted(
        {
            (p, None if n in ("null", "None", "~") else n)
            for p, n in pairs
            if p.count("/") == 1 and not Path(p).exists()
        },
        key=lambda pair: (pair[0], pair[1] or ""),
    )


def _in_datasets_cache(dataset: str, name: str | None) -> bool:
    """Whether `datasets` has the dataset's configuration in its local cache, where it looks for it offline
    (`datasets.load.CachedDatasetModuleFactory`: CACHE/org___name/CONFIG/VERSION/HASH; any configuration
    where the task names none)."""
    import glob

    from datasets import config
    from datasets.naming import camelcase_to_snakecase

    org, _, short = dataset.partition("/")
    folder = Path(config.HF_DATASETS_CACHE) / f"{org}___{camelcase_to_snakecase(short)}" / (name or "*")
    return any(Path(p).is_dir() for p in glob.glob(str(folder / "*" / "*")))


def check_task_data(tasks: list[str], offline: list[str]) -> None:
    """Every lm-eval task named (not the benchmark's own) has its data in the local datasets cache, where the
    run reads it offline; the first that does not is one line naming it and the dataset, before anything is
    trained rather than at the first evaluation. Online (neither `HF_DATASETS_OFFLINE` nor `HF_HUB_OFFLINE`
    set), lm-eval downloads what is missing, and nothing is checked."""
    asked = [t for t in tasks if t not in offline]
    if not asked:
        return
    from datasets import config

    if not config.HF_HUB_OFFLINE:
        return
    for task in asked:
        for dataset, name in _hub_datasets(task):
            if not _in_datasets_cache(dataset, name):
                raise ValueError(
                    f"--lm-eval-tasks {task}: its data ({dataset}{', ' + name if name else ''}) is not in the local "
                    f"datasets cache ({config.HF_DATASETS_CACHE}); download it where there is a network "
                    f"(`datasets.load_dataset('{dataset}'{', ' + repr(name) if name else ''})`) or drop the task"
                )


def _full_index(cache_dir) -> set[str]:
    """lm-eval's `TaskManager().all_tasks`, cached as JSON beside the embedded models."""
    from harness.config import cache_root

    path = cache_root(cache_dir) / f"lm_eval-{_lm_eval_version()}-tasks.json"
    try:
        return set(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass
    from lm_eval.tasks import TaskManager

    names = sorted(TaskManager().all_tasks)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(names))
    except OSError:
        pass  # an unwritable cache costs the index again next time, nothing else
    return set(names)


def write_tasks(folder: Path, tasks: list[OfflineTask]) -> Path:
    """The offline tasks' data (JSON lines) and YAMLs under `folder`, with absolute paths; returns it."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        path = folder / f"{task.name}.jsonl"
        write_atomically(path, "".join(json.dumps(r) + "\n" for r in task.rows()))
        yaml = (
            YAML[task.kind]
            .replace("{task}", task.name)
            .replace("{data}", json.dumps(str(path)))
            .replace("{prompt}", PROMPT.replace("\n", "\\n"))
        )
        write_atomically(folder / f"{task.name}.yaml", yaml)
    return folder


def _columns(results: dict) -> dict[str, float]:
    """`{task: {"acc,none": v, "acc_stderr,none": s, "alias": ...}}` -> `lmeval_<task>_<metric>` (no stderr)."""
    out = {}
    for task, values in results.items():
        for key, value in values.items():
            metric, comma, _filter = key.partition(",")  # "alias" and other non-metric keys have no comma
            if comma and "stderr" not in metric and isinstance(value, (int, float)):
                out[f"lmeval_{task}_{metric}"] = float(value)
    return out


_MANAGERS: dict = {}


def run_tasks(
    model, tokenizer, tasks: list[str], tasks_dir: Path, offline: list[str], batch_size: int = 16
) -> dict[str, float]:
    """Run `tasks` with lm-eval on the live model; the model is put back in the mode it was in."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    key = str(tasks_dir)
    if key not in _MANAGERS:  # indexing lm-eval's thousands of task YAMLs takes seconds: once per process
        _MANAGERS[key] = TaskManager(include_path=key)
    manager = _MANAGERS[key]
    was_training = model.training
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        try:
            output = lm_eval.simple_evaluate(
                model=lm,
                tasks=list(tasks),
                task_manager=manager,
                log_samples=False,
                bootstrap_iters=0,
                verbosity="ERROR",
            )
        except Exception as err:
            if any(t not in offline for t in tasks):
                raise ValueError(
                    f"--lm-eval-tasks {','.join(t for t in tasks if t not in offline)}: could "
                    f"not be loaded ({type(err).__name__}: {str(err)[:200]}); offline, only tasks whose "
                    f"data is in the local datasets cache run"
                ) from None
            raise
    finally:
        model.train(was_training)
    return _columns(output["results"])
