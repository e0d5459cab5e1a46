"""Checking a manifest's Ed25519 signature against trusted public keys, on CPython.

In the browser the page verifies a manifest with WebCrypto before Python sees the bundle,
so Pyodide never calls `verify_manifest`: `cryptography` is imported inside it, and this
module imports fine without it.

    verify_manifest(manifest, ["<base64 of a raw 32-byte public key>"])
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

from .errors import BundleError
from .manifest import Manifest, canonical_json

__all__ = ["TrustedKey", "key_id", "public_key_bytes", "verify_manifest"]

TrustedKey = str | bytes  # base64 of the raw public key (as in *.pub files and boot.json), or the raw bytes


def key_id(public_key: bytes) -> str:
    """A public key's id: the first 16 hex digits of the SHA-256 of its 32 raw bytes."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def public_key_bytes(key: TrustedKey) -> bytes:
    """The 32 raw bytes of a trusted key given as raw bytes or base64 text."""
    try:
        raw = key if isinstance(key, bytes) else base64.b64decode(key.strip(), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise BundleError(f"trusted key {key!r} is not a raw Ed25519 public key (32 bytes, base64)")
    return raw


def verify_manifest(manifest: Manifest, trusted_keys: Iterable[TrustedKey]) -> None:
    """Raise BundleError unless `manifest` is signed by one of `trusted_keys`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = {key_id(raw): raw for raw in map(public_key_bytes, trusted_keys)}
    what = f"bundle {manifest.name!r} {manifest.version}"
    signature = manifest.signature
    if signature is None:
        raise BundleError(f"{what} is not signed, and only signed bundles are trusted")
    if signature.key not in keys:
        raise BundleError(f"{what} is signed by key {signature.key}, which is not trusted (trusted: {', '.join(keys) or 'none'})")
    payload = manifest.payload or canonical_json({k: v for k, v in manifest.to_dict().items() if k != "signature"})
    try:
        Ed25519PublicKey.from_public_bytes(keys[signature.key]).verify(signature.value, payload)
    except InvalidSignature:
        raise BundleError(f"{what}: its signature does not verify with key {signature.key}: "
                          "the manifest was changed after it was signed") from None
