"""Ed25519 keys for signing bundle manifests, and the signing itself.

A key pair is two files: `NAME.key`, the private key as PKCS#8 PEM readable by its owner
only (0600), and `NAME.pub`, the raw 32-byte public key in base64 (what boot.json and
`App.open(trusted_keys=...)` take). The site build signs with a development key kept in
build/.cache/keys (made on first use, never committed) unless it is given one.

    private = load_private_key(generate_keys(Path("keys"))[0])
    signed = sign_manifest(manifest_dict, private)
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..device.errors import BundleError
from ..device.manifest import SIGNATURE_ALG, canonical_json
from ..device.signature import key_id
from .pypi_assets import cache_dir

__all__ = [
    "dev_key",
    "generate_keys",
    "load_private_key",
    "public_key_b64",
    "public_key_raw",
    "sign_manifest",
    "trusted_key_entry",
]

KEY_NAME = "waystation"


def generate_keys(out_dir: Path, name: str = KEY_NAME) -> tuple[Path, Path]:
    """Write a new key pair as `out_dir/NAME.key` (0600) and `out_dir/NAME.pub`; never overwrite."""
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists: keys are never overwritten")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # Created 0600, not chmod-ed after: the key is never readable by others, even for a moment.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_text(public_key_b64(key) + "\n")
    return private_path, public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as exc:
        raise BundleError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} holds a {type(key).__name__}, not an Ed25519 private key")
    return key


def dev_key() -> Ed25519PrivateKey:
    """The development signing key under build/.cache/keys, made on first use."""
    folder = cache_dir() / "keys"
    if not (folder / f"{KEY_NAME}.key").is_file():
        generate_keys(folder)
    return load_private_key(folder / f"{KEY_NAME}.key")


def public_key_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_b64(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(public_key_raw(key)).decode("ascii")


def trusted_key_entry(key: Ed25519PrivateKey) -> dict[str, str]:
    """How boot.json lists a trusted key: {"id", "alg", "publicKey": base64 of the raw key}."""
    return {"id": key_id(public_key_raw(key)), "alg": SIGNATURE_ALG, "publicKey": public_key_b64(key)}


def sign_manifest(data: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """`data` with a `signature` over the canonical JSON of everything else (replacing any old one)."""
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    value = key.sign(canonical_json(unsigned))
    signature = {"alg": SIGNATURE_ALG, "key": key_id(public_key_raw(key)), "value": base64.b64encode(value).decode("ascii")}
    return {**unsigned, "signature": signature}
