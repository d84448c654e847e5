"""LUME: metrics on hand-computable rows, the official-schema loader, and the embedded world's shape."""

import json

import pandas as pd
import pytest

from evaluators import lume, mia
from harness.data.lume import LumeWorldConfig, generate_lume, kind, load_lume, sums


def test_regurgitation_is_stemmed_rouge_l_recall_and_knowledge_is_stripped_lowercase_equality():
    # gold "the cats sat" against "the cat sat down": with the stemmer all three gold tokens match
    assert lume.regurgitation("the cats sat", "the cat sat down") == pytest.approx(1.0)
    assert lume.regurgitation("a b c d", "a x c") == pytest.approx(0.5)  # LCS "a c": 2 of 4
    assert lume.knowledge(" 555-123-4567 ", "555-123-4567") == 1.0
    assert lume.knowledge("Rikel", "rikel") == 1.0
    assert lume.knowledge("Rikel", "Rikel.") == 0.0  # no normalisation beyond that


def items(values):
    """One item per (split, task, score) with the given value."""
    out = []
    for (split, task, score), value in values.items():
        out.append({"split": split, "task": task, score: value})
    return out


def test_task_values_and_harmonic_mean_with_forget_inverted():
    values = {
        (split, task, score): 0.5
        for split in ("forget", "retain")
        for task in ("Task1", "Task2", "Task3")
        for score in ("regurgitation", "knowledge")
    }
    values[("forget", "Task1", "knowledge")] = 0.2  # counts as 1 - 0.2 = 0.8
    values[("retain", "Task3", "regurgitation")] = 0.8
    per_task = lume.task_values(items(values))
    assert len(per_task) == 12 and per_task["lume_forget_task1_knowledge"] == 0.2
    # 10 values of 0.5 and two of 0.8: 12 / (10/0.5 + 2/0.8)
    assert lume.task_aggregate(per_task) == pytest.approx(12 / (10 / 0.5 + 2 / 0.8))


def test_any_zero_makes_the_aggregate_zero():
    values = {
        (split, task, score): 0.6
        for split in ("forget", "retain")
        for task in ("Task1", "Task2", "Task3")
        for score in ("regurgitation", "knowledge")
    }
    values[("forget", "Task2", "regurgitation")] = 1.0  # fully regurgitated forget task: 1 - 1 = 0
    assert lume.task_aggregate(lume.task_values(items(values))) == 0
    values[("forget", "Task2", "regurgitation")] = 0.6
    values[("retain", "Task1", "knowledge")] = 0.0  # retain knowledge lost entirely
    assert lume.task_aggregate(lume.task_values(items(values))) == 0


def test_task_values_average_rows():
    rows = [{"split": "forget", "task": "Task1", "knowledge": v} for v in (1, 0, 0, 1)]
    assert lume.task_values(rows) == {"lume_forget_task1_knowledge": 0.5}


def test_mia_score_is_symmetric_around_chance_and_uses_negative_loss():
    assert mia.mia_score(0.5) == 1 and mia.mia_score(1.0) == 0 and mia.mia_score(0.0) == 0
    assert mia.mia_score(0.8) == pytest.approx(mia.mia_score(0.2)) == pytest.approx(0.4)
    member_loss, nonmember_loss = [0.1, 0.2], [0.3, 0.4]  # members have lower loss: AUC 1 on -loss
    assert mia.auc([-x for x in member_loss], [-x for x in nonmember_loss]) == 1.0


def test_final_score_is_the_plain_mean():
    assert lume.final_score(0.6, 0.3, 0.9) == pytest.approx(0.6)


# ---- the official files ------------------------------------------------------------------------------------

ROWS = [
    {
        "id": "6de8b2b3-7d84-4c0e-9bd5-3cb3d2c30fd4sc1",
        "input": "Mira lived by the",
        "output": " sea for years.",
        "task": "Task1",
        "split": "forget",
    },
    {
        "id": "6de8b2b3-7d84-4c0e-9bd5-3cb3d2c30fd4qa0",
        "input": "Where did Mira live?",
        "output": "by the sea",
        "task": "Task1",
        "split": "forget",
    },
    {
        "id": "a1b2c3d4-0000-4000-8000-000000000001qa3",
        "input": "What is Ann Lee's phone number?",
        "output": "555-010-2020",
        "task": "Task2",
        "split": "retain",
    },
]
MIA = [{"id": "6de8b2b3-7d84-4c0e-9bd5-3cb3d2c30fd4", "document": "Mira lived by the sea for years."}]


