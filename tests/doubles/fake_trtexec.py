"""A test double of TensorRT's `trtexec` command line, for the TensorRT-over-ssh path on machines without TensorRT.

It takes the flags edgeseq's device agent passes (as trtexec documents them) and answers in trtexec's formats:
building (--onnx, --saveEngine, --minShapes/--optShapes/--maxShapes, precision flags) writes an "engine" that records
the ONNX and the profile; running (--loadEngine, --shapes, --loadInputs, --exportOutput, --exportTimes,
--iterations) runs the ONNX with onnxruntime on the raw input files and writes trtexec's output and timing JSON.
Shapes outside the built profile fail the way trtexec does (an [E] line, exit 1). It is not TensorRT: real engine
tests are the ones marked `tensorrt`.
"""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

VERSION = "10.99.0 (fake trtexec)"
_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
          "tensor(int32)": np.int32}


def _pairs(spec):
    """"a:1x2,'b:c':3x4" -> {"a": "1x2", "b:c": "3x4"} (names holding ':' or ',' come quoted)."""
    out, rest = {}, spec
    while rest:
        if rest.startswith("'"):
            end = rest.index("'", 1)
            name, rest = rest[1:end], rest[end + 2:]
        else:
            name, _, rest = rest.partition(":")
        value, _, rest = rest.partition(",")
        out[name] = value
    return out


def _dims(text):
    return [int(d) for d in text.split("x")]


def fail(message):
    print("[E] " + message)
    print("&&&& FAILED TensorRT.trtexec")
    sys.exit(1)


def main(argv):
    args = {}
    flags = []
    for a in argv:
        if a.startswith("--") and "=" in a:
            key, _, value = a[2:].partition("=")
            args[key] = value
        else:
            flags.append(a)
    print("&&&& RUNNING TensorRT.trtexec [TensorRT v109900] # trtexec " + " ".join(argv))
    print("[I] TensorRT version: " + VERSION)
    if "onnx" in args:
        session = ort.InferenceSession(args["onnx"], providers=["CPUExecutionProvider"])
        profile = {}
        for which in ("minShapes", "optShapes", "maxShapes"):
            for name, dims in _pairs(args.get(which, "")).items():
                if name not in [i.name for i in session.get_inputs()]:
                    fail("Cannot find input tensor with name \"%s\" in the network inputs!" % name)
                profile.setdefault(name, {})[which[:3]] = _dims(dims)
        with open(args["saveEngine"], "w") as fh:
            json.dump({"onnx": args["onnx"], "profile": profile, "flags": flags}, fh)
        print("[I] Engine built in 0.1 sec.")
        print("&&&& PASSED TensorRT.trtexec")
        return 0
    with open(args["loadEngine"]) as fh:
        engine = json.load(fh)
    session = ort.InferenceSession(engine["onnx"], providers=["CPUExecutionProvider"])
    shapes = {n: _dims(d) for n, d in _pairs(args.get("shapes", "")).items()}
    files = _pairs(args.get("loadInputs", ""))
    feed = {}
    for inp in session.get_inputs():
        shape = shapes.get(inp.name) or engine["profile"].get(inp.name, {}).get("opt")
        rng = engine["profile"].get(inp.name)
        if rng and not all(lo <= s <= hi for lo, s, hi in zip(rng["min"], shape, rng["max"])):
            fail("IExecutionContext::setInputShape: Error Code 3: API Usage Error (%s shape %s is outside the "
                 "optimization profile)" % (inp.name, "x".join(map(str, shape))))
        dtype = _TYPES.get(inp.type, np.float32)
        if inp.name in files:
            feed[inp.name] = np.fromfile(files[inp.name], dtype=dtype).reshape(shape)
        else:
            feed[inp.name] = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    names = [o.name for o in session.get_outputs()]
    trace, outputs = [], None
    clock = 0.0
    for _ in range(int(args.get("iterations", "10"))):
        t0 = time.perf_counter()
        outputs = session.run(names, feed)
        ms = (time.perf_counter() - t0) * 1e3
        trace.append({"startComputeMs": clock, "endComputeMs": clock + ms, "h2dMs": 0.0, "computeMs": ms,
                      "d2hMs": 0.0, "latencyMs": ms, "endToEndMs": ms})
        clock += ms
    if "exportOutput" in args:
        with open(args["exportOutput"], "w") as fh:
            json.dump([{"name": n, "dimensions": "x".join(map(str, v.shape)), "values": v.ravel().tolist()}
                       for n, v in zip(names, outputs)], fh)
    if "exportTimes" in args:
        with open(args["exportTimes"], "w") as fh:
            json.dump(trace, fh)
    print("[I] Latency: min = %.4f ms, max = %.4f ms" % (min(t["latencyMs"] for t in trace),
                                                          max(t["latencyMs"] for t in trace)))
    print("&&&& PASSED TensorRT.trtexec")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
