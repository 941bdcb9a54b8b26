"""The device agent's TensorRT runtime (agent.py drives it for a profile with runtime = "tensorrt"): builds the
engine with the device's own trtexec from a build job the host wrote, then runs and times it. A module of its own so
that agent.py stays one reader's length; shipped with it in the agent's zip. Python 3.8+, standard library only.
"""

import json
import os

try:
    from .agent_base import DeviceError, _import_numpy  # imported on the host (tests)
except ImportError:
    from agent_base import DeviceError, _import_numpy  # shipped: beside agent.py in the agent's zip


_TRT_DTYPES = {"float32": "<f4", "float16": "<f2", "int32": "<i4", "int64": "<i8", "int8": "i1", "bool": "?"}


class TrtexecModel(object):
    """TensorRT on a device that builds its own engines (Jetson): the MODEL argument is a build job (JSON written by
    the host from the export's build plan) naming the TensorRT-ready ONNX, trtexec's build flags and the I/O.

    trtexec ships with TensorRT (JetPack: /usr/src/tensorrt/bin/trtexec); no Python bindings or CUDA Python package
    are needed. The engine is built once per (ONNX, flags) and cached beside the ONNX. Inference writes each input as
    a raw file (--loadInputs) and reads trtexec's --exportOutput JSON; timing reads its --exportTimes trace, which
    times the GPU work (h2d + compute + d2h) of each enqueue, the latency trtexec itself reports.
    """

    def __init__(self, path, delegate, threads, workdir=None):
        import subprocess

        self._subprocess, self._os = subprocess, os
        with open(path) as fh:
            self.job = json.load(fh)
        self.trtexec = self.job.get("trtexec") or "trtexec"
        base = os.path.dirname(os.path.abspath(path))
        self.engine = os.path.join(base, self.job["engine"])
        self.workdir = workdir  # where the scratch folder goes: run() gives the job's own folder (None: system temp)
        self.tmp = None  # the scratch folder (raw inputs, trtexec's JSON), made on first use, removed by close()
        if not os.path.exists(self.engine):
            onnx = os.path.join(base, self.job["onnx"])
            part = self.engine + ".part"
            self._trtexec(["--onnx=" + onnx, "--saveEngine=" + part] + list(self.job.get("build_args", [])),
                          "building the engine")
            if not os.path.exists(part):
                raise DeviceError("trtexec reported success but wrote no engine")
            os.replace(part, self.engine)
        self.version = "TensorRT " + self._read_version()

    def _scratch(self, name):
        if self.tmp is None:
            import tempfile

            self.tmp = tempfile.mkdtemp(prefix="edgeseq-trt-", dir=self.workdir)
        return os.path.join(self.tmp, name)

    def close(self):
        if self.tmp is not None:
            import shutil

            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def _trtexec(self, args, what):
        try:
            done = self._subprocess.run([self.trtexec] + args, stdout=self._subprocess.PIPE,
                                        stderr=self._subprocess.STDOUT, universal_newlines=True)
        except OSError:
            raise DeviceError("trtexec was not found at %r on the device (JetPack: /usr/src/tensorrt/bin/trtexec; "
                              "set [transport] trtexec in the profile)" % self.trtexec)
        if done.returncode != 0:
            lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
            errors = [ln for ln in lines if "[E]" in ln or "error" in ln.lower()]
            raise DeviceError("trtexec failed %s: %s" % (what, ((errors or lines or ["exit %d" % done.returncode])[-1]
                                                                 .strip()[:300])))
        return done.stdout

    def _read_version(self):
        stamp = self.engine + ".version"
        if not self._os.path.exists(stamp):
            out = self._trtexec(["--loadEngine=" + self.engine, "--iterations=1", "--warmUp=0", "--duration=0",
                                 "--shapes=" + self._shapes({i["name"]: i["opt"] for i in self.job["inputs"]})],
                                "loading the engine")
            found = [ln.split("TensorRT version:")[1].strip() for ln in out.splitlines() if "TensorRT version:" in ln]
            with open(stamp, "w") as fh:
                fh.write(found[0] if found else "?")
        with open(stamp) as fh:
            return fh.read().strip()

    @staticmethod
    def _name(name):
        return "'%s'" % name if (":" in name or "," in name) else name

    def _shapes(self, dims):
        return ",".join("%s:%s" % (self._name(n), "x".join(str(int(d)) for d in shape)) for n, shape in dims.items())

    def describe(self):
        return {
            "inputs": [{"name": i["name"], "shape": i["shape"], "dtype": i["dtype"]} for i in self.job["inputs"]],
            "outputs": [o["name"] for o in self.job["outputs"]],
            "metadata": self.job.get("metadata", {}),
            "provider": "TensorrtExecutionProvider",
            "runtime_version": self.version,
        }

    def _args(self, feed, tag):
        numpy = _import_numpy()
        loads = []
        for spec in self.job["inputs"]:
            path = self._scratch("%s-%d.bin" % (tag, len(loads)))
            numpy.ascontiguousarray(feed[spec["name"]], dtype=_TRT_DTYPES.get(spec["dtype"], "<f4")).tofile(path)
            loads.append("%s:%s" % (self._name(spec["name"]), path))
        return ["--loadEngine=" + self.engine, "--shapes=" + self._shapes({n: v.shape for n, v in feed.items()}),
                "--loadInputs=" + ",".join(loads)]

    def infer(self, feed):
        numpy = _import_numpy()
        out_json = self._scratch("outputs.json")
        self._trtexec(self._args(feed, "in") + ["--iterations=1", "--warmUp=0", "--duration=0",
                                                 "--exportOutput=" + out_json], "running inference")
        with open(out_json) as fh:
            exported = {o["name"]: o for o in json.load(fh)}
        result = {}
        for spec in self.job["outputs"]:
            o = exported.get(spec["name"])
            if o is None:
                raise DeviceError("trtexec exported no output named %r" % spec["name"])
            dims = [int(d) for d in str(o["dimensions"]).split("x") if d != ""]
            result[spec["name"]] = numpy.asarray(o["values"], dtype=numpy.float32).reshape(dims)
        return result

    def timed(self, feed, warmup, iterations):
        """Latency samples in ms from trtexec's own trace: one process, warm-up enqueues dropped."""
        times = self._scratch("times.json")
        self._trtexec(self._args(feed, "time") + ["--iterations=%d" % (warmup + iterations), "--warmUp=0",
                                                   "--duration=0", "--avgRuns=1", "--exportTimes=" + times],
                      "timing")
        with open(times) as fh:
            trace = json.load(fh)
        return [float(t["latencyMs"]) for t in trace][warmup:][:iterations]
