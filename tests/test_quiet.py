"""_quiet: native libraries' chatter on file descriptor 2 is dropped on success, kept when the call fails."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edgeseq._quiet import native_stderr_quiet, quiet_import


def _native_write(text: str) -> None:
    os.write(2, text.encode())  # what C++ (absl, TFLite) does: below sys.stderr, where redirect_stderr cannot reach


def test_dropped_when_the_call_succeeds(capfd, monkeypatch):
    monkeypatch.delenv("EDGESEQ_DEBUG", raising=False)
    with native_stderr_quiet():
        _native_write("I0000 port.cc:153] oneDNN custom operations are on\n")
    _native_write("after\n")
    assert capfd.readouterr().err == "after\n"


def test_replayed_when_the_call_raises(capfd, monkeypatch):
    monkeypatch.delenv("EDGESEQ_DEBUG", raising=False)
    with pytest.raises(RuntimeError), native_stderr_quiet():
        _native_write("ERROR: the reason the library gave\n")
        raise RuntimeError("failed")
    assert "the reason the library gave" in capfd.readouterr().err


def test_not_replayed_when_the_exception_carries_the_message(capfd, monkeypatch):
    monkeypatch.delenv("EDGESEQ_DEBUG", raising=False)
    with pytest.raises(ValueError), native_stderr_quiet(replay=False):
        _native_write("ERROR: not a valid flatbuffer\n")
        raise ValueError("not a valid flatbuffer")
    assert capfd.readouterr().err == ""


def test_debug_leaves_stderr_alone(capfd, monkeypatch):
    monkeypatch.setenv("EDGESEQ_DEBUG", "1")
    with native_stderr_quiet():
        _native_write("banner\n")
    assert capfd.readouterr().err == "banner\n"


def test_nested_and_restored(capfd, monkeypatch):
    monkeypatch.delenv("EDGESEQ_DEBUG", raising=False)
    with native_stderr_quiet():
        with native_stderr_quiet():
            _native_write("inner\n")
        _native_write("outer\n")
    _native_write("visible\n")
    assert capfd.readouterr().err == "visible\n"


def test_quiet_import_of_a_chatty_module(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("EDGESEQ_DEBUG", raising=False)
    (tmp_path / "chatty_native.py").write_text("import os\nos.write(2, b'WARNING: All log messages before absl\\n')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "chatty_native", raising=False)
    assert quiet_import("chatty_native").__name__ == "chatty_native"
    assert capfd.readouterr().err == ""


def test_a_closed_stderr_is_left_as_it_is():
    """No fd 2 at all (a daemon): the context manager does nothing rather than fail."""
    code = ("import os; os.close(2)\n"
            "from edgeseq._quiet import native_stderr_quiet\n"
            "with native_stderr_quiet():\n    pass\nprint('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "EDGESEQ_DEBUG"})
    assert proc.stdout.strip() == "ok", proc.stderr
