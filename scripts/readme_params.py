"""Regenerate the parameter tables in README.md from the notebooks' `parameters` cells.

    python scripts/readme_params.py          # rewrite README.md in place
    python scripts/readme_params.py --check  # exit 1 if README.md is out of date

Each table sits between `<!-- params: NOTEBOOK -->` and `<!-- /params -->`; the description of a
parameter is the comment at the end of its line in the parameters cell.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import papermill

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- params: (?P<nb>[\w.]+) -->\n)(?P<body>.*?)(<!-- /params -->)", re.S)


def params_table(notebook: Path) -> str:
    """A markdown table of a notebook's parameters: name, default, description."""
    rows = ["| parameter | default | what it does |", "| --- | --- | --- |"]
    for name, p in papermill.inspect_notebook(str(notebook)).items():
        default = str(p["default"]).replace("|", "\\|")
        rows.append(f"| `{name}` | `{default}` | {p['help'].replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def render(readme: str, root: Path = ROOT) -> str:
    """README text with every parameter table regenerated."""
    return BLOCK.sub(lambda m: m[1] + params_table(root / m["nb"]) + m[4], readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if README.md is out of date")
    args = parser.parse_args()
    path = ROOT / "README.md"
    current = path.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print("README.md parameter tables are out of date: run python scripts/readme_params.py")
            return 1
        return 0
    path.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
