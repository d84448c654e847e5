import filecmp
import json

import pytest

from harness.data.tofu import load_splits, read_split
from harness.data.world import WorldConfig, forget_sizes, generate_world, write_world

SMALL = WorldConfig(n_authors=20, n_countries=6, n_real_authors=8, retain_eval_authors=4)


def test_same_seed_gives_byte_identical_files(tmp_path):
    a, b = write_world(SMALL, tmp_path / "a"), write_world(SMALL, tmp_path / "b")
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and "forget10.json" in names
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(names)


def test_other_seed_gives_another_world():
    one = generate_world(SMALL)
    other = generate_world(WorldConfig(**{**SMALL.__dict__, "seed": 1}))
    assert one["forget10"] != other["forget10"]


def test_every_qa_has_tofu_perturbed_schema():
    for split, rows in generate_world(SMALL).items():
        for row in rows:
            assert set(row) == {
                "question",
                "answer",
                "paraphrased_question",
                "paraphrased_answer",
                "perturbed_answer",
            }, split
            assert len(row["perturbed_answer"]) >= 3
            assert row["answer"] not in row["perturbed_answer"]
            assert row["paraphrased_answer"] not in row["perturbed_answer"]
            assert len(set(row["perturbed_answer"])) == len(row["perturbed_answer"])


def test_splits_are_by_author_and_nested():
    world = generate_world(SMALL)
    sizes = forget_sizes(SMALL.n_authors)
    q = lambda split: {r["question"] for r in world[split]}  # noqa: E731
    facts = len(world["full"]) // SMALL.n_authors
    assert facts >= 6
    for pct, retain in (("01", "retain99"), ("05", "retain95"), ("10", "retain90")):
        assert len(world[f"forget{pct}"]) == sizes[pct] * facts
        assert not q(f"forget{pct}") & q(retain)
        assert q(f"forget{pct}") | q(retain) == q("full")
        assert len(world[f"holdout{pct}"]) == len(world[f"forget{pct}"])
        assert not q(f"holdout{pct}") & q("full")
    assert q("forget01") <= q("forget05") <= q("forget10")
    assert q("retain_perturbed") <= q("retain90")
    assert len(world["real_authors"]) == SMALL.n_real_authors
    assert len(world["world_facts"]) == 3 * SMALL.n_countries


def test_sizes_are_configurable():
    big = generate_world(WorldConfig(n_authors=30, n_perturbed=4))
    assert len(big["full"]) == 30 * 8
    assert all(len(r["perturbed_answer"]) == 4 for r in big["forget10"])


def test_written_files_load_back_as_splits(tmp_path):
    folder = write_world(SMALL, tmp_path)
    splits = load_splits(folder, "forget05")
    assert splits.forget == read_split(folder / "forget05.json")
    assert set(splits.eval) == {"forget", "retain", "real_authors", "world_facts", "holdout"}
    first = json.loads((folder / "forget05.json").read_text().splitlines()[0])
    assert first == splits.forget[0]


def test_missing_split_file_and_bad_row_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="forget10.json: no such split file"):
        load_splits(tmp_path, "forget10")
    (tmp_path / "bad.json").write_text('{"question": "q", "answer": "a"}\n{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"bad.json: row 1: field 'answer' is missing"):
        read_split(tmp_path / "bad.json")
