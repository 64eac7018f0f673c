"""The tag that fences the graded response as data: keyed, so the policy cannot guess it.

The judge prompt puts the response between `<response-TAG>` and `</response-TAG>`. If the
policy could compute TAG it could close the fence itself and write text that reads as
instructions. TAG is therefore an HMAC of the response under a per-installation secret:

- stable for a given key and response, so rendered prompts (and so cache keys) repeat and the
  cache keeps working across runs and processes sharing the key;
- unguessable without the key, whatever the response contains.

The key comes from configuration, or from a file (created once, 0600, atomically, race-free
across processes) beside the SQLite cache or in the user cache dir. Replicas that share a cache
must share the key, else their prompts differ and they miss each other's entries (never a stale
hit).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import logging
import secrets
from functools import cache
from pathlib import Path

import platformdirs

from rubricgate.errors import UsageError

logger = logging.getLogger(__name__)
TAG_HEX_CHARS = 16
"""64 bits: the chance that a response contains its own tag by luck is negligible."""
_KEY_BYTES = 32


def fence_tag(response: str, key: bytes) -> str:
    """`TAG_HEX_CHARS` hex characters of HMAC-SHA256(key, response)."""
    return hmac.new(key, response.encode("utf-8", errors="surrogatepass"), hashlib.sha256).hexdigest()[:TAG_HEX_CHARS]


def process_key() -> bytes:
    """A random key for this process only (stable within it; prompts differ between processes)."""
    return _PROCESS_KEY


def installation_key() -> bytes:
    """This installation's key: `fence.key` in the user cache dir (beside the embedded model),
    created on first use; a per-process random key if that folder cannot be written."""
    return _installation_key(Path(platformdirs.user_cache_dir("rubricgate")) / "fence.key")


@cache
def _installation_key(path: Path) -> bytes:
    try:
        return load_or_create_key(path)
    except UsageError as exc:
        logger.warning("%s; using a per-process fence key (prompts, and so cache keys, differ between runs)", exc)
        return _PROCESS_KEY


def load_or_create_key(path: Path) -> bytes:
    """The key stored at `path`, creating it (32 random bytes, hex, mode 0600) if missing.

    Creation writes a temporary file and hard-links it into place, so concurrent processes
    agree on one key and no reader ever sees a half-written file.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(_KEY_BYTES) + "\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(temp, path)  # atomic; fails if another process won the race
            except FileExistsError:
                pass
        finally:
            temp.unlink(missing_ok=True)
        return _read_key(path)
    except OSError as exc:
        raise UsageError(f"cannot create the fence key {path}: {exc.strerror or exc}; "
                         "make its folder writable or configure a fence secret") from exc


def key_from_secret(secret: str) -> bytes:
    """Key bytes from a configured secret string (any length; hashed to 32 bytes)."""
    if not secret:
        raise UsageError("the fence secret is empty; unset it to use the key file")
    return hashlib.sha256(b"rubricgate-fence:" + secret.encode()).digest()


def _read_key(path: Path) -> bytes:
    text = path.read_text(encoding="ascii").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise UsageError(f"fence key file {path} is damaged (want hex, at least 16 bytes); delete it to make a new one")
    return key


_PROCESS_KEY = secrets.token_bytes(_KEY_BYTES)
