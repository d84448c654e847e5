"""Real TOFU: official-schema files (JSON lines, JSON list, parquet), templates, pad tokens, presets, and
`harness run --benchmark tofu` end to end with a tiny model saved to disk."""

import json
from pathlib import Path

import pandas as pd
import pytest
from transformers import PreTrainedTokenizerFast

from harness.benchmarks.tofu_mini import EmbeddedModelConfig
from harness.cli import build_parser, config_from_args, main
from harness.config import method_config
from harness.data.collate import encode_qa
from harness.data.templates import prompt_text
from harness.data.tofu import load_splits, write_official
from harness.data.world import WorldConfig, generate_world
from harness.embedded import build_model, train_tokenizer
from harness.models import ensure_pad_token

SMALL = WorldConfig(n_authors=12, n_countries=6, n_real_authors=6, retain_eval_authors=3, n_perturbed=3)
QA_ONLY = ("question", "answer")


def write_official_tofu(folder: Path) -> Path:
    """The small world in the official file names and schemas (JSON lines, a JSON list, parquet)."""
    return write_official(generate_world(SMALL), folder, "forget01")


def test_official_folder_loads_with_perturbed_eval_splits(tmp_path):
    splits = load_splits(write_official_tofu(tmp_path / "tofu"), "forget01")
    assert set(splits.forget[0]) == set(QA_ONLY)  # training uses the plain split
    assert splits.eval["forget"][0]["perturbed_answer"]  # evaluation the perturbed one
    assert isinstance(splits.eval["real_authors"][0]["perturbed_answer"], list)  # parquet lists come back as lists
    assert splits.eval["world_facts"] == generate_world(SMALL)["world_facts"]  # a folder of parquet files


def test_a_misnamed_field_names_the_file_the_row_and_the_field(tmp_path):
    folder = write_official_tofu(tmp_path / "tofu")
    good = (folder / "retain_perturbed.json").read_text()
    rows = [json.loads(line) for line in good.splitlines()]
    rows[2]["perturbed_answers"] = rows[2].pop("perturbed_answer")
    (folder / "retain_perturbed.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"retain_perturbed.json: row 2: field 'perturbed_answer' is missing"):
        load_splits(folder, "forget01")
    (folder / "retain_perturbed.json").write_text(good)
    (folder / "holdout01.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"holdout01.json: no such split file"):
        load_splits(folder, "forget01")


def test_hub_name_offline_is_one_clear_error():
    with pytest.raises(FileNotFoundError, match=r"--data locuslab/TOFU: could not load forget01 from the hub"):
        load_splits("locuslab/TOFU", "forget01")


@pytest.fixture(scope="module")
def tokenizer():
    texts = [r[k] for rows in generate_world(SMALL).values() for r in rows for k in QA_ONLY]
    return train_tokenizer(texts, vocab_size=400)


def test_templates(tokenizer):
    assert prompt_text(tokenizer, "Who?", "llama2") == "[INST] Who? [/INST]"
    assert prompt_text(tokenizer, "Who?", "qa") == "Question: Who?\nAnswer:"
    with pytest.raises(ValueError, match="template 'chat': tokenizer .* has no chat_template"):
        prompt_text(tokenizer, "Who?", "chat")
    chat = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, **tokenizer.special_tokens_map)
    chat.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    assert prompt_text(chat, "Who?", "chat") == "<s><|user|>Who?<|assistant|>"
    ids = encode_qa(chat, "Who?", "Me.", "chat")["input_ids"]
    assert ids.count(chat.bos_token_id) == 1  # the template's BOS, not a second one


def test_missing_pad_token_is_set_safely(tokenizer):
    model = build_model(EmbeddedModelConfig(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2), tokenizer)
    no_pad = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, eos_token="</s>")
    ensure_pad_token(model, no_pad)
    assert no_pad.pad_token == "</s>" and model.config.pad_token_id == no_pad.eos_token_id
    bare = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)
    before = model.get_input_embeddings().weight.shape[0]
    ensure_pad_token(model, bare)
    assert bare.pad_token == "<pad>" and model.get_input_embeddings().weight.shape[0] >= len(bare) >= before


def parse(*argv):
    return config_from_args(build_parser().parse_args(["run", *argv]))


