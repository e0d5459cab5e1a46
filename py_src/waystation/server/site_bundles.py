"""The bundles built into the site, published to the registry when it has no release of them.

`waystation serve` calls this on start, so a fresh `--data` folder serves the site's bundles
on channel "stable" at 100% (`make run` works with the channel API out of the box). A bundle
that already has a release there is left alone: newer versions go out with
`waystation bundle publish`, never by rebuilding the site.

    releases = publish_site_bundles(Registry(Path("data")), Path("dist"))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..device.errors import BundleError
from .registry import Registry, Release

__all__ = ["publish_site_bundles"]


def publish_site_bundles(
    registry: Registry, site: Path, channel: str = "stable", warn: Callable[[str], None] = print,
) -> list[Release]:
    """Release each bundle of `site` (per its boot.json) on `channel` unless the channel has one."""
    boot = json.loads((site / "boot.json").read_text())
    trusted = [key["publicKey"] for key in boot.get("trustedKeys", [])]
    released = []
    for name, version in sorted(boot.get("bundles", {}).items()):
        if registry.releases(name, channel):
            continue
        try:
            released.append(registry.publish(site / "bundles" / name / version, channel, trusted_keys=trusted))
        except BundleError as exc:  # e.g. that version was published before with other bytes
            warn(f"not publishing the site's {name} {version}: {exc}")
    return released
