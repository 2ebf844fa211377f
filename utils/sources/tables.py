"""Reading CSV/TSV files from strangers: every problem is named with its file and row.

Common Voice's TSVs and people's own manifests share these rules. Rows are numbered as in a
spreadsheet (the header is row 1). A byte that is not UTF-8, a NUL, or a quote that opens a field
and never closes it (which would silently swallow the rows after it) stops the read with a
SourceError naming the file and the row, rather than a traceback or a quietly shorter corpus.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from ..errors import SourceError


def _bad_utf8_row(path: Path) -> tuple[int, str]:
    """(row, reason) of the first line of `path` that is not UTF-8."""
    with open(path, "rb") as f:
        for row, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return row, f"byte 0x{raw[err.start]:02x} at column {err.start + 1} is not UTF-8"
    return 0, "not UTF-8"


def read_rows(path: Path, delimiter: str, quoting: bool) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) of each line of a CSV/TSV file, the header (row 1) included.

    `quoting` False reads quote characters as ordinary text (Common Voice's TSVs: its sentences
    hold bare quotes); True follows standard CSV quoting, as spreadsheets and pandas write it.
    """
    try:
        f = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
    except OSError as err:
        raise SourceError(f"{path}: cannot read it ({err.strerror or err})") from None
    with f:
        reader = csv.reader(
            f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE
        )
        previous = 0
        try:
            for cells in reader:
                row = reader.line_num
                if row - previous > 1:
                    raise SourceError(
                        f"{path}, row {previous + 1}: a quoted field runs over {row - previous} "
                        "lines: a quote that is never closed? (it would swallow the rows after it)"
                    )
                previous = row
                yield row, cells
        except UnicodeDecodeError:
            row, why = _bad_utf8_row(path)
            raise SourceError(f"{path}, row {row}: {why} (save the file as UTF-8)") from None
        except csv.Error as err:
            raise SourceError(f"{path}, row {reader.line_num}: {err}") from None


def read_header(path: Path, delimiter: str, quoting: bool) -> list[str]:
    """The header row's column names, stripped (empty for an empty file)."""
    for _, cells in read_rows(path, delimiter, quoting):
        return [c.strip() for c in cells]
    return []
