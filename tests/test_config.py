import pytest

from harness.cli import build_parser, main
from harness.config import RunConfig, apply_override, build, method_config


def test_method_config_layers_defaults_and_overrides():
    cfg = method_config("fo-graddiff", {"lr": "3e-4", "epochs": "2"})
    assert cfg.lr == 3e-4 and cfg.epochs == 2 and cfg.gamma == 0.3  # gamma from the method's defaults


def test_set_routes_sections_and_methods():
    cfg = RunConfig()
    for assignment in (
        "world.n_authors=12",
        "train.hidden_size=64",
        "eval.max_new_tokens=16",
        "fo-graddiff.lr=1e-3",
        "forget_split=forget05",
    ):
        apply_override(cfg, assignment)
    assert (
        cfg.section("world").n_authors == 12
        and cfg.section("train").hidden_size == 64
        and cfg.eval.max_new_tokens == 16
    )
    assert cfg.forget_split == "forget05"
    assert method_config("fo-graddiff", cfg.method_overrides["fo-graddiff"]).lr == 1e-3


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("world.n_author=3", "unknown key; world has: seed, n_authors"),
        ("train.lr=fast", "expected a float"),
        ("fo-graddiff.lrr=1", "unknown hyperparameter; fo-graddiff has: "),
        ("nonsense=1", "unknown key"),
        ("noequals", "expected key=value"),
        ("forget_split=forget07", "expected forget01, forget05 or forget10"),
    ],
)
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
    assert (
        main(
            [
                "run",
                "--out",
                str(tmp_path / "run"),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--set",
                "world.n_countries=3",
            ]
        )
        == 2
    )
    assert "world.n_countries=3: expected more than world.n_perturbed=5" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_parses_lists():
    args = build_parser().parse_args(["run", "--methods", "a,b", "--seeds", "0,1,2"])
    assert args.methods == ["a", "b"] and args.seeds == [0, 1, 2]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--seeds", "x"])


# --- presets: TOML files, validated on load ------------------------------------------------------------------


def test_every_preset_applies_and_run_help_lists_it(capsys):
    from harness import presets
    from harness.config import apply_preset

    assert {"tofu-llama2-7b", "tofu-olmo-1b", "tofu-mini-smoke"} <= set(presets.names())
    for name in presets.names():
        apply_preset(RunConfig(), name)  # every value checked against the config and the methods
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    help_text = capsys.readouterr().out
    for name in presets.names():
        assert f"  {name}" in help_text and presets.load(name)["description"][:40] in help_text.replace("\n", " ")


def test_a_preset_file_of_your_own(tmp_path):
    from harness.config import apply_preset

    path = tmp_path / "mine.toml"
    path.write_text(
        'description = "mine"\nbenchmark = "tofu-mini"\nforget_split = "forget05"\n'
        '[world]\nn_authors = 12\n[methods.simu]\nt = 0.5\nmask = "forget-only"\n'
    )
    cfg = RunConfig()
    apply_preset(cfg, str(path))
    assert cfg.forget_split == "forget05" and cfg.section("world").n_authors == 12
    simu = method_config("simu", cfg.overrides_for("simu"))
    assert simu.t == 0.5 and simu.mask == "forget-only"


@pytest.mark.parametrize(
    "text, message",
    [
        ('description = "x"\nmodels = "a"', "unknown key 'models'; expected description, benchmark"),
        ('benchmark = "tofu-mini"', "missing 'description'"),
        ('description = "x"\nbenchmark = 3', "'benchmark' must be a string"),
        ('description = "x"\n[methods.simu]\ntt = 0.5', "simu.tt: unknown hyperparameter; simu has: "),
        ('description = "x"\n[methods.nope]\nlr = 1', "methods.nope: unknown method; registered: fo-graddiff"),
        ('description = "x"\n[world]\nn_authors = "many"', "world.n_authors=many: expected a int"),
        ('description = "x"\nbenchmark = "mmlu"', "benchmark=mmlu: unknown; registered: lume, lume-mini"),
        ("description = x", "not TOML"),
    ],
)
def test_a_bad_preset_is_one_line_naming_the_file_and_key(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", "--preset", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_an_unknown_preset_name_lists_the_presets(capsys):
    assert main(["run", "--preset", "tofu-llama3"]) == 2
    expected = "--preset tofu-llama3: unknown; expected one of lume-olmo-1b, lume-olmo-7b, tofu-llama2-7b, tofu-mini"
    assert expected in capsys.readouterr().err


def test_the_forget_split_is_the_benchmarks_choice():
    """TOFU offers three forget splits; LUME has one, so picking one there is refused rather than ignored (and a
    benchmark's own sections are refused on another benchmark by name)."""
    assert build("run", settings={"forget_split": "forget05"}).forget_split == "forget05"
    with pytest.raises(ValueError, match="forget_split=forget05: --benchmark lume-mini has one forget split"):
        build("run", benchmark="lume-mini", settings={"forget_split": "forget05"})
    with pytest.raises(
        ValueError,
        match=r"world.seed: unknown key; expected forget_split, eval.\*, compute.\*, "
        r"save.\*, lume.\*, gate.\* \(the sections of --benchmark lume\)",
    ):
        build("run", benchmark="lume", settings={"world.seed": 1})


def test_a_methods_template_is_the_runs():
    with pytest.raises(ValueError, match="simu.template=chat: the prompt template is the run's: --template"):
        method_config("simu", {"template": "chat"})


def test_real_lumes_sums_enter_its_hash_only_when_set():
    """The held-out sums (LUME's MMLU stand-in) change its figures, so setting them changes the rows' identity;
    at their defaults they add nothing (the hashes made before stay valid)."""
    from harness.registry import benchmarks

    lume = benchmarks["lume"]()
    plain = build("run", benchmark="lume", data="d", model="m")
    assert lume.identity(plain) == {"data": "d"}
    set_sums = build("run", benchmark="lume", data="d", model="m", settings={"lume.sum_operands": 30})
    assert lume.identity(set_sums)["lume"]["sum_operands"] == 30
