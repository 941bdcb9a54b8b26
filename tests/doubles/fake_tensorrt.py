"""A test double of the `tensorrt` Python module: the slice of TensorRT 10's documented API that
edgeseq.formats.tensorrt uses (Builder, OnnxParser, BuilderConfig, IOptimizationProfile, timing cache, Runtime,
ICudaEngine, IExecutionContext), so the build and run code paths execute on machines without TensorRT.

It checks what a real TensorRT would reject (unknown profile inputs, shapes outside the profile, unset addresses)
and its "engine" is an identity: execute_async_v3 copies the first input's buffer into the first output's buffer
with cudaMemcpyAsync on the given stream, which proves that the runner hands over real device buffers of the right
size and its own stream. It is not TensorRT: real engine tests are the ones marked `tensorrt`.
"""

from __future__ import annotations

import ctypes
import enum
import json
import types

import numpy as np

__version__ = "10.99.0+fake"


class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = _Severity

    def __init__(self):
        pass

    def log(self, severity, msg):  # pragma: no cover - overridden
        pass


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 2
    TF32 = 7


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
       DataType.BOOL: np.bool_}


def nptype(dtype):
    return _NP[dtype]


REJECT: set[str] = set()  # op types the fake parser refuses (tests set it)
CALLS: list[tuple] = []  # what the build code asked for, in order


class _Error:
    def __init__(self, node, op):
        self._node, self._op = node, op

    def desc(self):
        return f"no importer for {self._op}"

    def node_name(self):
        return self._node

    def node_operator(self):
        return self._op


class _Network:
    def __init__(self, flags):
        self.flags = flags
        self.inputs: list[dict] = []
        self.outputs: list[dict] = []


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.logger, self.errors = network, logger, []

    def parse_from_file(self, model):
        import onnx

        proto = onnx.load(model)
        self.errors = [_Error(n.name, n.op_type) for n in proto.graph.node if n.op_type in REJECT]
        for value, into in ((proto.graph.input, self.network.inputs), (proto.graph.output, self.network.outputs)):
            for v in value:
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                into.append({"name": v.name, "shape": dims})
        return not self.errors

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, index):
        return self.errors[index]


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, input, min, opt, max):  # noqa: A002 - the documented keyword names
        self.shapes[input] = [list(min), list(opt), list(max)]


class _TimingCache:
    def __init__(self, data: bytes):
        self.data = data

    def serialize(self):
        return memoryview(self.data + b"+timed")


class _Config:
    def __init__(self):
        self.flags = {BuilderFlag.TF32}  # TF32 is on by default, as documented
        self.profiles: list[_Profile] = []
        self.cache = None

    def set_flag(self, flag):
        CALLS.append(("set_flag", flag.name))
        self.flags.add(flag)

    def clear_flag(self, flag):
        CALLS.append(("clear_flag", flag.name))
        self.flags.discard(flag)

    def set_memory_pool_limit(self, pool, pool_size):
        CALLS.append(("set_memory_pool_limit", pool.name, pool_size))

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        CALLS.append(("create_timing_cache", bytes(serialized_timing_cache)))
        return _TimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


class Builder:
    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags=0):
        CALLS.append(("create_network", flags))
        return _Network(flags)

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        shapes = config.profiles[0].shapes
        missing = [i["name"] for i in network.inputs if -1 in i["shape"] and i["name"] not in shapes]
        if missing:
            self.logger.log(_Severity.ERROR, f"no profile for dynamic input {missing}")
            return None
        plan = {"inputs": network.inputs, "outputs": network.outputs, "profile": shapes,
                "flags": sorted(f.name for f in config.flags), "strongly_typed": bool(network.flags & 2)}
        return memoryview(b"FAKEENGINE" + json.dumps(plan).encode())


class _Engine:
    def __init__(self, plan):
        self.plan = plan
        self.names = [i["name"] for i in plan["inputs"]] + [o["name"] for o in plan["outputs"]]

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, index):
        return self.names[index]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if any(i["name"] == name for i in self.plan["inputs"]) else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_tensor_shape(self, name):
        return next(t["shape"] for t in self.plan["inputs"] + self.plan["outputs"] if t["name"] == name)

    def get_tensor_profile_shape(self, name, profile_index):
        return self.plan["profile"][name]

    def create_execution_context(self):
        return _Context(self)


class _Context:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.plan["profile"][name]
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return self.shapes[name]
        return next(iter(self.shapes.values()))  # the fake engine is an identity: outputs take the input's shape

    def set_tensor_address(self, name, memory):
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle):
        if set(self.addresses) != set(self.engine.names):
            return False
        first_in = self.engine.plan["inputs"][0]["name"]
        first_out = self.engine.plan["outputs"][0]["name"]
        nbytes = int(np.prod(self.shapes[first_in])) * 4
        status = _cudart().cudaMemcpyAsync(ctypes.c_void_p(self.addresses[first_out]),
                                           ctypes.c_void_p(self.addresses[first_in]), ctypes.c_size_t(nbytes),
                                           3, ctypes.c_void_p(stream_handle))  # 3: device to device
        return status == 0


class Runtime:
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine):
        data = bytes(serialized_engine)
        if not data.startswith(b"FAKEENGINE"):
            self.logger.log(_Severity.ERROR, "magic tag does not match")
            return None
        return _Engine(json.loads(data[len(b"FAKEENGINE"):]))


def _cudart():
    """The CUDA runtime library torch has loaded (found in /proc/self/maps), for cudaMemcpyAsync."""
    global _CUDART
    if _CUDART is None:
        import torch

        torch.cuda.init()
        paths = [line.split()[-1] for line in open("/proc/self/maps") if "libcudart" in line]
        lib = ctypes.CDLL(paths[0] if paths else "libcudart.so")
        lib.cudaMemcpyAsync.restype = ctypes.c_int
        _CUDART = lib
    return _CUDART


_CUDART = None


def without_weak_typing() -> types.ModuleType:
    """The same double shaped like TensorRT 11: the FP16 / INT8 builder flags are gone."""
    module = types.ModuleType("tensorrt")
    module.__dict__.update({k: v for k, v in globals().items() if not k.startswith("__")})
    module.__version__ = "11.1.0+fake"
    module.BuilderFlag = enum.IntEnum("BuilderFlag", {"TF32": 7})
    return module
