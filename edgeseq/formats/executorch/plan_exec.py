"""A .pte's plan run on numpy values: what ExecutorchRunner does here and the device agent does on a board.

Self-contained on purpose (numpy, and torch + executorch as the program's runtime needs them; Python 3.8+): the
device agent ships this file in its zip, so one interpreter of the plan serves both sides.

The plan (metadata `edgeseq.plan`, see split.py) lists the methods in order: a `method` step runs one delegated
method on named values, a `scan` step runs a recurrence method ceil(T / K) times, carrying the hidden state, over
the GRU input padded at its end (scan order: the padding follows every valid step, so it never reaches one).
"""

import contextlib
import json

import numpy as np

PLAN_KEY = "edgeseq.plan"
METADATA_METHOD = "edgeseq_metadata"  # a constant method returning the metadata JSON as a uint8 tensor


def read_metadata(program) -> dict:
    """The program's edgeseq metadata: its constant method's bytes, JSON. Raises KeyError when it has none."""
    if METADATA_METHOD not in set(program.method_names):
        raise KeyError(METADATA_METHOD)
    blob = program.load_method(METADATA_METHOD).execute([])[0]
    meta = json.loads(bytes(blob.numpy().astype(np.uint8)).decode())
    if not isinstance(meta, dict):
        raise TypeError("the edgeseq metadata is not a table")
    return {str(k): str(v) for k, v in meta.items()}


def set_threads(threads) -> None:
    """XNNPACK's thread pool is process-wide in ExecuTorch's Python bindings; size it for this program."""
    if not threads:
        return
    try:
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(int(threads))
    except (ImportError, AttributeError):  # an older runtime without it: its default pool
        pass


class PlanProgram:
    """A loaded program's plan: declared inputs and outputs, the methods each step runs, batch rows one by one
    (every method is planned for batch 1)."""

    def __init__(self, program, meta: dict, methods=None):
        """`methods`: {name: anything with execute(list of tensors) -> outputs} in place of the program's (the
        exporter runs the plan on eager modules to calibrate int8-static)."""
        self.meta = meta
        self.plan = json.loads(meta[PLAN_KEY])
        self.inputs = json.loads(meta["edgeseq.inputs"])  # [{"name", "shape" (ints, "batch", "time"), "dtype"}]
        self.outputs = json.loads(meta["edgeseq.outputs"])
        self.methods = methods if methods is not None else {
            name: program.load_method(name) for s in self.plan["steps"] for name in (s["method"], s.get("tail"))
            if name}
        self.max_time = int(meta["edgeseq.max_time"]) if meta.get("edgeseq.max_time") else None

    def describe(self) -> dict:
        """Inputs and outputs as the device agent reports them (a symbolic axis is None)."""
        def spec(d):
            return {"name": d["name"], "shape": [x if isinstance(x, int) else None for x in d["shape"]],
                    "dtype": d.get("dtype", "float32")}

        return {"inputs": [spec(d) for d in self.inputs], "outputs": [d["name"] for d in self.outputs]}

    def too_long(self, feed: dict):
        """(the input's T, max_time) for the first input longer than the program serves, else None."""
        for d in self.inputs:
            for k, dim in enumerate(d["shape"]):
                if dim == "time" and self.max_time is not None and feed[d["name"]].shape[k] > self.max_time:
                    return feed[d["name"]].shape[k], self.max_time
        return None

    def rows(self, feed: dict) -> list:
        """The feed cut into batch-1 rows, each a list of arrays in the plan's input order."""
        axes = [list(d["shape"]).index("batch") if "batch" in d["shape"] else None for d in self.inputs]
        count = 1
        for d, axis in zip(self.inputs, axes):
            if axis is not None:
                count = feed[d["name"]].shape[axis]
        return [[np.ascontiguousarray(feed[d["name"]] if ax is None else np.take(feed[d["name"]], [b], axis=ax))
                 for d, ax in zip(self.inputs, axes)] for b in range(count)]

    def join(self, results: list) -> dict:
        """The rows' outputs concatenated on each output's batch axis, by declared name."""
        outs = {}
        for k, d in enumerate(self.outputs):
            axis = list(d["shape"]).index("batch") if "batch" in d["shape"] else None
            parts = [r[k] for r in results]
            outs[d["name"]] = parts[0] if axis is None or len(parts) == 1 else np.concatenate(parts, axis=axis)
        return outs

    def infer(self, feed: dict) -> dict:
        with torch_serial():
            return self.join([self.run_row(row) for row in self.rows(feed)])

    def run_row(self, row: list) -> list:
        """The plan on one batch row. Values between methods are numpy arrays: torch's own ops on them (stack,
        flip) took milliseconds each here, its thread pool contending with XNNPACK's."""
        env = dict(zip(self.plan["inputs"], row))
        for step in self.plan["steps"]:
            method = self.methods[step["method"]]
            if step["kind"] == "method":
                outs = _call(method)([_tensor(env[n]) for n in step["inputs"]])
                env.update((n, o.numpy().copy()) for n, o in zip(step["outputs"], outs))
                continue
            env[step["output"]] = scan(method, step, env[step["gi"]],
                                       env[step["h0"]] if step.get("h0") else None,
                                       env[step["lengths"]] if step.get("lengths") else None,
                                       self.methods.get(step.get("tail")))
        return [env[n] for n in self.plan["outputs"]]


