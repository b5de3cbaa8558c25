"""The real test files are in the repository, intact, and found without ``../shared``."""

from __future__ import annotations

import hashlib

from conftest import FIXTURES, fixture_manifest


def test_every_listed_fixture_is_present_and_intact():
    manifest = fixture_manifest()
    assert len(manifest) == 8
    for name, digest in manifest.items():
        path = FIXTURES / name
        assert path.is_file(), f"missing test fixture {path}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"altered: {path}"


def test_fixtures_live_in_the_repository(fixtures_dir):
    assert fixtures_dir == FIXTURES
    assert "shared" not in fixtures_dir.relative_to(FIXTURES.parents[1]).parts


def test_readme_names_a_source_and_licence_for_every_file():
    readme = (FIXTURES / "README.md").read_text()
    for name in fixture_manifest():
        assert f"`{name}`" in readme, name
