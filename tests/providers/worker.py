"""A separate process that runs one provider operation (for cross-process tests).

    python -m tests.providers.worker CASE ROOT spinup [SLOW_START_S]
Prints the instance JSON (with instance_id) on stdout, or ``ERROR <message>`` and exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from providers.errors import ProviderError
from tests.providers.cases import CASES, TEST_DEADLINES


def main(argv: list[str]) -> int:
    name, root, action = argv[0], Path(argv[1]), argv[2]
    slow = float(argv[3]) if len(argv) > 3 else 0.0
    case = CASES[name]
    provider = case.make(root, TEST_DEADLINES, slow)
    if action != "spinup":
        print(f"ERROR unknown action {action}")
        return 2
    try:
        instance = provider.spinup(case.spec, progress=lambda m: print(m, file=sys.stderr, flush=True))
    except ProviderError as exc:
        print(f"ERROR {exc}")
        return 1
    print(json.dumps(instance.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
