"""edgeseq's device agent: copied to the device and run there with the device's own python.

Self-contained on purpose: it needs only numpy and the runtime (onnxruntime for .onnx; ai_edge_litert,
tflite_runtime or tensorflow for .tflite; TensorRT's trtexec for a TensorRT build job; coremltools on macOS for a
zipped .mlpackage; executorch, with the torch it imports, for a .pte), never edgeseq, and runs on Python 3.8+. Two verbs:

    python3 agent.py describe MODEL RUNTIME DELEGATE THREADS      -> one JSON line on stdout
    python3 agent.py run JOB.json                                 -> writes the job's result + outputs files

A job runs every case of a feeds .npz (keys "case<i>/<input name>") and/or times case 0, or streams case 0 chunk by
chunk with its state carried (the streaming gate), in one process, so a whole sweep or gate is one round trip.
Results: a JSON file (describe, per-case errors, timing samples in ms, stream call times, peak RSS) and an .npz of
outputs ("case<i>/<output name>"; a stream's "chunk<c>/<output name>"). A problem the host should report (numpy or
the runtime missing, a model the runtime rejects, a provider the build lacks) is one line on stderr starting with
ERROR_PREFIX and exit code 3.

Nothing here is imported by edgeseq on the host; the host ships this file, agent_base.py (what they share),
agent_trtexec.py (the TensorRT build-and-run job), agent_executorch.py and the formats' own device-side modules
(ExecuTorch's plan interpreter) as one zip that python runs (runner.agent_bytes), so the device still gets one file.
"""

import json
import os
import sys
import time

try:
    from .agent_base import DeviceError, _first_line, _import_numpy  # imported on the host (tests)
except ImportError:
    from agent_base import DeviceError, _first_line, _import_numpy  # shipped: beside this file in the agent's zip

ERROR_PREFIX = "edgeseq-device-error: "
PROTOCOL = 1
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}
_ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "xnnpack": ["XnnpackExecutionProvider", "CPUExecutionProvider"],
    "nnapi": ["NnapiExecutionProvider", "CPUExecutionProvider"],
}


def _ort_session(ort, path, options, providers):
    """No "EP Error ... Falling back" banner from onnxruntime on stdout, which carries this agent's JSON."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return ort.InferenceSession(path, sess_options=options, providers=providers)


# ---- onnxruntime ----------------------------------------------------------------------------------------------------


class OrtModel(object):
    def __init__(self, path, delegate, threads, workdir=None):  # workdir: where node_trace's profile file goes
        self.workdir = workdir or "."
        try:
            import onnxruntime as ort
        except ImportError:
            raise DeviceError("onnxruntime is not installed for %s on the device (pip install onnxruntime)"
                              % sys.executable)
        self.version = "onnxruntime " + ort.__version__
        wanted = _ORT_PROVIDERS.get(delegate)
        if wanted is None:
            raise DeviceError("onnxruntime has no delegate %r (choose %s)" % (delegate, ", ".join(_ORT_PROVIDERS)))
        have = ort.get_available_providers()
        if wanted[0] not in have:
            raise DeviceError("the device's onnxruntime has no %s (it has %s)" % (wanted[0], ", ".join(have)))
        self._ort, self._path, self._threads = ort, path, threads
        self._providers = [p for p in wanted if p in have]
        try:
            self.session = _ort_session(ort, path, self._options(), self._providers)
        except Exception as exc:
            raise DeviceError("onnxruntime on the device cannot load the model: %s" % _first_line(exc))
        self.provider = self.session.get_providers()[0]

    def _options(self):
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = self._threads or 0
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return options

    def node_trace(self, feed, warmup, iterations):
        """onnxruntime's own profiler on a second session with the same options: the model_run and node
        kernel_time events (what the host maps to the model's stages), the trace file removed."""
        options = self._options()
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(self.workdir, "ort-profile")
        session = _ort_session(self._ort, self._path, options, self._providers)
        for _ in range(warmup + iterations):
            session.run(None, feed)
        trace = session.end_profiling()
        try:
            with open(trace) as fh:
                events = json.load(fh)
        finally:
            os.remove(trace)
        keep = []
        for e in events:
            if (e.get("cat") == "Session" and e.get("name") == "model_run") or (
                    e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")):
                keep.append({"cat": e["cat"], "name": e["name"], "ts": e["ts"], "dur": e["dur"],
                             "args": {"op_name": e.get("args", {}).get("op_name", "?")}})
        return keep

    def describe(self):
        inputs = [{"name": i.name, "shape": [d if isinstance(d, int) else (d or None) for d in i.shape],
                   "dtype": _ORT_TYPES.get(i.type, i.type)} for i in self.session.get_inputs()]
        return {
            "inputs": inputs,
            "outputs": [o.name for o in self.session.get_outputs()],
            "metadata": dict(self.session.get_modelmeta().custom_metadata_map),
            "provider": self.provider,
            "runtime_version": self.version,
        }

    def infer(self, feed):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, feed)))


