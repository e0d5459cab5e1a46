"""Every store's numbered schema migrations, for `waystation db migrate` and `db status`.

Each store applies its own migrations when it opens (so `waystation serve` needs no step
before it); an operator rolling out a release to many instances runs `waystation db migrate`
once first, so that no instance starts on a schema it does not know and none waits on another's
migration lock.

    applied = migrate(Storage.at("data", url))     # {"registry": 2, "sync": 1, ...}
"""

from __future__ import annotations

from collections.abc import Sequence

from .storage import Migration, Storage

__all__ = ["migrate", "status", "store_migrations"]


def store_migrations() -> dict[str, Sequence[Migration]]:
    """Store name (a SQLite file's stem) -> its migrations."""
    from . import admin_auth, events_store, features_store, registry, telemetry_store
    from .sync import schema as sync_schema

    return {
        "registry": registry.MIGRATIONS,
        "admin": admin_auth.MIGRATIONS,
        "sync": sync_schema.MIGRATIONS,
        "events": events_store.MIGRATIONS,
        "features": features_store.MIGRATIONS,
        "telemetry": telemetry_store.MIGRATIONS,
        "logs": telemetry_store.LOG_MIGRATIONS,
    }


def migrate(storage: Storage) -> dict[str, int]:
    """Apply every store's pending migrations; each store's schema version after it."""
    versions = {}
    for name, migrations in store_migrations().items():
        db = storage.database(name)
        versions[name] = db.migrate(name, migrations)
        db.close()
    return versions


def status(storage: Storage) -> dict[str, tuple[int, int]]:
    """Each store's (applied, newest known) schema version; applied < newest: `migrate` is due."""
    found = {}
    for name, migrations in store_migrations().items():
        newest = max((m.version for m in migrations), default=0)
        if storage.engine == "sqlite" and not (storage.data / f"{name}.sqlite3").exists():
            found[name] = (0, newest)  # not made yet: asking must not make it
            continue
        db = storage.database(name)
        found[name] = (db.version(name), newest)
        db.close()
    return found
