"""Bootstrap intervals and paired comparisons (harness/uncertainty.py) against hand computations, and on
planted differences and nulls: no model is trained here."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness import compare
from harness.cli import main
from harness.tables import render
from harness.uncertainty import Bootstrap, Resampler, read_items


def rows(method, values, column="model_utility", variant=""):
    return pd.DataFrame(
        [{"method": method, "variant": variant, "kind": "method", "seed": s, column: v} for s, v in enumerate(values)]
    )


def item_frame(method, matrix, split="retain", field="em_contains", variant=""):
    """Per-item values: matrix[seed][item]."""
    return pd.DataFrame(
        [
            {"method": method, "variant": variant, "seed": s, "split": split, "item": str(i), field: v}
            for s, seed_values in enumerate(matrix)
            for i, v in enumerate(seed_values)
        ]
    )


def board_rows(method, matrix, column="retain_em_contains", variant="", **extra):
    """Leaderboard rows whose column is each seed's mean of its items (as the runner writes them)."""
    return [
        {"method": method, "variant": variant, "kind": "method", "seed": s, column: float(np.mean(v))} | extra
        for s, v in enumerate(matrix)
    ]


def test_two_seeds_resample_as_by_hand():
    """Two seeds a, b, drawn twice with replacement: the mean is a (1/4), (a + b)/2 (1/2) or b (1/4); the
    replicates' std, |a - b| / (2 sqrt 2), times sqrt(2 / 1) is the textbook standard error s / sqrt(2), and the
    interval is Student's with 1 degree of freedom."""
    settings = Bootstrap(resamples=20000)
    resampler, board = Resampler(settings, [0, 1]), rows("m", [0.2, 0.6])
    replicates = resampler.replicates(board, "model_utility")
    shares = [np.mean(np.isclose(replicates.seeds, v)) for v in (0.2, 0.4, 0.6)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.01)
    estimate = resampler.estimate(0.4, replicates, [board], "model_utility")
    assert estimate.df == 1 and estimate.se == pytest.approx(stats.sem([0.2, 0.6]), rel=0.01)
    textbook = stats.t.interval(0.95, 1, loc=0.4, scale=stats.sem([0.2, 0.6]))
    assert estimate.interval(0.95) == pytest.approx(textbook, rel=0.01)


def test_one_level_spread_is_the_plug_in_standard_error():
    values = [0.1, 0.5, 0.4, 0.9, 0.3]
    resampler, board = Resampler(Bootstrap(resamples=40000), range(5)), rows("m", values)
    replicates = resampler.replicates(board, "model_utility")
    assert replicates.seeds.mean() == pytest.approx(np.mean(values), abs=0.003)
    assert replicates.seeds.std() == pytest.approx(np.std(values) / math.sqrt(5), rel=0.03)
    estimate = resampler.estimate(np.mean(values), replicates, [board], "model_utility")
    assert estimate.se == pytest.approx(stats.sem(values), rel=0.03) and estimate.df == 4


def test_seeds_and_items_resample_as_a_crossed_design():
    """V[s, i] = a_s + b_i: resampling seeds moves the grand mean by a's part only (variance var(a) / S, a
    population variance), resampling items by b's only (var(b) / N); the standard error adds both, each scaled
    by n / (n - 1), and its degrees of freedom are Welch-Satterthwaite's."""
    a, b = np.array([0.0, 0.3, 0.1]), np.linspace(0, 1, 12) ** 2
    matrix = a[:, None] + b[None, :]
    items = item_frame("m", matrix)
    resampler = Resampler(Bootstrap(resamples=40000), range(3), items)
    board = pd.DataFrame(board_rows("m", matrix))
    draws = resampler.replicates(board, "retain_em_contains")
    assert draws.seeds.mean() == pytest.approx(matrix.mean(), abs=0.004)
    assert draws.seeds.var() == pytest.approx(a.var() / 3, rel=0.05)
    assert draws.items.var() == pytest.approx(b.var() / 12, rel=0.05)
    estimate = resampler.estimate(matrix.mean(), draws, [board], "retain_em_contains")
    seeds, items_part = a.var(ddof=1) / 3, b.var(ddof=1) / 12  # the textbook variances of the two means
    assert estimate.se**2 == pytest.approx(seeds + items_part, rel=0.05)
    assert estimate.df == pytest.approx((seeds + items_part) ** 2 / (seeds**2 / 2 + items_part**2 / 11), rel=0.1)