# ---- LiteRT ---------------------------------------------------------------------------------------------------------


def _litert_interpreter():
    for module, label in (("ai_edge_litert.interpreter", "ai_edge_litert"),
                          ("tflite_runtime.interpreter", "tflite_runtime"), ("tensorflow.lite", "tensorflow")):
        try:
            mod = __import__(module, fromlist=["Interpreter"])
        except ImportError:
            continue
        version = getattr(sys.modules.get(module.split(".")[0]), "__version__", "?")
        return mod.Interpreter, "%s %s" % (label, version)
    raise DeviceError("no LiteRT runtime for %s on the device (pip install ai-edge-litert, or tflite-runtime)"
                      % sys.executable)


class LiteRtModel(object):
    """A .tflite through its single signature when it has one (names as exported), else the raw interpreter."""

    def __init__(self, path, delegate, threads, workdir=None):  # workdir: unused, no scratch files
        interpreter_cls, self.version = _litert_interpreter()
        if delegate not in ("cpu", "xnnpack"):
            raise DeviceError("the device agent drives LiteRT on the CPU (XNNPACK); delegate %r needs "
                              "benchmark_model" % delegate)
        try:
            self.interpreter = interpreter_cls(model_path=path, num_threads=threads or None)
            signatures = self.interpreter.get_signature_list() if hasattr(self.interpreter, "get_signature_runner") \
                else {}  # an old tflite_runtime without signatures: the raw tensors (the host renames by position)
            self.signature = self._signature_key = None
            if len(signatures) == 1:
                key = self._signature_key = next(iter(signatures))
                self.signature = self.interpreter.get_signature_runner(key)
                self._names = (list(signatures[key]["inputs"]), list(signatures[key]["outputs"]))
            else:
                self.interpreter.allocate_tensors()
        except Exception as exc:
            raise DeviceError("LiteRT on the device cannot load the model: %s" % _first_line(exc))
        self.provider = "xnnpack"
        self._shapes = {}

    def _input_details(self):
        if self.signature is not None and hasattr(self.signature, "get_input_details"):
            details = self.signature.get_input_details()
            return [dict(details[name], name=name) for name in self._names[0]]
        if self.signature is not None:  # an older tflite_runtime: its SignatureRunner has no get_input_details
            return [dict(d, name=name) for name, d in zip(self._names[0], self._signature_tensors())]
        return self.interpreter.get_input_details()

    def _signature_tensors(self):
        """The interpreter's input details for the signature's inputs, in the signature's order. The tensors are
        not named as the signature's inputs (serving_default_args_0 for args_0): they are found by tensor index
        (the runner's own name -> index map, which older SignatureRunners keep), else by the converter's
        '<signature key>_<name>' naming, else by position."""
        details = self.interpreter.get_input_details()
        names, key = self._names[0], self._signature_key
        indices = getattr(self.signature, "_inputs", None)
        if isinstance(indices, dict) and all(n in indices for n in names):
            by_index = dict((d["index"], d) for d in details)
            if all(indices[n] in by_index for n in names):
                return [by_index[indices[n]] for n in names]
        by_name = dict((d["name"].split(":")[0], d) for d in details)
        if all(("%s_%s" % (key, n)) in by_name for n in names):
            return [by_name["%s_%s" % (key, n)] for n in names]
        if len(details) == len(names):
            return details
        raise DeviceError("LiteRT on the device cannot match the signature's inputs (%s) to the model's tensors (%s)"
                          % (", ".join(names), ", ".join(d["name"] for d in details)))

    def describe(self):
        def spec(d):
            sig = d.get("shape_signature", d["shape"])
            dtype = d["dtype"]
            return {"name": d["name"], "shape": [int(x) if int(x) >= 0 else None for x in sig],
                    "dtype": dtype.__name__ if hasattr(dtype, "__name__") else str(dtype)}

        outputs = self._names[1] if self.signature is not None else [
            d["name"] for d in self.interpreter.get_output_details()]
        return {
            "inputs": [spec(d) for d in self._input_details()],
            "outputs": outputs,
            "metadata": {},
            "provider": self.provider,
            "runtime_version": self.version,
        }

    def infer(self, feed):
        if self.signature is not None:  # the signature runner resizes inputs and allocates as needed
            out = self.signature(**feed)
            return dict((name, out[name]) for name in self._names[1])
        details = self.interpreter.get_input_details()
        shapes = dict((d["name"], tuple(feed[d["name"]].shape)) for d in details)
        if shapes != self._shapes:
            for d in details:
                self.interpreter.resize_tensor_input(d["index"], list(shapes[d["name"]]))
            self.interpreter.allocate_tensors()
            self._shapes = shapes
            details = self.interpreter.get_input_details()
        for d in details:
            self.interpreter.set_tensor(d["index"], feed[d["name"]])
        self.interpreter.invoke()
        return dict((d["name"], self.interpreter.get_tensor(d["index"]).copy())
                    for d in self.interpreter.get_output_details())


