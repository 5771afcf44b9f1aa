"""Command-line helpers shared by the example scripts.

A script builds its parser with `HelpFormatter` and `add_run_flags`, defines
`parse_args` before it imports Keras, and calls `start(__name__, parse_args)`
there: run as a script, it parses the command line first (so `--help` and usage
errors need no Keras and print at once), then imports Keras with TensorFlow's
start-up logs hidden unless `--verbose` is given.
"""

import argparse
import contextlib
import logging
import math
import os
import pathlib
import sys

# `keras_gumbel.ESTIMATORS`, written out so that the parsers need no Keras;
# tests/test_examples.py checks that they agree.
ESTIMATORS = ("gumbel_softmax", "straight_through", "reinmax", "gumbel_rao", "gst")
# The estimators whose forward value is an exact one-hot sample.
HARD_ESTIMATORS = ("straight_through", "reinmax", "gumbel_rao", "gst")
# Outputs go under here by default; .gitignore keeps it out of the repository.
RUNS = pathlib.Path("runs")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to every flag's help.

    A help text that states its default itself (one that depends on other
    flags, or "none") keeps its own words.
    """

    def _get_help_string(self, action):
        if "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_run_flags(parser, script, outputs):
    """`--out` (under runs/ by default) and `--verbose`, the same in every script."""
    parser.add_argument(
        "--out",
        default=str(RUNS / script),
        help=f"directory for {outputs}",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's start-up and info logs (hidden without it)",
    )


@contextlib.contextmanager
def stderr_silenced():
    """Sends everything written to file descriptor 2 to /dev/null meanwhile.

    TensorFlow's C++ libraries log while they load ("All log messages before
    absl::InitializeLog() ...", "Could not find cuda drivers ..."), before any
    setting of TensorFlow's is read, so only the file descriptor can hide them.
    An exception raised inside still reaches the terminal: it is printed after
    the descriptor is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras(verbose=False):
    """Imports Keras (and with it the backend), quietly unless `verbose`."""
    if verbose:
        import keras  # noqa: F401

        return
    # Before TensorFlow is first imported, which reads it once: hides its
    # info and warning logs, and the "failed call to cuInit" error of a machine
    # without a GPU.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stderr_silenced():
        import keras  # noqa: F401
    # Predicting with several models retraces, and SavedModel export logs
    # where it wrote its assets; TensorFlow says both, needlessly here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def start(module_name, parse_args):
    """Parses the command line, then imports Keras: call it before importing Keras.

    Does nothing when the script is imported (by the tests) rather than run.
    `parse_args(argv)` exits for `--help` and for usage errors, before the
    seconds that importing TensorFlow takes.
    """
    if module_name != "__main__":
        return
    args = parse_args(sys.argv[1:])
    import_keras(verbose=args.verbose)


def warn_if_short(updates, needed, why):
    """Warns on stderr when a run of `updates` optimizer updates is too short.

    `needed` is the method's threshold and `why` the reason for it, a sentence
    that the warning prints.
    """
    if updates < needed:
        print(
            f"Warning: this run has {updates} training updates, fewer than the "
            f"{needed} that the method needs: {why} Train for more epochs.",
            file=sys.stderr,
        )


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
