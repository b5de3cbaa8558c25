"""How the CLI shows errors: config fields as flags, user errors on one line, interrupts,
OSErrors, and the handler itself with the installed typer."""

from __future__ import annotations

import errno
from importlib.metadata import version

import pytest
import typer

from pathda.cli import app, main
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


@pytest.fixture
def command(monkeypatch):
    """Register a throwaway ``boom`` command whose body raises what the test sets."""
    raised: list[BaseException] = []

    def boom(out: str = typer.Option(None, "--out")) -> None:
        raise raised[0]

    monkeypatch.setattr(app, "registered_commands", list(app.registered_commands))
    app.command("boom")(boom)

    def run(exc: BaseException, *extra: str) -> tuple[int, str]:
        raised[:] = [exc]
        with pytest.raises(SystemExit) as info:
            main(["boom", *extra])
        return info.value.code

    return run


def test_installed_typer_is_the_pinned_range():
    major, minor, *_ = (int(p) for p in version("typer").split(".")[:2])
    assert (major, minor) == (0, 29)


@pytest.mark.parametrize("exc", [typer.Abort(), KeyboardInterrupt()], ids=["abort", "ctrl-c"])
def test_interrupt_exits_130_with_a_message(command, capsys, exc):
    assert command(exc) == 130
    assert capsys.readouterr().err == "pathda: interrupted\n"


def test_generic_exception_keeps_its_traceback_and_is_called_a_bug(command, capsys):
    # A bug keeps its own traceback (not an AttributeError from the handler), then one line.
    assert command(ZeroDivisionError("bug")) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError: bug" in err
    assert err.strip().splitlines()[-1].startswith("pathda: this is a bug, please report it")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/out/x.zarr"),
            "pathda: error: /ro/out/x.zarr: Permission denied; check that the folder exists, "
            "is writable and has free space\n",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device"),
            "pathda: error: No space left on device while writing under /full/seg; check that "
            "the folder exists, is writable and has free space\n",
        ),
    ],
    ids=["read-only", "enospc"],
)
def test_os_errors_are_one_line_naming_the_path_exit_2(command, capsys, exc, expected):
    assert command(exc, "--out", "/full/seg") == 2
    assert capsys.readouterr().err == expected


def test_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["tile", "--no-such-option"])
    assert info.value.code == 2
    assert "no-such-option" in capsys.readouterr().err