# ---- Core ML (a Mac) ------------------------------------------------------------------------------------------------


class CoremlModel(object):
    """An .mlpackage through coremltools' MLModel on macOS. The host sends the package folder zipped; it is unpacked
    once beside the zip (content-addressed, like every cached artifact). Core ML schedules its own threads."""

    UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE", "all": "ALL"}
    TYPES = {65568: "float32", 65552: "float16", 131104: "int32"}  # Core ML's ArrayDataType values

    def __init__(self, path, delegate, threads, workdir=None):  # workdir: unused, the package is unpacked in cache
        try:
            import coremltools as ct
        except ImportError:
            raise DeviceError("coremltools is not installed for %s on the device (pip install coremltools)"
                              % sys.executable)
        if sys.platform != "darwin" or delegate not in self.UNITS:
            raise DeviceError("Core ML runs on macOS with delegate %s; this is %s with %r"
                              % ("/".join(self.UNITS), sys.platform, delegate))
        try:
            if path.endswith(".zip") and not os.path.isdir(path[:-4]):
                import tempfile
                import zipfile

                staged = tempfile.mkdtemp(dir=os.path.dirname(path) or ".")
                with zipfile.ZipFile(path) as archive:
                    archive.extractall(staged)
                os.rename(staged, path[:-4])
            self.model = ct.models.MLModel(path[:-4] if path.endswith(".zip") else path,
                                           compute_units=getattr(ct.ComputeUnit, self.UNITS[delegate]))
        except Exception as exc:
            raise DeviceError("Core ML on the device cannot load the model: %s" % _first_line(exc))
        self.version, self.provider = "coremltools " + ct.__version__, delegate
        self._spec = self.model.get_spec().description
        self._types = dict((i["name"], i["dtype"]) for i in self.describe()["inputs"])

    def describe(self):
        def spec(f):
            array = f.type.multiArrayType
            ranges = [(r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges]
            shape = [lo if lo == hi else None for lo, hi in ranges] if ranges else [int(d) for d in array.shape]
            return {"name": f.name, "shape": shape, "dtype": self.TYPES.get(array.dataType, "float32")}

        return {"inputs": [spec(f) for f in self._spec.input], "outputs": [f.name for f in self._spec.output],
                "metadata": dict(self._spec.metadata.userDefined), "provider": self.provider,
                "runtime_version": self.version}

    def infer(self, feed):
        out = self.model.predict(dict((k, v.astype(self._types.get(k, v.dtype))) for k, v in feed.items()))
        numpy = _import_numpy()  # fp16 outputs widened to fp32, as edgeseq's local runners give them
        outputs = dict((f.name, numpy.asarray(out[f.name])) for f in self._spec.output)
        return dict((k, v.astype("float32") if v.dtype == numpy.float16 else v) for k, v in outputs.items())


def _trtexec_model(path, delegate, threads, workdir=None):
    try:
        from .agent_trtexec import TrtexecModel  # imported on the host (tests)
    except ImportError:
        from agent_trtexec import TrtexecModel  # shipped: beside this file in the agent's zip
    return TrtexecModel(path, delegate, threads, workdir)


def _executorch_model(path, delegate, threads, workdir=None):
    try:
        from .agent_executorch import ExecutorchModel  # imported on the host (tests)
    except ImportError:
        from agent_executorch import ExecutorchModel  # shipped: beside this file in the agent's zip
    return ExecutorchModel(path, delegate, threads, workdir)


RUNTIMES = {"onnxruntime": OrtModel, "litert": LiteRtModel, "tensorrt": _trtexec_model, "coreml": CoremlModel,
            "executorch": _executorch_model}


def open_model(path, runtime, delegate, threads, workdir=None):
    """workdir: where a runtime that needs scratch files (trtexec's raw inputs and JSON) makes its folder."""
    cls = RUNTIMES.get(runtime)
    if cls is None:
        raise DeviceError("the device agent cannot drive runtime %r (it drives %s)" % (runtime, ", ".join(RUNTIMES)))
    return cls(path, delegate, threads, workdir)


# ---- verbs ----------------------------------------------------------------------------------------------------------


def _peak_rss_mb():
    try:  # VmHWM: reset at exec, unlike ru_maxrss, which a shell or sshd parent's peak would inflate
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux / Android
    except Exception:  # no resource module (not POSIX)
        return None


def _versions(model):
    numpy = _import_numpy()
    return {"python": sys.version.split()[0], "numpy": numpy.__version__, "runtime": model.version}


# the kernel's names for the AArch64 HWCAP / HWCAP2 bits (arch/arm64/include/uapi/asm/hwcap.h), bit 0 first
_HWCAP = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop "
          "sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg").split()