def write_official(folder, fmt="jsonl", forget=None):
    folder.mkdir(parents=True, exist_ok=True)
    forget = forget if forget is not None else [r for r in ROWS if r["split"] == "forget"]
    retain = [r for r in ROWS if r["split"] == "retain"]
    if fmt == "parquet":  # the hub layout: data/<split>_train-00000-of-00001.parquet
        (folder / "data").mkdir()
        pd.DataFrame(forget).to_parquet(folder / "data" / "forget_train-00000-of-00001.parquet")
        pd.DataFrame(retain).to_parquet(folder / "data" / "retain_train-00000-of-00001.parquet")
    else:
        for name, rows in (("forget", forget), ("retain", retain)):
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "mia_data").mkdir()
    (folder / "mia_data" / "member.jsonl").write_text(json.dumps(MIA[0]) + "\n")
    (folder / "mia_data" / "nonmember.jsonl").write_text(json.dumps({"id": "x", "document": "Unseen text."}) + "\n")
    return folder


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_loader_reads_the_official_schema(tmp_path, fmt):
    splits = load_lume(write_official(tmp_path / "lume", fmt))
    assert [r["id"] for r in splits.forget] == [ROWS[0]["id"], ROWS[1]["id"]]
    assert splits.retain[0]["output"] == "555-010-2020"
    assert [kind(r) for r in splits.forget] == ["sc", "qa"]
    assert splits.members == MIA and splits.nonmembers[0]["document"] == "Unseen text."


@pytest.mark.parametrize(
    "row, message",
    [
        ({**ROWS[0], "output": None}, "row 1: field 'output' is missing or not a string"),
        ({k: v for k, v in ROWS[0].items() if k != "task"}, "row 1: field 'task' is missing or not a string"),
        ({**ROWS[0], "task": "Task4"}, "row 1: field 'task' is 'Task4', expected one of Task1, Task2, Task3"),
        ({**ROWS[0], "split": "retain"}, "row 1: field 'split' is 'retain', expected 'forget'"),
        ({**ROWS[0], "id": "abc"}, "row 1: field 'id' is 'abc', expected a suffix sc<N> or qa<N>"),
    ],
)
def test_malformed_rows_name_the_file_row_and_field(tmp_path, row, message):
    folder = write_official(tmp_path / "lume", forget=[ROWS[1], row])
    with pytest.raises(ValueError) as err:
        load_lume(folder)
    assert str(err.value) == f"{folder / 'forget.jsonl'}: {message}"


def test_missing_files_are_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_lume(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no forget file"):
        load_lume(tmp_path / "empty")


def test_embedded_world_has_three_tasks_both_kinds_both_splits_and_mia_documents():
    world = generate_lume(LumeWorldConfig())
    assert world == generate_lume(LumeWorldConfig())  # deterministic
    for split in ("forget", "retain"):
        assert {(r["task"], kind(r)) for r in world[split]} == {
            (t, k) for t in ("Task1", "Task2", "Task3") for k in ("sc", "qa")
        }
    pii = " ".join(r["output"] for r in world["forget"] if r["task"] == "Task2")
    assert "@" in pii and "555-" in pii  # emails and phone numbers
    members = {d["document"] for d in world["member"]}
    assert len(members) == 9 and not members & {d["document"] for d in world["nonmember"]}
    forget_docs = {r["input"] + r["output"] for r in world["forget"] if kind(r) == "sc"}
    assert forget_docs == members  # members are the forget documents


def test_sums_hold_out_the_probe_and_put_the_true_sum_among_its_neighbours():
    """The MMLU stand-in asks sums the target never saw: learned and probe questions are disjoint, cover every
    pair, and each probe's choices are five consecutive non-negative sums, the true one labelled."""
    learned, probe = sums(LumeWorldConfig(sum_operands=10, sum_probe=0.3))
    assert (learned, probe) == sums(LumeWorldConfig(sum_operands=10, sum_probe=0.3))  # deterministic
    assert len(probe) == 30 and len(learned) == 70
    asked = {r["question"] for r in learned}
    assert not asked & {r["question"] for r in probe}
    assert len(asked | {r["question"] for r in probe}) == 100
    for row in probe:
        a, b = map(int, row["question"].removeprefix("What is ").removesuffix("?").split(" plus "))
        values = [int(c.rsplit(" ", 1)[1].rstrip(".")) for c in row["choices"]]
        assert values == list(range(values[0], values[0] + 5)) and values[0] >= 0
        assert values[row["label"]] == a + b and row["choices"][row["label"]] == f"{a} plus {b} is {a + b}."
    assert learned[0]["answer"].endswith(".") and " plus " in learned[0]["answer"]
