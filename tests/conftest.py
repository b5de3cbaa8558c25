"""Shared fixtures: paths to ../shared fixtures, and skipping of GPU-only tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


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
    """``../shared/fixtures``; tests using it skip when the folder is absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


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
