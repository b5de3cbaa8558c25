"""How the CLI shows errors: config fields as flags, user errors on one line."""

from __future__ import annotations

import pytest

from pathda.cli import main
from pathda.cli._app import fields_as_flags, invoked_command
from pathda.errors import ConfigError
from pathda.tiling import TileConfig


def test_library_messages_name_fields_not_flags():
    with pytest.raises(ConfigError, match=r"`min_tissue` must be in \(0, 1\]"):
        TileConfig(min_tissue=2)


def test_cli_shows_the_fields_of_a_message_as_its_flags(tmp_path, capsys):
    argv = ["tile", str(tmp_path / "a.svs"), "--out", str(tmp_path / "t"), "--min-tissue", "2"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--min-tissue must be in (0, 1], got 2.0" in err
    assert "`" not in err


def test_fields_as_flags_maps_list_fields_and_keeps_unknown_ones():
    train = invoked_command(["train", "store", "--out", "x"])
    assert train.name == "train"
    message = "set `target_domains`, lower `lr`; `momentum` only in YAML"
    assert fields_as_flags(message, train) == (
        "set --target-domain, lower --lr; `momentum` only in YAML"
    )
    assert invoked_command(["stain", "fit"]).name == "fit"
    assert invoked_command(["--version"]) is None
    assert fields_as_flags("`mpp`", None) == "`mpp`"


def test_renamed_yaml_key_is_read_with_a_warning():
    from pathda.config import build_config
    from pathda.segment import SegmentConfig

    with pytest.warns(FutureWarning, match="'mpp_override' is deprecated; call it 'slide_mpp'"):
        cfg = build_config(SegmentConfig, {"mpp_override": 0.5}, source="run.yaml")
    assert cfg.slide_mpp == 0.5
