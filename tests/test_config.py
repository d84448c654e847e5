import pytest

from harness.cli import build_parser, main
from harness.config import RunConfig, apply_override, method_config


def test_method_config_layers_defaults_and_overrides():
    cfg = method_config("fo-graddiff", {"lr": "3e-4", "epochs": "2"})
    assert cfg.lr == 3e-4 and cfg.epochs == 2 and cfg.gamma == 0.3  # gamma from the method's defaults


def test_set_routes_sections_and_methods():
    cfg = RunConfig()
    for assignment in ("world.n_authors=12", "train.hidden_size=64", "eval.max_new_tokens=16",
                       "fo-graddiff.lr=1e-3", "forget_split=forget05"):
        apply_override(cfg, assignment)
    assert cfg.world.n_authors == 12 and cfg.train.hidden_size == 64 and cfg.eval.max_new_tokens == 16
    assert cfg.forget_split == "forget05"
    assert method_config("fo-graddiff", cfg.method_overrides["fo-graddiff"]).lr == 1e-3


@pytest.mark.parametrize("assignment, message", [
    ("world.n_author=3", "unknown key; world has: seed, n_authors"),
    ("train.lr=fast", "expected a float"),
    ("fo-graddiff.lrr=1", "unknown hyperparameter; fo-graddiff has: "),
    ("nonsense=1", "unknown key"),
    ("noequals", "expected key=value"),
    ("forget_split=forget07", "expected forget01, forget05 or forget10"),
])
def test_bad_overrides_name_the_input(assignment, message):
    with pytest.raises(ValueError, match=message):
        apply_override(RunConfig(), assignment)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    assert main(["run", "--methods", "no-such-method", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method 'no-such-method'; registered: fo-graddiff" in err[0]
    assert not (tmp_path / "run").exists()


def test_world_sizes_are_checked_when_the_world_is_made(tmp_path, capsys):
    cfg = RunConfig()
    apply_override(cfg, "world.n_countries=3")
    apply_override(cfg, "world.n_perturbed=2")  # order of --set does not matter: checked at generation
    assert main(["run", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"),
                 "--set", "world.n_countries=3"]) == 2
    assert "world.n_countries=3: expected more than world.n_perturbed=5" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_parses_lists():
    args = build_parser().parse_args(["run", "--methods", "a,b", "--seeds", "0,1,2"])
    assert args.methods == ["a", "b"] and args.seeds == [0, 1, 2]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--seeds", "x"])
