"""Logging for workflow scripts: everything a job says goes to its rule's `log:` file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def log_to_file(path: str | Path, level: int = logging.INFO) -> logging.Logger:
    """Send the root logger, warnings and stderr of this process to `path`; returns the 'hnseg' logger."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = path.open("w", buffering=1)
    sys.stderr = stream
    logging.basicConfig(
        level=level,
        stream=stream,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    return logging.getLogger("hnseg")


def run_stage(log_path: str | Path, stage, *args, **kwargs):
    """Run `stage(*args, **kwargs)` with its log in `log_path`.

    A bad-input error (hnseg.errors.InputError) ends the job with its message alone, as the last line of the log
    and on the terminal, without a traceback: it names the patient, the file and the fix. Anything else is a bug
    and keeps its traceback.
    """
    from hnseg.errors import InputError

    terminal = sys.stderr
    log = log_to_file(log_path)
    try:
        return stage(*args, **kwargs)
    except InputError as exc:
        log.error("%s", exc)
        print(f"ERROR: {exc}", file=terminal)
        raise SystemExit(1) from None
