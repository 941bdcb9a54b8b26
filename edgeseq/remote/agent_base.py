"""What the device agent's modules share (agent.py, agent_trtexec.py): the one-line error, its first line, and the
numpy import that names its fix. Shipped with them in the agent's zip; Python 3.8+, standard library only."""

import sys


class DeviceError(Exception):
    """Reported to the host as one line; exit code 3."""


def _import_numpy():
    try:
        import numpy
    except ImportError:
        raise DeviceError("numpy is not installed for %s on the device (pip install numpy)" % sys.executable)
    return numpy


def _first_line(exc):
    if isinstance(exc, UnicodeDecodeError):  # onnxruntime's message quoted undecodable bytes from the file
        return "the file holds bytes that are not text where the model needs a name (corrupt or truncated?)"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]
