"""Presets: the paper's settings by name, overridable by a config file and flags, printable as TOML, and named by
all their values (a preset run's hash does not depend on snnlth's defaults)."""

import json

import pytest

from snnlth import presets
from snnlth.cli import build_parser, main
from snnlth.config import SearchRunConfig
from snnlth.config_io import config_from_dict, load_toml, overrides_from_namespace, resolve_search_config, semantic_dict
from snnlth.methods.registry import method_of
from tests.helpers import one_line_error


def _cfg(*flags, config=None):
    args = build_parser().parse_args(["search", *flags])
    return resolve_search_config(config, overrides_from_namespace(args))


def test_every_paper_setting_is_a_preset(capsys):
    assert main(["presets"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 * 5 * 4 and listed[0].startswith("vgg16-cifar10-imp ")
    for name in presets.names():
        cfg = _cfg("--preset", name)
        t, s = cfg.train, cfg.search
        assert (t.lr, t.momentum, t.weight_decay, t.batch_size, cfg.model.timesteps) == (0.3, 0.9, 5e-4, 128, 5)
        assert (s.rounds, s.prune_rate, s.rewind_epoch, s.eb_window, s.eb_threshold) == (14, 0.25, 20, 5, 0.02)
        assert t.epochs == (150 if cfg.data.dataset in ("svhn", "fmnist") else 300)
        assert cfg.data.resize == (32 if cfg.data.dataset == "fmnist" else None)
        assert (s.early_time == "auto") == name.endswith("-et") and s.method == name.split("-")[2]
        assert s.preset == name


def test_file_then_flags_override_a_preset(tmp_path):
    (tmp_path / "c.toml").write_text('[search]\npreset = "resnet19-svhn-imp"\nrounds = 3\n[train]\nepochs = 40\n')
    cfg = _cfg("--epochs", "30", config=str(tmp_path / "c.toml"))
    assert (cfg.model.model, cfg.data.dataset, cfg.search.rounds, cfg.train.epochs, cfg.train.lr) == (
        "resnet19", "svhn", 3, 30, 0.3)


def test_print_config_round_trips(tmp_path, capsys):
    assert main(["search", "--preset", "vgg16-fmnist-eb-et", "--epochs", "30", "--print-config"]) == 0
    (tmp_path / "p.toml").write_text(capsys.readouterr().out)
    again = config_from_dict(SearchRunConfig, load_toml(tmp_path / "p.toml"))
    assert again == _cfg("--preset", "vgg16-fmnist-eb-et", "--epochs", "30")


def test_unknown_preset_is_one_line(capsys):
    assert main(["search", "--preset", "vgg16-cifar10-ipm", "--print-config"]) == 2
    assert "did you mean vgg16-cifar10-imp" in one_line_error(capsys)


def test_a_preset_run_is_named_by_all_its_values():
    cfg = _cfg("--preset", "vgg16-cifar10-imp")
    ignored = method_of(cfg).ignored(cfg)
    ident = semantic_dict(cfg, ignored, presets.explicit_values(cfg, ignored))
    assert ident["train"]["momentum"] == 0.9 and ident["model"]["tau"] == pytest.approx(4 / 3)  # default values too
    assert ident["search"]["rounds"] == 14 and "eb_window" not in ident["search"]  # imp does not read eb_window
    plain = semantic_dict(cfg, ignored)
    assert "momentum" not in plain["train"]  # without the preset, defaults are left out


@pytest.mark.slow
def test_a_reduced_preset_runs_and_resumes(fmnist_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["search", "--preset", "vgg16-fmnist-imp-et", "--data-dir", str(fmnist_dir), "--epochs", "3",
            "--rewind-epoch", "1", "--rounds", "1", "--retrain-at", "last", "--timesteps", "3",
            "--et-warmup-epochs", "1", "--train-subset", "40", "--test-subset", "20", "--batch-size", "20",
            "--out", str(run), "--no-progress"]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "vgg16" and summary["levels"][-1]["final"]
    config = json.loads((run / "config.json").read_text())
    assert config["search"]["preset"] == "vgg16-fmnist-imp-et" and config["semantic"]["train"]["lr"] == 0.3
    assert config["data"]["resize"] == 32
    capsys.readouterr()
    assert main(["search", "--resume", str(run), "--no-progress"]) == 0
    assert "already holds this finished search" in capsys.readouterr().out
