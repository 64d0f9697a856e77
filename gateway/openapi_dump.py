"""Write (or check) the committed OpenAPI document: ``python -m gateway.openapi_dump [--check] [PATH]``.

The document comes from ``create_app(...).openapi()``; no server is started. ``--check`` exits 1
when the file on disk differs from what the app generates now."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gateway.app import create_app
from gateway.settings import Settings

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"
REGENERATE = "python -m gateway.openapi_dump"


def render() -> str:
    app = create_app(Settings(bindings_env={}))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    rest = [a for a in args if a != "--check"]
    path = Path(rest[0]) if rest else DEFAULT_PATH
    text = render()
    if check:
        current = path.read_text() if path.exists() else ""
        if current != text:
            print(f"{path} is stale; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
