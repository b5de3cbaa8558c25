"""Training configuration: YAML defaults, command-line overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathda.config import build_config, load_yaml
from pathda.errors import ConfigError
from pathda.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def test_paper_defaults():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.epochs) == (1e-3, 0.9, 1e-4, 100)
    assert (cfg.grl_schedule, cfg.grl_coefficient, cfg.gp_lambda) == ("constant", 1.0, 10.0)
    assert cfg.selection_epochs() == range(70, 100)  # last 30 % of 100 epochs


def test_yaml_sets_defaults_and_cli_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  method: lwass\n  epochs: 7\n  taps: [layer1, layer2]\n")
    cfg = build_config(TrainConfig, load_yaml(path, "train"), {"epochs": 3, "lr": None})
    assert cfg.method == "lwass"
    assert cfg.epochs == 3  # command line wins
    assert cfg.lr == 1e-3  # None means "not given"
    assert cfg.taps == ("layer1", "layer2")  # YAML list -> tuple


def test_repo_configs_are_valid():
    for name in ("train.yaml", "synthetic.yaml", "bach.yaml"):
        build_config(TrainConfig, load_yaml(REPO / "configs" / name, "train"), source=name)


def test_unknown_key_lists_valid_options(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown option 'epoch'.*epochs"):
        build_config(TrainConfig, {"epoch": 3})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"method": "mmd"}, "unknown adaptation method .mmd.; choose one of: dann, ldann, lwass"),
        ({"epochs": 0}, "epochs"),
        ({"lr": "fast"}, "expected float"),
        ({"select_last_fraction": 0}, "select_last_fraction"),
    ],
)
def test_bad_values_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        build_config(TrainConfig, values)


def test_missing_yaml_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "nope.yaml")
