"""What the device agent's modules share (agent.py, agent_trtexec.py): the one-line error and the numpy import
that names its fix. Shipped with them in the agent's zip; Python 3.8+, standard library only."""

import sys


class DeviceError(Exception):
    """Reported to the host as one line; exit code 3."""


def _import_numpy():
    try:
        import numpy
    except ImportError:
        raise DeviceError("numpy is not installed for %s on the device (pip install numpy)" % sys.executable)
    return numpy
