"""Read a scope directory and its vendored parents into ``{repo-relative path: text}``.

This is the only module of ``governance`` that touches the disk, and it only reads markdown:
the scope's own ``*.md`` files, anything under a nested ``LEARNING/`` (so the check can flag
it), and every ``*.md`` under the vendored ``canon/`` tree.
"""

from __future__ import annotations

from pathlib import Path

MAX_FILE_BYTES = 1_048_576
MAX_FILES = 500


class SourceError(Exception):
    """The scope directory could not be read."""


def read_scope(scope_dir: Path | str, canon_dir: str = "canon") -> dict[str, str]:
    root = Path(scope_dir)
    if not root.is_dir():
        raise SourceError(f"scope directory {root} does not exist or is not a directory")
    paths = sorted(p for p in root.glob("*.md") if p.is_file())
    nested = root / "LEARNING"
    if nested.is_dir():
        paths += sorted(p for p in nested.rglob("*") if p.is_file())
    canon = root / canon_dir
    if canon.is_dir():
        paths += sorted(p for p in canon.rglob("*.md") if p.is_file())
    if len(paths) > MAX_FILES:
        raise SourceError(f"more than {MAX_FILES} governance files under {root}")
    out: dict[str, str] = {}
    for p in paths:
        rel = p.relative_to(root).as_posix()
        try:
            if p.stat().st_size > MAX_FILE_BYTES:
                raise SourceError(f"{rel} is larger than {MAX_FILE_BYTES} bytes")
            out[rel] = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read {rel}: {exc.__class__.__name__}") from None
    return out
