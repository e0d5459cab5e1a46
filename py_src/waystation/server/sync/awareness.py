"""Who is in a room: the awareness states its clients announce (cursors, names, ...).

The server keeps the newest state of each awareness client id, so that a client joining
late sees everyone at once, and remembers which connection announced which ids, so that
when a connection drops its ids are removed for everyone (y-websocket's `controlledIds`).
The rule for which update wins is y-protocols' `applyAwarenessUpdate`: a higher clock, or
the same clock with a null state (the client left).
"""

from __future__ import annotations

from collections.abc import Hashable

from .protocol import AwarenessEntry

__all__ = ["AwarenessStates"]

_LEFT = "null"


class AwarenessStates:
    def __init__(self) -> None:
        self._entries: dict[int, AwarenessEntry] = {}
        self._owners: dict[int, Hashable] = {}

    def apply(self, entries: tuple[AwarenessEntry, ...], owner: Hashable) -> None:
        """Record the entries of an awareness update that `owner` sent."""
        for entry in entries:
            current = self._entries.get(entry.client_id)
            if current is not None and not _wins(entry, current):
                continue
            if entry.state == _LEFT:
                self._entries.pop(entry.client_id, None)
                self._owners.pop(entry.client_id, None)
            else:
                self._entries[entry.client_id] = entry
                self._owners[entry.client_id] = owner

    def current(self) -> list[AwarenessEntry]:
        """Every client that is present now."""
        return list(self._entries.values())

    def drop(self, owner: Hashable) -> list[AwarenessEntry]:
        """Forget what `owner` announced; the removals to tell the others."""
        ids = [client_id for client_id, by in self._owners.items() if by is owner]
        for client_id in ids:
            del self._owners[client_id]
        return [AwarenessEntry(client_id, self._entries.pop(client_id).clock, _LEFT) for client_id in ids]


def _wins(entry: AwarenessEntry, current: AwarenessEntry) -> bool:
    return entry.clock > current.clock or (entry.clock == current.clock and entry.state == _LEFT)