def test_presets_resolve_to_complete_configurations():
    cfg = parse("--preset", "tofu-llama2-7b", "--methods", "fo-graddiff,so-graddiff,simu")
    assert (cfg.benchmark, cfg.data, cfg.forget_split, cfg.eval.template) == (
        "tofu",
        "locuslab/TOFU",
        "forget10",
        "llama2",
    )
    assert cfg.model and cfg.retain_model
    fo, so, simu = (method_config(m, cfg.overrides_for(m)) for m in ("fo-graddiff", "so-graddiff", "simu"))
    assert (fo.lr, fo.gamma, fo.weight_decay, fo.epochs, fo.batch_size, fo.grad_accum) == (5e-6, 0.3, 0.1, 5, 1, 4)
    assert (so.lr, so.gamma, so.beta1, so.beta2, so.rho) == (5e-6, 2.0, 0.9, 0.95, 0.04)
    assert (simu.lr, simu.gamma, simu.m, simu.t) == (5e-6, 2.0, 5, 0.3)
    olmo = parse(
        "--preset", "tofu-olmo-1b", "--model", "/models/olmo-1b-tofu", "--set", "simu.t=0.5", "--methods", "simu"
    )
    assert olmo.model == "/models/olmo-1b-tofu" and olmo.eval.template == "qa"
    assert method_config("simu", olmo.overrides_for("simu")).t == 0.5  # --set wins over the preset
    assert method_config("simu", olmo.overrides_for("simu")).lr == 5e-6


def test_olmo_preset_without_a_model_is_one_clear_error(tmp_path, capsys):
    assert main(["run", "--preset", "tofu-olmo-1b", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "harness: error: --benchmark tofu: needs --data (a TOFU folder or hub name) and --model (the target model)"
    ]
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, tokenizer):
    """A fixture TOFU folder and two tiny models saved to disk, run through `--model` and `--retain-model`."""
    root = tmp_path_factory.mktemp("tofu")
    data = write_official_tofu(root / "tofu")
    for name, seed in (("target", 0), ("retain", 1)):
        model = build_model(
            EmbeddedModelConfig(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, seed=seed), tokenizer
        )
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    args = [
        "run",
        "--benchmark",
        "tofu",
        "--data",
        str(data),
        "--model",
        str(root / "target"),
        "--methods",
        "fo-graddiff,simu",
        "--template",
        "llama2",
        "--set",
        "forget_split=forget01",
        "--set",
        "eval.max_new_tokens=8",
        "--set",
        "fo-graddiff.epochs=1",
        "--set",
        "simu.epochs=1",
        "--set",
        "simu.attribution=fast",
    ]
    assert main([*args, "--retain-model", str(root / "retain"), "--out", str(root / "run")]) == 0
    assert (
        main(
            [*args, "--retain-eval", str(root / "run" / "reference" / "retain.json"), "--out", str(root / "from-logs")]
        )
        == 0
    )
    return root


def test_real_tofu_run_writes_every_metric(real_run):
    board = pd.read_csv(real_run / "run" / "leaderboard.csv")
    assert list(board["method"]) == ["target", "retain", "fo-graddiff", "simu"]
    assert set(board["template"]) == {"llama2"} and set(board["model"]) == {"target"}
    for column in (
        "forget_truth_ratio",
        "retain_truth_ratio",
        "forget_quality",
        "model_utility",
        "mia_zlib_auc",
        "mia_min_k_auc",
        "mia_min_k_pp_auc",
        "privleak_min_k",
        "lume_style_aggregate",
    ):
        assert board[column].notna().all(), column
    retain = board.set_index("method").loc["retain"]
    assert retain["forget_quality"] == 1.0 and retain["privleak_loss"] == 0.0  # the reference against itself
    prompt = json.loads((real_run / "run" / "results" / "target.items.jsonl").read_text().splitlines()[0])["prompt"]
    assert prompt.startswith("[INST] ") and prompt.endswith(" [/INST]")


def test_saved_retain_evaluation_gives_the_same_reference_metrics(real_run):
    live = pd.read_csv(real_run / "run" / "leaderboard.csv").set_index("method")
    logged = pd.read_csv(real_run / "from-logs" / "leaderboard.csv").set_index("method")
    assert "retain" not in logged.index
    for column in ("forget_quality", "privleak_loss", "privleak_min_k_pp", "forget_em_contains"):
        assert logged.loc["target", column] == live.loc["target", column], column