def scan(method, step: dict, gi, h0, lengths=None, tail=None):
    """One recurrence: the K-step method over the sequence in chunks, the hidden state carried between calls, and
    what is left (under K steps) in chunks of the `tail` method's steps when the plan has one (fewer wasted steps
    than one padded K-chunk). With `lengths` (a packed batch; one row here) over the row's own frames only, zeros
    after them."""
    d, hidden, seq = step["directions"], step["hidden"], step.get("layout") == "seq"
    full = gi.shape[1]
    if lengths is not None:
        gi = gi[:, :max(0, min(int(np.asarray(lengths).reshape(-1)[0]), full))]
    if seq:  # [1, T, D*3H], time order -> [T, D, 1, 3H], scan order (the backward direction flipped)
        gi = gi[0].reshape(gi.shape[1], d, 1, 3 * hidden)
    t = gi.shape[0]
    calls = chunk_sizes(t, step["steps"], step.get("tail_steps") if tail is not None else None)
    padded = sum(calls)
    frames = np.empty((padded,) + tuple(gi.shape[1:]), np.float32)
    frames[t:] = 0  # zeros after the last valid step (scan order)
    if seq and d == 2:
        frames[:t, 0] = gi[:, 0]
        frames[:t, 1] = gi[::-1, 1]
    else:
        frames[:t] = gi
    ys = np.empty((padded, d, 1, hidden), np.float32)
    h = _tensor(np.zeros((d, 1, hidden), np.float32) if h0 is None else np.asarray(h0, np.float32))
    whole, rest = _call(method), _call(tail) if tail is not None else None
    start = 0
    for k in calls:  # numpy between the calls: torch's own slicing and copying cost 2-3x as much per call here
        y, h_out = (whole if k == step["steps"] else rest)([_tensor(frames[start:start + k]), h])
        ys[start:start + k] = y.numpy()
        h = _tensor(h_out.numpy().copy())
        start += k
    y = ys[:t]  # [T, D, 1, H]
    if not seq:
        return y
    out = np.empty((1, full, d * hidden), np.float32)  # back in time order, straight into the model's layout
    out[:, t:] = 0
    out[0, :t, :hidden] = y[:, 0, 0]
    if d == 2:
        out[0, :t, hidden:] = y[::-1, 1, 0]
    return out


def chunk_sizes(t: int, k: int, tail=None) -> list:
    """The steps of each call covering t steps: whole K-chunks, then the rest in `tail`-step chunks (one more
    padded K-chunk without a tail method)."""
    sizes, rest = [k] * (t // k), t % k
    if rest:
        sizes += [tail] * -(-rest // tail) if tail else [k]
    return sizes


@contextlib.contextmanager
def torch_serial():
    """torch's intra-op pool off while the methods run: the bindings copy each output into a torch tensor, and
    above ~300 KB torch splits that copy over its OpenMP threads, which cost a constant 8 ms per copy on a loaded
    2-core host (measured; its pool contends with XNNPACK's). The methods' own threads are XNNPACK's."""
    import torch

    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def _call(method):
    """method(list of tensors) -> outputs, which may alias the method's own memory until its next call (callers
    copy them first): ExecuTorch's bindings otherwise clone every output of every call, a recurrence's ceil(T / K)
    calls included. Anything else with execute() (an older runtime, the exporter's eager methods) runs as it is."""
    raw = getattr(method, "_method", None)
    if raw is not None and hasattr(raw, "call"):
        return lambda inputs: raw.call(inputs, False)
    return method.execute


def _tensor(array):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))