def test_items_that_do_not_give_the_row_are_refused():
    matrix = [[1.0, 0.0], [1.0, 1.0]]
    board = pd.DataFrame(board_rows("m", matrix))
    board.loc[0, "retain_em_contains"] = 0.9
    with pytest.raises(ValueError, match="give retain_em_contains 0.5, the leaderboard 0.9"):
        Resampler(Bootstrap(), range(2), item_frame("m", matrix)).replicates(board, "retain_em_contains")


def planted(rng, shift, seeds=3, n=64):
    """Two methods answering the same items: item difficulty shared, per-seed and per-answer noise their own,
    B = A's level + `shift`."""
    difficulty = rng.normal(0, 0.15, n)
    one = lambda level: np.clip(  # noqa: E731
        level + difficulty[None, :] + rng.normal(0, 0.05, (seeds, 1)) + rng.normal(0, 0.1, (seeds, n)), 0, 1
    )
    return one(0.6), one(0.6 + shift)


def paired(a, b):
    items = pd.concat([item_frame("a", a), item_frame("b", b)])
    board = pd.DataFrame(board_rows("a", a) + board_rows("b", b))
    resampler = Resampler(Bootstrap(), range(len(a)), items)
    groups = [board[board["method"] == m] for m in "ab"]
    ra, rb = (resampler.replicates(g, "retain_em_contains") for g in groups)
    return resampler.estimate(float(np.mean(a) - np.mean(b)), ra - rb, groups, "retain_em_contains")


def test_the_paired_comparison_finds_a_planted_difference_and_not_a_planted_null():
    """Three seeds, 64 items, each method's own seed-to-seed noise (sd 0.05) and answer noise (0.1): a planted
    difference of 0.2 is found; of 60 planted nulls, about 5% come out below 5% (a percentile interval gave 11 of
    40 here: the seeds' few degrees of freedom are what the t interval keeps)."""
    rng = np.random.default_rng(7)
    found = paired(*planted(rng, 0.2))
    assert found.p < 0.05 and found.interval(0.95)[1] < 0  # a - b: b is 0.2 higher
    nulls = [paired(*planted(rng, 0.0)).p for _ in range(60)]
    assert sum(p < 0.05 for p in nulls) <= 7  # 3 expected at a calibrated 5%; 7 or more has chance < 4%
    same = planted(rng, 0.0)[0]
    assert paired(same, same).p == 1.0  # nothing differs


def test_pairing_is_what_separates_a_small_consistent_difference():
    """A difference of 0.02 on every item, items varying far more: paired, it is separated; the same two
    methods' own intervals overlap."""
    rng = np.random.default_rng(3)
    a = np.clip(rng.uniform(0.2, 0.8, (3, 64)), 0, 1)
    b = a + 0.02
    items = pd.concat([item_frame("a", a), item_frame("b", b)])
    board = pd.DataFrame(board_rows("a", a) + board_rows("b", b))
    resampler = Resampler(Bootstrap(), range(3), items)
    groups = [board[board["method"] == m] for m in "ab"]
    ra, rb = (resampler.replicates(g, "retain_em_contains") for g in groups)
    column = "retain_em_contains"
    assert resampler.estimate(0.02, rb - ra, groups, column).interval(0.95)[0] > 0
    own = [
        resampler.estimate(float(np.mean(m)), r, [g], column).interval(0.95)
        for m, r, g in zip((a, b), (ra, rb), groups)
    ]
    assert own[0][1] > own[1][0]  # a's interval reaches into b's


