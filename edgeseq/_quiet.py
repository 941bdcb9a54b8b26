"""Keep native libraries' start-up chatter off the CLI's stderr.

Importing litert-torch prints absl / oneDNN banners and torchao load warnings, and the first LiteRT interpreter
prints "INFO: Created TensorFlow Lite XNNPACK delegate". C++ code writes to file descriptor 2 directly, where
contextlib.redirect_stderr cannot reach, so this swaps the descriptor itself for a temporary file while the call
runs. What was captured is thrown away when the call succeeds and written back to stderr when it raises (it may
explain the failure). EDGESEQ_DEBUG=1 leaves stderr alone.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import threading

_LOCK = threading.RLock()


def _enabled() -> bool:
    if os.environ.get("EDGESEQ_DEBUG"):
        return False
    try:
        os.fstat(2)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def native_stderr_quiet(*, replay: bool = True):
    """File descriptor 2 goes to a temporary file for the duration; written back to stderr if the body raises
    and `replay` (False where the exception already carries the library's message)."""
    if not _enabled():
        yield
        return
    with _LOCK, tempfile.TemporaryFile() as captured:
        for stream in (sys.stderr, sys.__stderr__):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            for stream in (sys.stderr, sys.__stderr__):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed and replay:
                captured.seek(0)
                text = captured.read()
                if text:
                    os.write(2, text)


def library_stderr_quiet():
    """sys.stderr swapped for a buffer that is thrown away: a converter's logging (onnxscript logs a handled
    failure as a WARNING with its traceback, through logging's last-resort handler) and warnings printed there stay
    off the user's terminal; the caller's own error says what failed. EDGESEQ_DEBUG=1 leaves stderr alone."""
    import io

    return contextlib.redirect_stderr(io.StringIO()) if _enabled() else contextlib.nullcontext()


@contextlib.contextmanager
def python_chatter_quiet(loggers: dict[str, int]):
    """Python-level chatter of a converter kept off the terminal: the named loggers set to the given levels (put
    back after), warnings ignored, sys.stdout / sys.stderr sent to buffers that are thrown away."""
    import io
    import logging
    import warnings

    saved = {name: logging.getLogger(name).level for name in loggers}
    for name, level in loggers.items():
        logging.getLogger(name).setLevel(level)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def quiet_import(name: str):
    """importlib.import_module under native_stderr_quiet, the first time only (later imports are a dict lookup)."""
    if sys.modules.get(name) is not None:
        return sys.modules[name]
    with native_stderr_quiet():
        return importlib.import_module(name)
