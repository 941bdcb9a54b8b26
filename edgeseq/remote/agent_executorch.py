"""The device agent's ExecuTorch runtime (agent.py drives it for a profile with runtime = "executorch"): a .pte on
the board's executorch (XNNPACK), its plan of methods run by plan_exec.py, the same interpreter ExecutorchRunner uses
on the host. Shipped in the agent's zip beside plan_exec.py; Python 3.8+."""

import sys

try:
    from ..formats.executorch import plan_exec
    from .agent_base import DeviceError, _first_line  # imported on the host (tests)
except ImportError:
    import plan_exec
    from agent_base import DeviceError, _first_line  # shipped: beside this file in the agent's zip


class ExecutorchModel(object):
    """One .pte: loaded once, its metadata read from the program's own constant method, every plan step's method
    loaded; a batch runs row by row (every method is planned for batch 1)."""

    def __init__(self, path, delegate, threads, workdir=None):  # workdir: unused, no scratch files
        try:
            import executorch
            from executorch.runtime import Runtime
        except ImportError as exc:
            raise DeviceError("executorch is not installed for %s on the device (pip install executorch; its "
                              "runtime imports torch): %s" % (sys.executable, _first_line(exc)))
        if delegate not in ("cpu", "xnnpack"):
            raise DeviceError("the device agent runs ExecuTorch on the CPU (XNNPACK), not delegate %r" % delegate)
        self.version = "executorch " + getattr(executorch, "__version__", "?")
        self.provider = "xnnpack"
        plan_exec.set_threads(threads)
        try:
            with open(path, "rb") as fh:
                program = Runtime.get().load_program(fh.read())
        except Exception as exc:
            raise DeviceError("ExecuTorch on the device cannot load the model: %s" % _first_line(exc))
        try:
            meta = plan_exec.read_metadata(program)
        except KeyError:
            raise DeviceError("the .pte holds no edgeseq metadata (no %s method): export it with edgeseq"
                              % plan_exec.METADATA_METHOD)
        except Exception as exc:
            raise DeviceError("the .pte has unreadable edgeseq metadata: %s" % _first_line(exc))
        try:
            self.plan = plan_exec.PlanProgram(program, meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise DeviceError("the .pte has corrupted edgeseq metadata (%s)" % type(exc).__name__)
        except Exception as exc:
            raise DeviceError("ExecuTorch on the device cannot load the model's methods: %s" % _first_line(exc))
        self._program = program

    def describe(self):
        out = self.plan.describe()
        out.update(metadata=dict(self.plan.meta), provider=self.provider, runtime_version=self.version)
        return out

    def infer(self, feed):
        too_long = self.plan.too_long(feed)
        if too_long:
            raise ValueError("the .pte serves sequences up to T=%d; got T=%d" % (too_long[1], too_long[0]))
        return self.plan.infer(feed)