def test_the_table_bolds_only_a_separated_best():
    rng = np.random.default_rng(0)
    clear = [rng.uniform(0.3, 0.5, (3, 32)), rng.uniform(0.6, 0.9, (3, 32))]  # b far above a
    frame = pd.DataFrame(board_rows("a", clear[0]) + board_rows("b", clear[1]))
    items = pd.concat([item_frame("a", clear[0]), item_frame("b", clear[1])])
    text = render(frame, ["retain_em_contains"], items=items)
    assert "| b | **" in text and "†" not in text
    noise = rng.normal(0, 0.1, (3, 32))
    noisy = clear[1] + noise - noise.mean()  # c: b's mean, its items apart by noise
    frame = pd.DataFrame(board_rows("b", clear[1]) + board_rows("c", noisy))
    items = pd.concat([item_frame("b", clear[1]), item_frame("c", noisy)])
    text = render(frame, ["retain_em_contains"], items=items, intervals=True)
    assert "**" not in text and text.count("]†") == 2  # b's and c's cells
    assert "† best mean, but not separated" in text
    assert "over seeds, and items in a column that is an item mean" in text


def sweep_with_items(tmp_path, shift):
    """A two-method sweep (3 rates x 3 seeds) on 32 forget and 32 retain items, both forgetting alike, b's retain
    answers `shift` more likely right than a's at every point (the same noise draws), saved as leaderboard.csv
    with items.csv.gz beside it."""
    rng = np.random.default_rng(1)
    board, items = [], []
    refs = [("target", 1.0), ("retain", 0.0)]
    for name, forget in refs:
        board.append({"benchmark": "tofu-mini", "method": name, "kind": "reference", "forget_em_contains": forget,
                      "retain_em_contains": 1.0, "model_utility": 0.55})  # fmt: skip
    difficulty = rng.uniform(0, 1, 32)
    draws = [(rng.uniform(0, 1, (3, 32)), rng.normal(0, 0.02, (3, 32))) for _ in range(3)]
    for method, extra in (("a", 0.0), ("b", shift)):
        for k, lr in enumerate((1e-5, 1e-4, 1e-3)):
            variant = f"lr={lr:g}"
            forget = (draws[k][0] > 0.3 * (k + 1)).astype(float)
            retain = (difficulty[None, :] + draws[k][1] < 0.7 - 0.2 * k + extra).astype(float)
            for s in range(3):
                board.append({"benchmark": "tofu-mini", "method": method, "kind": "method", "seed": s,
                              "variant": variant, f"{method}.lr": lr, "forget_em_contains": forget[s].mean(),
                              "retain_em_contains": retain[s].mean(), "model_utility": 0.5})  # fmt: skip
            items += [
                item_frame(method, forget, "forget", variant=variant),
                item_frame(method, retain, variant=variant),
            ]
    path = tmp_path / "sweep"
    path.mkdir()
    pd.DataFrame(board).to_csv(path / "leaderboard.csv", index=False)
    pd.concat(items).to_csv(path / "items.csv.gz", index=False)
    return path


def test_compare_pair_prints_intervals_and_p_values(tmp_path, capsys):
    sweep = sweep_with_items(tmp_path, 0.3)
    assert read_items(sweep) is not None
    assert main(["compare", str(sweep), "--pair", "a,b", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "A = a, B = b" in printed and "over seeds and items" in printed
    pair = pd.read_csv(tmp_path / "out" / "pair.csv")
    assert list(pair["at"][:3]) == ["selected"] * 3
    matched_retain = pair[(pair["role"] == "retain") & (pair["at"] != "selected")]
    reached = matched_retain.dropna(subset=["difference"])
    assert len(reached) and (reached["hi"] < 0).all() and (reached["p"] < 0.05).all()
    assert set(reached["verdict"]) == {"B better"}
    table = (tmp_path / "out" / "matched.md").read_text()
    assert " [" in table  # the matched table prints intervals


def test_compare_pair_refuses_a_method_the_sweep_lacks(tmp_path):
    sweep = sweep_with_items(tmp_path, 0.0)
    with pytest.raises(ValueError, match="--pair a,z: z is not a method of the sweep"):
        compare.compare(sweep, tmp_path / "out", pair=("a", "z"))
    assert main(["compare", str(sweep), "--pair", "a", "--out", str(tmp_path / "o")]) == 2


def test_bootstrap_settings_are_checked():
    with pytest.raises(ValueError, match="--level 1.5"):
        Bootstrap(level=1.5)
    with pytest.raises(ValueError, match="--resamples 3"):
        Bootstrap(resamples=3)
