"""Who is in a room: the awareness states its clients announce (cursors, names, ...).

The server keeps the newest state of each awareness client id, so that a client joining
late sees everyone at once, and remembers which connection announced which ids, so that
when a connection drops its ids are removed for everyone (y-websocket's `controlledIds`).
The rule for which update wins is y-protocols' `applyAwarenessUpdate`: a higher clock, or
the same clock with a null state (the client left).

Bounded: a room keeps at most `max_entries` client ids and a connection announces at most
`IDS_PER_CONNECTION` (a browser tab has one); entries for further ids are ignored, neither
kept nor relayed. The size of one state is checked by the room (close 1009).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

from .protocol import AwarenessEntry

__all__ = ["AwarenessStates", "IDS_PER_CONNECTION"]

IDS_PER_CONNECTION = 8
_LEFT = "null"


class AwarenessStates:
    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: dict[int, AwarenessEntry] = {}
        self._owners: dict[int, Hashable] = {}
        self._owned: Counter[Hashable] = Counter()

    def apply(self, entries: tuple[AwarenessEntry, ...], owner: Hashable) -> list[AwarenessEntry]:
        """Record the entries of an awareness update that `owner` sent; those taken, to relay."""
        taken = []
        for entry in entries:
            current = self._entries.get(entry.client_id)
            if current is not None and not _wins(entry, current):
                continue
            if entry.state == _LEFT:
                if current is not None:
                    self._forget(entry.client_id)
                    taken.append(entry)
            elif current is not None or self._has_room_for(owner):
                if current is None:
                    self._owners[entry.client_id] = owner
                    self._owned[owner] += 1
                self._entries[entry.client_id] = entry
                taken.append(entry)
        return taken

    def current(self) -> list[AwarenessEntry]:
        """Every client that is present now."""
        return list(self._entries.values())

    def drop(self, owner: Hashable) -> list[AwarenessEntry]:
        """Forget what `owner` announced; the removals to tell the others."""
        ids = [client_id for client_id, by in self._owners.items() if by == owner]  # a Client: itself
        gone = [AwarenessEntry(client_id, self._entries[client_id].clock, _LEFT) for client_id in ids]
        for client_id in ids:
            self._forget(client_id)
        return gone

    def _has_room_for(self, owner: Hashable) -> bool:
        return len(self._entries) < self.max_entries and self._owned[owner] < IDS_PER_CONNECTION

    def _forget(self, client_id: int) -> None:
        del self._entries[client_id]
        owner = self._owners.pop(client_id)
        self._owned[owner] -= 1
        if not self._owned[owner]:
            del self._owned[owner]


def _wins(entry: AwarenessEntry, current: AwarenessEntry) -> bool:
    return entry.clock > current.clock or (entry.clock == current.clock and entry.state == _LEFT)
