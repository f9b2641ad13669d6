"""Cells for CSV that people open in spreadsheets: a text cell that a spreadsheet would run as a
formula (=, +, -, @, tab, CR first) gets a leading '; numbers stay numbers. Used by the tenant API's
CSV and `msspctl billing export -o csv`."""

from __future__ import annotations

from typing import Any

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str:
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    if text.startswith(_FORMULA) and not _number(text):
        return "'" + text
    return text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
