"""The admin API of `waystation serve` on 127.0.0.1: its tokens, and controls that change what devices get."""

import hashlib
import itertools
import subprocess
import sys

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from waystation.device import Manifest
from waystation.server.admin_api import rollout_shares
from waystation.server.admin_auth import ADMIN_FILE, AdminTokens
from waystation.server.registry import Registry, bucket
from waystation.server.telemetry_store import LogStore, TelemetryStore

from bundle_factory import make_bundle
from server_process import ROOT, Server
from telemetry_reports import REFERENCE, report, report_id, telemetry_bundle

KEY = Ed25519PrivateKey.generate()
_names = (f"admin-demo-{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def server(site, tmp_path_factory):
    """A server of its own over the stand-in site: its data folder starts with no admin token."""
    srv = Server(site, tmp_path_factory.mktemp("admin-data")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def token(server):
    return AdminTokens(server.data).make()


@pytest.fixture
def bundle(server, tmp_path):
    """A fresh bundle with 1.0.0 on stable for every device and 1.0.1 published but released to no one."""
    name = next(_names)
    registry = Registry(server.data)
    registry.publish(make_bundle(tmp_path, KEY, name, "1.0.0"), "stable", 100)
    registry.add_version(make_bundle(tmp_path, KEY, name, "1.0.1", "1.0.0"))
    return name


def admin(server, method, path, token, **kwargs):
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.request(method, f"{server.url}/api/admin{path}", headers=headers, timeout=10, **kwargs)


def served_version(server, name, device):
    """The version the channel API gives `device` (what it would install), or None for a 404."""
    response = httpx.get(f"{server.url}/api/bundles/{name}/channels/stable", params={"device": device})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return Manifest.from_json(response.content).version


def devices(name, version, inside):
    """Device ids whose rollout bucket for `version` is inside (or outside) the first half."""
    return [d for d in (f"dev{i}" for i in range(400)) if (bucket(d, name, version) < 50) == inside][:5]


def test_before_any_token_is_made_every_request_is_401(site, tmp_path):
    srv = Server(site, tmp_path / "data").start()
    try:
        for token in (None, "guess"):
            response = admin(srv, "GET", "/bundles", token)
            assert response.status_code == 401
            assert "waystation admin token" in response.json()["error"]
    finally:
        srv.stop()


def test_without_a_token_401_a_wrong_one_403_the_right_one_works(server, token):
    missing = admin(server, "GET", "/bundles", None)
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["error"]
    assert admin(server, "GET", "/bundles", "x" + token[1:]).status_code == 403
    assert httpx.get(f"{server.url}/api/admin/bundles", headers={"authorization": f"Basic {token}"}).status_code == 401
    right = admin(server, "GET", "/bundles", token)
    assert right.status_code == 200
    assert right.headers["cache-control"] == "no-store"
    assert isinstance(right.json()["bundles"], list)


def test_the_controls_need_the_token_too(server, token, bundle):
    response = admin(server, "POST", f"/bundles/{bundle}/channels/stable/rollout", None,
                     json={"version": "1.0.1", "percent": 100})
    assert response.status_code == 401
    response = admin(server, "POST", f"/bundles/{bundle}/versions/1.0.0/revoke", "wrong", json={})
    assert response.status_code == 403
    assert served_version(server, bundle, "dev1") == "1.0.0"


def test_the_cli_prints_a_token_and_stores_only_its_hash(tmp_path, storage_engine):
    data = tmp_path / "data"
    run = [sys.executable, "-m", "waystation", "admin", "token", "--data", str(data)]
    made = [subprocess.run(run, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip() for _ in range(2)]
    assert made[0] != made[1] and all(len(t) >= 43 for t in made)
    tokens = AdminTokens(data)
    with tokens.db.transaction() as db:
        rows = db.execute("SELECT * FROM admin_tokens").fetchall()
    assert sorted(r[0] for r in rows) == sorted(hashlib.sha256(t.encode()).hexdigest() for t in made)
    if storage_engine == "sqlite":
        raw = (data / ADMIN_FILE).read_bytes()
        assert not any(t.encode() in raw for t in made)
    assert [tokens.check(t) for t in made] == ["ok", "ok"]
    assert tokens.check(made[0][:-1]) == "wrong"
    subprocess.run([*run, "--revoke-all"], cwd=ROOT, capture_output=True, check=True)
    assert tokens.check(made[0]) == "none"


def test_the_bundle_list_shows_versions_channels_and_shares(server, token, bundle):
    listed = {b["name"]: b for b in admin(server, "GET", "/bundles", token).json()["bundles"]}
    overview = listed[bundle]
    assert [v["version"] for v in overview["versions"]] == ["1.0.1", "1.0.0"]
    (stable,) = overview["channels"]
    assert stable["channel"] == "stable" and stable["logging"] is None
    assert stable["shares"] == [{"version": "1.0.0", "percent": 100, "share": 100.0}]
    assert [r["version"] for r in stable["releases"]] == ["1.0.0"]


def test_rollout_share_decides_which_devices_get_the_new_version(server, token, bundle):
    inside, outside = devices(bundle, "1.0.1", True), devices(bundle, "1.0.1", False)
    response = admin(server, "POST", f"/bundles/{bundle}/channels/stable/rollout", token,
                     json={"version": "1.0.1", "percent": 50})
    assert response.status_code == 200, response.text
    assert response.json()["channels"][0]["shares"] == [
        {"version": "1.0.1", "percent": 50, "share": 50.0}, {"version": "1.0.0", "percent": 100, "share": 50.0}]
    assert {served_version(server, bundle, d) for d in inside} == {"1.0.1"}
    assert {served_version(server, bundle, d) for d in outside} == {"1.0.0"}

    assert admin(server, "POST", f"/bundles/{bundle}/channels/stable/rollout", token,
                 json={"version": "1.0.1", "percent": 100}).status_code == 200
    assert {served_version(server, bundle, d) for d in inside + outside} == {"1.0.1"}


def test_rollback_returns_devices_to_the_release_before(server, token, bundle):
    admin(server, "POST", f"/bundles/{bundle}/channels/stable/rollout", token, json={"version": "1.0.1", "percent": 100})
    assert served_version(server, bundle, "dev7") == "1.0.1"
    response = admin(server, "POST", f"/bundles/{bundle}/channels/stable/rollback", token)
    assert response.status_code == 200, response.text
    assert served_version(server, bundle, "dev7") == "1.0.0"
    releases = response.json()["channels"][0]["releases"]
    assert releases[0]["version"] == "1.0.1" and releases[0]["rolled_back_at"]
    again = admin(server, "POST", f"/bundles/{bundle}/channels/stable/rollback", token)
    assert again.status_code == 409 and "nothing to roll back to" in again.json()["error"]


def test_revoke_makes_devices_skip_the_version(server, token, bundle):
    admin(server, "POST", f"/bundles/{bundle}/channels/stable/rollout", token, json={"version": "1.0.1", "percent": 100})
    assert served_version(server, bundle, "dev3") == "1.0.1"
    response = admin(server, "POST", f"/bundles/{bundle}/versions/1.0.1/revoke", token, json={"reason": "wrong labels"})
    assert response.status_code == 200, response.text
    assert served_version(server, bundle, "dev3") == "1.0.0"
    revoked = next(v for v in response.json()["versions"] if v["version"] == "1.0.1")
    assert revoked["revoked_at"] and revoked["revoke_reason"] == "wrong labels"
    assert response.json()["channels"][0]["shares"] == [{"version": "1.0.0", "percent": 100, "share": 100.0}]
    refused = admin(server, "POST", f"/bundles/{bundle}/channels/stable/rollout", token,
                    json={"version": "1.0.1", "percent": 100})
    assert refused.status_code == 409 and "revoked" in refused.json()["error"]
    assert served_version(server, bundle, "dev3") == "1.0.0"


def test_logging_control_sets_the_channels_remote_logging(server, token, bundle):
    response = admin(server, "POST", f"/bundles/{bundle}/channels/stable/logging", token, json={"share": 10, "level": "info"})
    assert response.status_code == 200, response.text
    assert response.json()["channels"][0]["logging"] == {"share": 10, "level": "info"}
    off = admin(server, "POST", f"/bundles/{bundle}/channels/stable/logging", token, json={"share": 0, "level": "info"})
    assert off.json()["channels"][0]["logging"] is None


def test_one_bundle_comes_with_its_telemetry_and_logs(server, token, tmp_path):
    name = next(_names)
    Registry(server.data).publish(telemetry_bundle(tmp_path, KEY, name, "2.0.0"), "stable", 100)
    store = TelemetryStore(server.data)
    samples = [float(ms) for ms in range(1, 101)]
    for device in ("a" * 32, "b" * 32):
        store.ingest(report(name, "2.0.0", device=device, functions={"classify": (samples, {"model-error": 5})},
                            signals={"top_score": [c * 2 for c in REFERENCE]}))
    LogStore(server.data).add({"schema": 1, "id": report_id(), "bundle": name, "version": "2.0.0",
                               "lines": [{"t": 1, "level": "warning", "logger": "w", "message": "slow input"}]})

    detail = admin(server, "GET", f"/bundles/{name}?hours=3", token).json()
    stats = detail["telemetry"]["summary"]["versions"]["2.0.0"]
    assert (stats["devices"], stats["calls"], stats["errors"]) == (2, 200, 10)
    assert stats["p50"] == pytest.approx(50, rel=0.03) and stats["p99"] == pytest.approx(99, rel=0.03)
    assert stats["signals"]["top_score"]["psi"] == 0  # the same proportions as the reference
    (hour,) = detail["telemetry"]["timeline"]
    assert (hour["version"], hour["devices"], hour["calls"]) == ("2.0.0", 2, 200)
    assert [line["message"] for line in detail["telemetry"]["logs"]] == ["slow input"]
    assert detail["telemetry"]["hours"] == 3 and detail["versions"][0]["version"] == "2.0.0"


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("GET", "/bundles/nope", None, 404, "no bundle 'nope'"),
    ("POST", "/bundles/nope/channels/stable/rollback", None, 404, "no bundle 'nope'"),
    ("POST", "/bundles/{b}/channels/stable/rollout", {"version": "9.9.9", "percent": 5}, 404, "9.9.9 is not published"),
    ("POST", "/bundles/{b}/channels/stable/rollout", {"version": "1.0.1", "percent": "5"}, 400, "'percent' must be"),
    ("POST", "/bundles/{b}/channels/stable/rollout", {"version": "1.0.1", "percent": 101}, 400, "not between 0 and 100"),
    ("POST", "/bundles/{b}/channels/Bad!/rollout", {"version": "1.0.1", "percent": 5}, 400, "channel name"),
    ("POST", "/bundles/{b}/channels/stable/logging", {"share": 5, "level": "loud"}, 400, "'level' must be one of"),
    ("POST", "/bundles/{b}/versions/9.9.9/revoke", {"reason": "x"}, 404, "9.9.9 is not published"),
    ("POST", "/bundles/{b}/versions/1.0.1/revoke", {"reason": 5}, 400, "'reason' must be a string"),
    ("GET", "/bundles/{b}?hours=0", None, 400, "?hours="),
])
def test_bad_requests_are_named(server, token, bundle, method, path, body, status, message):
    response = admin(server, method, path.format(b=bundle), token, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert served_version(server, bundle, "dev1") == "1.0.0"


def test_rollout_shares_follow_resolve():
    """Each release takes its percentage of what the newer ones left; withdrawn and revoked ones take nothing."""
    def release(version, percent, **state):
        return {"version": version, "percent": percent, "rolled_back_at": None, "halted_at": None, **state}

    releases = [release("1.0.4", 90, rolled_back_at="t"), release("1.0.3", 50), release("1.0.2", 20),
                release("1.0.1", 40), release("1.0.0", 50, halted_at="t")]
    assert rollout_shares(releases, revoked={"1.0.3"}) == [
        {"version": "1.0.2", "percent": 20, "share": 20.0},
        {"version": "1.0.1", "percent": 40, "share": 32.0},
        {"version": None, "percent": None, "share": 48.0},
    ]
    assert rollout_shares([], set()) == [{"version": None, "percent": None, "share": 100.0}]


def test_a_halted_release_is_listed_with_its_reason_and_serves_no_one(server, token, bundle):
    registry = Registry(server.data)
    registry.release(bundle, "1.0.1", "stable", 100, halt_if="errors>1%")
    registry.halt(bundle, "stable", "1.0.1", "halted: error rate 50.0% > 1% over 12 devices")
    overview = admin(server, "GET", f"/bundles/{bundle}", token).json()
    (halted,) = overview["halted"]
    assert (halted["version"], halted["channel"], halted["halt_if"]) == ("1.0.1", "stable", "errors>1%")
    assert halted["halt_reason"] == "halted: error rate 50.0% > 1% over 12 devices"
    assert overview["channels"][0]["shares"] == [{"version": "1.0.0", "percent": 100, "share": 100.0}]
    assert served_version(server, bundle, "dev2") == "1.0.0"
