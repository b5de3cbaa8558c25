"""Shared fixtures: the vendored real files in tests/data, and skipping of GPU-only tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data"


def fixture_manifest() -> dict[str, str]:
    """``{relative path: sha256}`` of every vendored fixture, from ``tests/data/SHA256SUMS``."""
    lines = (FIXTURES / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in lines if line)}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``tests/data``: real slides vendored in the repository (see its README).

    A missing file fails the test that asked for it: the suite never silently runs fewer tests.
    """
    missing = [name for name in fixture_manifest() if not (FIXTURES / name).is_file()]
    if missing:
        pytest.fail(f"test fixtures missing from {FIXTURES}: {', '.join(missing)}")
    return FIXTURES


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory) -> Path:
    """A tiny tile store: lab-a labelled (train + val slide), lab-b annotated + unannotated.

    32 px patches at 1.868 µm/px from 1024 px synthetic slides; shared by the training
    tests (built once per session).
    """
    from pathda.synth import synthesise_slides
    from pathda.tiling import TileConfig, tile_slides

    root = tmp_path_factory.mktemp("store")
    a = synthesise_slides(
        root / "slides", n=2, domain="lab-a", size=(1024, 1024), seed=0, quiet=True
    )
    b = synthesise_slides(
        root / "slides", n=2, domain="lab-b", size=(1024, 1024), seed=10, quiet=True
    )
    manifest = root / "manifest.csv"
    rows = [
        "slide,annotation,domain,split",
        f"{a[0].image},{a[0].annotation},lab-a,train",
        f"{a[1].image},{a[1].annotation},lab-a,val",
        f"{b[0].image},{b[0].annotation},lab-b,train",
        f"{b[1].image},,lab-b,train",
    ]
    manifest.write_text("\n".join(rows) + "\n")
    config = TileConfig(mpp=1.868, patch_size=32, stride=32, workers=1)
    return tile_slides([str(manifest)], root / "tiles.zarr", config, quiet=True)
