"""Command-line helpers shared by the example scripts."""

import argparse
import math


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