def test_real_unwritable_output_is_one_line_exit_2(tmp_path, capsys):
    # Runs as root in CI, where a chmod-ed folder stays writable: a file in the way of the
    # output folder gives the same kind of OSError from a real command.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(SystemExit) as info:
        main(["synth", str(blocker / "s"), "--n", "1", "--size", "256", "-q"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"pathda: error: {blocker}")


def test_tile_and_segment_share_one_tissue_settings_type():
    from pathda.config import build_config
    from pathda.segment import SegmentConfig
    from pathda.tissue import TissueParams

    yaml_layer = {"tissue": {"closing_um": 8.0, "threshold_bounds": [0.04, 0.1]}}
    flags = {"tissue": {"method": None, "mpp": 4.0}}  # unset flags are None
    tile = build_config(TileConfig, yaml_layer, flags)
    segment = build_config(SegmentConfig, yaml_layer, flags)
    assert (
        tile.tissue
        == segment.tissue
        == TissueParams(mpp=4.0, closing_um=8.0, threshold_bounds=(0.04, 0.1))
    )
    assert TileConfig().tissue == SegmentConfig().tissue  # same defaults
    assert TileConfig().grid_settings()["tissue"]["mpp"] == 8.0  # store attributes unchanged
    with pytest.warns(FutureWarning) as caught:
        old = build_config(TileConfig, {"tissue_mpp": 2.0, "closing_um": 4.0})
    assert [str(w.message) for w in caught] == [
        "config: option 'tissue_mpp' is deprecated; call it 'tissue.mpp'",
        "config: option 'closing_um' is deprecated; call it 'tissue.closing_um'",
    ]
    assert old.tissue == TissueParams(mpp=2.0, closing_um=4.0)
    with pytest.raises(ConfigError, match="tissue: unknown option 'colour'"):
        build_config(TileConfig, {"tissue": {"colour": 1}})


def test_nested_field_errors_show_as_flags(tmp_path, capsys):
    argv = ["tile", str(tmp_path / "a.svs"), "--out", str(tmp_path / "t"), "--tissue-mpp", "0"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "--tissue-mpp must be > 0 µm/px" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["tile", "train", "segment", "score"])
def test_help_shows_the_config_defaults(command, capsys, monkeypatch):
    from pathda.cli._app import _CONFIG_FLAGS

    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "{default}" not in text
    flags = _CONFIG_FLAGS[command]
    config = flags.config_class()()
    if command == "tile":
        assert f"(default {config.patch_size})" in text
        assert f"(default {config.tissue.method})" in text
    if command == "train":
        assert f"(default {config.batch_size})" in text
    if command == "segment":
        assert f"(default {config.window})" in text
    if command == "score":
        assert f"(default {config.downsample:g})" in text


def test_only_given_flags_reach_the_config(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("tile:\n  patch_size: 16\n  tissue: {mpp: 4.0}\n  min_tissue: 2\n")
    argv = ["tile", str(tmp_path / "a.svs"), "--out", str(tmp_path / "t"), "--config", str(config)]
    with pytest.raises(SystemExit) as exit_info:  # the YAML value is not masked by a flag default
        main([*argv, "--tissue-method", "otsu-od"])
    assert exit_info.value.code == 2
    assert "must be in (0, 1], got 2.0" in capsys.readouterr().err


def test_a_bug_shows_its_traceback_and_asks_for_a_report(tmp_path, capsys, monkeypatch):
    import pathda.report

    def broken(*args, **kwargs):
        raise ValueError("features of rank 3, expected 4")  # an invariant, not a user error

    monkeypatch.setattr(pathda.report, "build_report", broken)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "ValueError: features of rank 3, expected 4" in err
    assert err.strip().splitlines()[-1].startswith("pathda: this is a bug, please report it")


def test_train_and_tile_flags_reach_their_config_fields(tmp_path, monkeypatch):
    import pathda.tiling
    import pathda.train

    seen = {}
    monkeypatch.setattr(pathda.train, "train", lambda cfg, out, **kw: seen.setdefault("t", cfg))
    argv = ["train", str(tmp_path / "s.zarr"), "--out", str(tmp_path / "o"), "-q"]
    flags = ["--workers", "1", "--tap", "layer1", "--target-domain", "b", "--no-augment"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *flags, "--method", "ldann", "--lr", "0.01"])
    assert exit_info.value.code == 0
    cfg = seen["t"]
    assert (cfg.num_workers, cfg.taps, cfg.target_domains) == (1, ("layer1",), ("b",))
    assert (cfg.augment, cfg.method, cfg.lr) == (False, "ldann", 0.01)
    assert cfg.store == tmp_path / "s.zarr"
    assert cfg.batch_size == pathda.train.TrainConfig().batch_size  # not given: the default

    def fake_tile(sources, out, cfg, quiet):
        seen["tile"] = cfg
        return out

    monkeypatch.setattr(pathda.tiling, "tile_slides", fake_tile)
    argv = ["tile", "a.svs", "--out", str(tmp_path / "t"), "--class-alias", "x=benign"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--tissue-mpp", "4", "--append", "-q"])
    assert exit_info.value.code == 0
    cfg = seen["tile"]
    assert (cfg.class_aliases, cfg.tissue.mpp, cfg.append) == (("x=benign",), 4.0, True)
    assert cfg.tissue.method == TileConfig().tissue.method


def test_warnings_show_fields_as_flags_too(capsys, monkeypatch):
    from pathda.cli import _app

    monkeypatch.setattr(_app, "_RUNNING", [invoked_command(["tile"])])
    _app.WarningPrinter()(UserWarning("a.svs: no patch passes `min_tissue`"), UserWarning, "f", 1)
    assert capsys.readouterr().err == "pathda: warning: a.svs: no patch passes --min-tissue\n"
