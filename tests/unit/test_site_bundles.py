"""`waystation serve` publishes the site's bundles on "stable" when the registry has none of them."""

import json
import shutil

from waystation.server.registry import Registry, Release
from waystation.server.site_bundles import publish_site_bundles

DIGITS = Release("digits", "stable", "1.0.0", 100)


def digits(releases: list[Release]) -> list[Release]:
    return [r for r in releases if r.bundle == "digits"]  # the site holds other bundles too


def test_serve_published_the_site_bundles_on_start(server):
    assert Registry(server.data).releases("digits", "stable") == [DIGITS]


def test_a_bundle_with_a_release_is_left_alone(site_dir, tmp_path):
    registry = Registry(tmp_path / "data")
    assert digits(publish_site_bundles(registry, site_dir)) == [DIGITS]
    assert publish_site_bundles(registry, site_dir) == []
    assert digits(publish_site_bundles(registry, site_dir, channel="beta")) == [Release("digits", "beta", "1.0.0", 100)]


def test_a_version_published_with_other_bytes_is_skipped_with_a_warning(site_dir, tmp_path):
    registry = Registry(tmp_path / "data")
    other = shutil.copytree(site_dir / "bundles" / "digits" / "1.0.0", tmp_path / "other" / "digits" / "1.0.0")
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps(manifest, indent=1))  # same values, other bytes
    registry.add_version(other)
    warnings: list[str] = []
    assert digits(publish_site_bundles(registry, site_dir, warn=warnings.append)) == []
    assert warnings == ["not publishing the site's digits 1.0.0: digits 1.0.0 is already published with another "
                        "manifest (same content, signed or laid out otherwise): published versions never change, "
                        "bump the version"]
