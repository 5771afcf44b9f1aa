"""Command-line helpers shared by the example scripts."""

import argparse
import math
import pathlib


def print_table(rows, headers):
    """Prints `rows` under `headers` as an aligned plain-text table."""
    widths = [
        max(len(str(row[i])) for row in rows + [headers]) for i in range(len(headers))
    ]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def positive_int(text):
    """argparse type: an integer >= 1, or a usage error naming the value."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text):
    """argparse type: a finite number > 0, or a usage error naming the value."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def write_between_markers(path, text, start, end):
    """Puts `text` between the markers `start` and `end` in the file `path`.

    Text outside the markers is kept; without them (or without the file) the
    block is appended, so a new results page can be started from nothing.
    """
    path = pathlib.Path(path)
    block = f"{start}\n{text}\n{end}"
    current = path.read_text() if path.exists() else ""
    if start in current and end in current:
        before = current.split(start)[0]
        after = current.split(end, 1)[1]
        current = before + block + after
    else:
        current = (current + "\n\n" if current else "# Results\n\n") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(current)