_HWCAP2 = ("dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svef32mm svef64mm svebf16 "
           "i8mm bf16 dgh rng bti mte").split()


def _arm_hwcaps(path="/proc/self/auxv"):
    """ARM64 features from this process's auxiliary vector (AT_HWCAP 16, AT_HWCAP2 26): what the kernel, or QEMU's
    user-mode emulation, tells programs the core can do; None where it cannot be read."""
    import struct

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    words = struct.unpack("<%dQ" % (len(raw) // 8), raw[:len(raw) // 8 * 8])
    aux = dict(zip(words[0::2], words[1::2]))
    if 16 not in aux:
        return None
    return [n for i, n in enumerate(_HWCAP) if aux[16] >> i & 1] + \
        [n for i, n in enumerate(_HWCAP2) if aux.get(26, 0) >> i & 1]


def _cpu(cpuinfo="/proc/cpuinfo"):
    """The device's CPU as /proc/cpuinfo names it (model, flags / ARM Features) and its machine: int8 parity is a
    property of the CPU that runs the kernels, so the host records it on every row measured here. An ARM64 python
    whose /proc/cpuinfo has no Features line is emulated (QEMU user mode shows the host's file): its features come
    from the auxiliary vector instead, which is the emulated core's."""
    import platform

    model, flags, arm_features = "", [], False
    try:
        with open(cpuinfo) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if not model and key in ("model name", "Model", "Hardware", "CPU part"):
                    model = value.strip()
                if not flags and key in ("flags", "Features"):
                    flags, arm_features = value.split(), key == "Features"
    except OSError:
        pass
    machine = platform.machine()
    if machine in ("aarch64", "arm64") and not arm_features:
        hwcaps = _arm_hwcaps()
        if hwcaps is not None:
            qemu = os.environ.get("QEMU_CPU")
            model = "QEMU %s (emulated)" % qemu if qemu else "aarch64 (features from HWCAP)"
            flags = hwcaps
    return {"model": model or platform.processor() or machine, "machine": machine, "flags": flags}


def describe(args):
    model_path, runtime, delegate, threads = args
    _import_numpy()
    model = open_model(model_path, runtime, delegate, int(threads) or None)
    out = model.describe()
    out["versions"] = _versions(model)
    out["cpu"] = _cpu()
    out["protocol"] = PROTOCOL
    print(json.dumps(out))


def _cases(numpy, path):
    """{case index: {input name: array}} from 'case<i>/<name>' keys."""
    cases = {}
    with numpy.load(path, allow_pickle=False) as data:
        for key in data.files:
            case, _, name = key.partition("/")
            cases.setdefault(int(case[4:]), {})[name] = data[key]
    return [cases[i] for i in sorted(cases)]


def _time(model, feed, timing):
    warmup, iterations = int(timing["warmup"]), int(timing["iterations"])
    if hasattr(model, "timed"):  # the runtime's own timer (trtexec): one process, not one per call
        return model.timed(feed, warmup, iterations)
    for _ in range(warmup):
        model.infer(feed)
    samples = []
    budget = timing.get("budget_s")
    deadline = time.perf_counter() + budget if budget else None
    while len(samples) < iterations:
        t0 = time.perf_counter()
        model.infer(feed)
        samples.append((time.perf_counter() - t0) * 1e3)
        if deadline is not None and time.perf_counter() > deadline:
            break
    return samples


def _stream(numpy, model, feed, plan, chunk, outputs):
    """One stream of the chunked-vs-full gate (edgeseq.streaming.stream, here on the device): `chunk` frames per call,
    the state carried; the outputs concatenated and the final state go into `outputs`; the calls' seconds back."""
    state_of = dict(plan["state"])  # state input -> the output carrying it
    streamed, out_axes = plan["streamed"], plan["out_axes"]
    first = min(streamed)
    total = feed[first].shape[streamed[first]]
    state, pieces, times = dict((n, feed[n]) for n in state_of), {}, []
    for start in range(0, total, chunk):
        call = dict(feed)
        call.update((n, numpy.take(feed[n], range(start, min(start + chunk, total)), axis=a))
                    for n, a in streamed.items())
        call.update(state)
        began = time.perf_counter()
        got = model.infer(call)
        times.append(time.perf_counter() - began)
        state = dict((n, got[o]) for n, o in state_of.items())
        for name, value in got.items():
            if name not in state_of.values() and name in out_axes:
                pieces.setdefault(name, []).append(value)
    for name, parts in pieces.items():
        outputs["chunk%d/%s" % (chunk, name)] = numpy.concatenate(parts, axis=out_axes[name])
    outputs.update(("chunk%d/%s" % (chunk, o), state[n]) for n, o in state_of.items())
    return times


def _streams(numpy, model, feed, plan, outputs):
    """The whole gate in one job (a round trip per chunk would time the link): per repeat, one full call, then each
    chunk size's stream, interleaved as on the host."""
    full, calls = [], dict((str(c), []) for c in plan["chunks"])
    for _ in range(int(plan["repeats"])):
        began = time.perf_counter()
        model.infer(feed)
        full.append(time.perf_counter() - began)
        for chunk in plan["chunks"]:
            calls[str(chunk)].append(_stream(numpy, model, feed, plan, int(chunk), outputs))
    return {"full_s": full, "calls_s": calls}


def run(args):
    (job_path,) = args
    numpy = _import_numpy()
    with open(job_path) as fh:
        job = json.load(fh)
    # scratch files go in the job's own folder
    model = open_model(job["model"], job["runtime"], job["delegate"], job.get("threads"),
                       os.path.dirname(os.path.abspath(job["result"])))
    try:
        _run_job(numpy, job, model)
    finally:
        if hasattr(model, "close"):  # trtexec's scratch folder
            model.close()


def _run_job(numpy, job, model):
    feeds = _cases(numpy, job["feeds"])
    result = {"protocol": PROTOCOL, "describe": model.describe(), "versions": _versions(model), "cases": []}
    outputs = {}
    if job.get("infer", True):
        for i, feed in enumerate(feeds):
            try:
                out = model.infer(feed)
            except Exception as exc:  # one case failing is a result for that case, not the end of the job
                result["cases"].append({"error": "%s failed on the device: %s" % (job["runtime"], _first_line(exc))})
                continue
            for name, value in out.items():
                outputs["case%d/%s" % (i, name)] = numpy.asarray(value)
            result["cases"].append({"error": ""})
    timing = job.get("timing")
    if timing:
        feed = feeds[0]
        try:
            samples = _time(model, feed, timing)
        except Exception as exc:
            raise DeviceError("%s failed on the device while timing: %s" % (job["runtime"], _first_line(exc)))
        result["timing"] = {"samples_ms": samples, "warmup": int(timing["warmup"])}
    if job.get("stream"):
        try:
            result["stream"] = _streams(numpy, model, feeds[0], job["stream"], outputs)
        except Exception as exc:
            raise DeviceError("%s failed on the device while streaming: %s" % (job["runtime"], _first_line(exc)))
    nodes = job.get("node_profile")
    if nodes:
        if not hasattr(model, "node_trace"):
            raise DeviceError("per-stage timing reads onnxruntime's profiler; %s has none" % job["runtime"])
        try:
            result["node_trace"] = model.node_trace(feeds[0], int(nodes["warmup"]), int(nodes["iterations"]))
        except Exception as exc:
            raise DeviceError("onnxruntime failed on the device while profiling: %s" % _first_line(exc))
    result["peak_rss_mb"] = _peak_rss_mb()
    numpy.savez(job["outputs"], **outputs)
    with open(job["result"] + ".part", "w") as fh:
        json.dump(result, fh)
    os.replace(job["result"] + ".part", job["result"])


VERBS = {"describe": (describe, 4), "run": (run, 1)}


def main(argv):
    if len(argv) < 1 or argv[0] not in VERBS or len(argv) - 1 != VERBS[argv[0]][1]:
        sys.stderr.write(ERROR_PREFIX + "usage: agent.py describe MODEL RUNTIME DELEGATE THREADS | run JOB\n")
        return 2
    fn, _ = VERBS[argv[0]]
    try:
        fn(argv[1:])
    except DeviceError as exc:
        sys.stderr.write(ERROR_PREFIX + str(exc) + "\n")
        return 3
    except Exception as exc:  # anything else is still one line for the host
        sys.stderr.write(ERROR_PREFIX + "%s: %s\n" % (type(exc).__name__, _first_line(exc)))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
