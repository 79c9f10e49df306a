"""Before/after table from `bench/execution.py --json` files: the median of each figure over
each side's runs, side by side (docs/performance.md).

    .venv/bin/python bench/compare.py before-*.json -- after-*.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.execution import ROWS  # noqa: E402


def runs(paths: list[str]) -> list[dict]:
    return [run for path in paths for run in json.loads(Path(path).read_text())["runs"]]


def cell(values: list) -> str:
    numbers = [v for v in values if isinstance(v, (int, float))]
    if not numbers:
        return "-"
    med = statistics.median(numbers)
    spread = f" [{min(numbers):g}–{max(numbers):g}]" if len(numbers) > 1 else ""
    return f"{med:g}{spread}"


def main(argv: list[str]) -> int:
    if "--" not in argv:
        print(__doc__)
        return 2
    split = argv.index("--")
    before, after = runs(argv[:split]), runs(argv[split + 1 :])
    print(f"| figure | before (median of {len(before)} [range]) | after (median of {len(after)} [range]) |")
    print("|---|---|---|")
    for group, key, label in ROWS:
        values = [[(r.get(group, {}) if group else r).get(key) for r in side] for side in (before, after)]
        if all(v is None for side in values for v in side) or any(isinstance(v, str) for v in values[1]):
            continue
        print(f"| {label} | {cell(values[0])} | {cell(values[1])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
