"""An account's first sign-in moves the device's events into it (device/data/adopt.py), on CPython.

The browser calls the same functions over its OPFS images (web/device_data.js); here `flush`
is where a killed tab would stop: raising there leaves the files as a kill at that point would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from waystation.device import App
from waystation.device.data.adopt import adopt, needs_device
from waystation.device.hosts.data_native import NativeDataBackend

from data_bundle import build_data_bundle


class Killed(Exception):
    pass


def open_app(bundle: Path, folder: Path) -> App:
    return asyncio.run(App.open(bundle, data=NativeDataBackend(folder)))


def test_the_device_events_move_with_their_relay_positions_and_a_move_cut_short_is_finished(tmp_path: Path) -> None:
    bundle = build_data_bundle(tmp_path, rows=100)
    device = open_app(bundle, tmp_path / "device")
    asyncio.run(device.data.add_events("clicks", [{"item_id": f"a{i}"} for i in range(5)]))
    first = device.data.relay_batch(limit=2)
    asyncio.run(device.data.mark_relayed(first["upto"]))  # 2 relayed, 3 pending
    device.data.backend.close()
    account, own = NativeDataBackend(tmp_path / "user").path, NativeDataBackend(tmp_path / "device").path
    account.parent.mkdir()
    assert needs_device(str(account))  # no event table yet: the first sign-in

    def killed_at(step: str):
        def flush(which: str) -> None:
            if which == step:
                raise Killed(which)
        return flush

    # Killed after the copy was committed, before the device's rows were deleted: nothing lost...
    with pytest.raises(Killed):
        adopt(str(account), str(own), killed_at("device"))
    assert needs_device(str(account))  # ...and the next mount finishes the move
    device = open_app(bundle, tmp_path / "device")
    later = asyncio.run(device.data.add_events("clicks", {"item_id": "later"}))  # added meanwhile: stays
    device.data.backend.close()
    assert json.loads(adopt(str(account), str(own), killed_at("none"))) == {"moved": 0, "finished": True}
    assert not needs_device(str(account))

    device = open_app(bundle, tmp_path / "device")
    assert [r["id"] for r in device.data.event_query("clicks").rows()] == later
    user = open_app(bundle, tmp_path / "user")
    assert user.data.event_query("clicks").count() == 5
    pending = user.data.relay_batch()
    assert [e["item_id"] for e in pending["events"]] == ["a2", "a3", "a4"]  # relayed under the account from where the device was
    asyncio.run(user.data.add_events("clicks", {"item_id": "mine"}))  # seq continues past the moved rows
    assert [e["item_id"] for e in user.data.relay_batch()["events"]] == ["a2", "a3", "a4", "mine"]


def test_only_the_first_sign_in_moves_events(tmp_path: Path) -> None:
    bundle = build_data_bundle(tmp_path, rows=100)
    user = open_app(bundle, tmp_path / "user")
    asyncio.run(user.data.add_events("clicks", {"item_id": "own"}))
    user.data.backend.close()
    device = open_app(bundle, tmp_path / "device")
    asyncio.run(device.data.add_events("clicks", {"item_id": "d"}))
    device.data.backend.close()
    account = str(NativeDataBackend(tmp_path / "user").path)
    assert not needs_device(account)
    device = str(NativeDataBackend(tmp_path / "device").path)
    assert json.loads(adopt(account, device, lambda _w: None)) == {"moved": 0, "finished": False}
    assert open_app(bundle, tmp_path / "user").data.event_query("clicks").count() == 1
