"""Table and JSON output shared by the CLI commands."""

from __future__ import annotations

import json
import sys


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Columns padded like Docker's tabwriter: at least three spaces between columns."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    for row in [headers] + rows:
        line = "   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
        print(line.rstrip())
