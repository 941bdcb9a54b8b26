"""The BiGRU recurrence as one hand-written CUDA kernel (cuda_gru.cu), compiled at run time with NVRTC.

Why a CUDA C++ kernel next to the Triton ones: at batch 1 the Triton 'dot' kernel pads the batch to 16 rows for
tl.dot (94% of its MMA work and gate math is padding) and its 'vec' kernel's cross-warp reductions go through shared
memory with several barriers per step; both stay at 1.5 us or more per step at hidden 128 on an H200, like cuDNN's
persistent kernel. cuda_gru.cu keeps W_hh in fp32 registers, with one barrier and log2(split) warp shuffles per
step (see the file's header). GruKernelConfig(kind="cuda") selects it in `triton_gru.bigru_recurrence`.

How it runs without a build step: NVRTC (libnvrtc, which CUDA builds of PyTorch carry, or `pip install
'edgeseq[cuda]'`) compiles the source for the GPU's own architecture into a cubin, and the CUDA driver API (libcuda,
through ctypes) loads it into PyTorch's primary context and launches it on PyTorch's current stream, so it is
captured by CUDA graphs like any other launch. No host compiler, no nvcc, no extension module. Compiled kernels are
cached per (hidden, dtype, architecture, split) for the process.

What can be checked without a GPU is: the tests build the kernel's own source for the CPU with a thread-per-CUDA-
thread emulation (tests/doubles/cuda_emu/) and check it against nn.GRU; run this module's ctypes driver layer against a
libcuda double whose cuLaunchKernel runs that emulated kernel; and compile the source with NVRTC for sm_80 / sm_90
to check that it fits its register budget without spills.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import re
import sys
import threading
from dataclasses import dataclass
from importlib import resources

import torch

from ..errors import InputError, MissingExtraError, RuntimeFailure, UnsupportedError

KERNEL_NAME = "edgeseq_bigru_rows"
SPLITS = (2, 4)  # threads per hidden unit (cuda_gru.cu's EDGESEQ_SPLIT); the first is the default: 2 ran 0.53 us
# per step at hidden 128 on an H200, 4 ran 0.65 (bench/results/triton-gru-quick-nvidia-h200.json)
MAX_HIDDEN = 128
IO_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_NVRTC_ENV = "EDGESEQ_NVRTC"


def threads_per_block(hidden: int, split: int = SPLITS[0]) -> int:
    return split * hidden


def validate_split(split: int) -> None:
    if split not in SPLITS:
        raise UnsupportedError(f"the CUDA GRU kernel splits a hidden unit over {' or '.join(map(str, SPLITS))} "
                               f"threads, not {split}")


def runs_hidden(hidden: int) -> bool:
    """The hidden sizes the kernel is built for: multiples of 16 up to MAX_HIDDEN (W_hh lives in registers)."""
    return hidden % 16 == 0 and 16 <= hidden <= MAX_HIDDEN


def validate_hidden(hidden: int) -> None:
    if not runs_hidden(hidden):
        raise UnsupportedError(f"the CUDA GRU kernel runs hidden sizes that are multiples of 16 up to {MAX_HIDDEN} "
                               f"(its weights live in registers), not {hidden}; use the Triton or cuDNN kernel")


def source() -> str:
    return resources.files("edgeseq.kernels").joinpath("cuda_gru.cu").read_text(encoding="utf-8")


# --- NVRTC -----------------------------------------------------------------------------------------------------

def _nvrtc_candidates() -> list[str]:
    """Where libnvrtc may be, most specific first: $EDGESEQ_NVRTC; NVIDIA's wheels on sys.path (nvidia/cu13/lib for
    CUDA 13, nvidia/cuda_nvrtc/lib for 12; CUDA builds of torch install them), the copy of torch's own CUDA major
    version first; that version's soname (a copy torch or the system loaded); $CUDA_HOME; the linker's path.
    Files before sonames: a file's folder is where its libnvrtc-builtins is (see _preload_builtins)."""
    found = []
    if os.environ.get(_NVRTC_ENV):
        found.append(os.environ[_NVRTC_ENV])
    major = torch.version.cuda.split(".")[0] if torch.version.cuda else None
    wheels = []
    for base in sys.path:
        for pattern in ("nvidia/cu*/lib/libnvrtc.so.*", "nvidia/cuda_nvrtc/lib/libnvrtc.so.*"):
            wheels.extend(p for p in glob.glob(os.path.join(base, pattern)) if "builtins" not in p and ".alt." not in p)
    found.extend(sorted(wheels, key=lambda p: (major is None or not p.endswith(f".so.{major}"), p)))
    if major:
        found.append(f"libnvrtc.so.{major}")
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            found.extend(sorted(glob.glob(os.path.join(home, "lib64", "libnvrtc.so*"))))
    name = ctypes.util.find_library("nvrtc")
    if name:
        found.append(name)
    return list(dict.fromkeys(found))


def _preload_builtins(candidate: str) -> None:
    """NVRTC dlopens libnvrtc-builtins by soname at compile time; some wheels' libnvrtc (13.0) has no $ORIGIN rpath
    to find the copy beside it, so load that copy first (global) and the dlopen finds it loaded."""
    folder = os.path.dirname(candidate)
    if folder:
        for path in sorted(glob.glob(os.path.join(folder, "libnvrtc-builtins.so.*"))):
            if ".alt." not in path:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


@functools.lru_cache(maxsize=1)
def nvrtc() -> ctypes.CDLL:
    """libnvrtc, loaded once. Missing: one line naming the pip command."""
    for candidate in _nvrtc_candidates():
        try:
            _preload_builtins(candidate)
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        lib.nvrtcCreateProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.nvrtcCompileProgram.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        lib.nvrtcGetProgramLogSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetProgramLog.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcGetCUBINSize.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        lib.nvrtcGetCUBIN.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nvrtcDestroyProgram.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        return lib
    raise MissingExtraError("NVRTC (libnvrtc) was not found; CUDA builds of PyTorch carry it, or install it with: "
                            f"pip install 'edgeseq[cuda]' (or point {_NVRTC_ENV} at libnvrtc.so)")


def nvrtc_available() -> bool:
    try:
        nvrtc()
    except MissingExtraError:
        return False
    return True


def nvrtc_version() -> str:
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check_nvrtc(nvrtc(), nvrtc().nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "version")
    return f"{major.value}.{minor.value}"


@dataclass(frozen=True)
class CompiledKernel:
    """A cubin for one (hidden, dtype, architecture) and what ptxas said about it."""

    cubin: bytes
    hidden: int
    dtype: str
    arch: str
    split: int
    registers: int
    spill_bytes: int
    log: str

    @property
    def threads(self) -> int:
        return threads_per_block(self.hidden, self.split)


_PTXAS_REGISTERS = re.compile(r"Used (\d+) registers")
_PTXAS_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def ptxas_usage(log: str) -> tuple[int, int]:
    """(registers, spill bytes stored + loaded) from ptxas' -v report; -1 where the log does not say."""
    regs = _PTXAS_REGISTERS.search(log)
    spills = _PTXAS_SPILLS.search(log)
    return (int(regs.group(1)) if regs else -1,
            int(spills.group(1)) + int(spills.group(2)) if spills else -1)


def _check_nvrtc(lib: ctypes.CDLL, status: int, what: str) -> None:
    if status != 0:
        raise RuntimeFailure(f"NVRTC {what} failed: {lib.nvrtcGetErrorString(status).decode()}")


@functools.cache
def compile_kernel(hidden: int, dtype: torch.dtype, arch: str, split: int = SPLITS[0]) -> CompiledKernel:
    """cuda_gru.cu compiled by NVRTC for sm_<arch> (e.g. '90'), hidden, dtype and split (threads per hidden unit:
    4 = 4H threads holding 3H/4 weights each, 2 = 2H threads holding 3H/2) fixed at compile time (the weights are
    unrolled into registers)."""
    validate_hidden(hidden)
    validate_split(split)
    if dtype not in IO_CODES:
        raise UnsupportedError(f"the CUDA GRU kernel runs fp32, fp16 or bf16 tensors, not {dtype}")
    if not arch.isdigit():
        raise InputError(f"architecture {arch!r} is not a compute capability like '90'")
    lib = nvrtc()
    prog = ctypes.c_void_p()
    _check_nvrtc(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source().encode(), b"cuda_gru.cu", 0, None, None),
                 "create program")
    try:
        options = [f"--gpu-architecture=sm_{arch}", f"-DEDGESEQ_H={hidden}", f"-DEDGESEQ_IO={IO_CODES[dtype]}", f"-DEDGESEQ_SPLIT={split}",
                   "--std=c++17", "--ptxas-options=-v"]
        array = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        status = lib.nvrtcCompileProgram(prog, len(options), array)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace").strip()
        if status != 0:
            first = next((line for line in log.splitlines() if "error" in line), log[:200])
            raise RuntimeFailure(f"NVRTC could not compile the CUDA GRU kernel for sm_{arch}: {first}")
        _check_nvrtc(lib, lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "get cubin size")
        cubin = ctypes.create_string_buffer(size.value)
        _check_nvrtc(lib, lib.nvrtcGetCUBIN(prog, cubin), "get cubin")
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
    registers, spills = ptxas_usage(log)
    name = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    return CompiledKernel(cubin.raw, hidden, name, arch, split, registers, spills, log)


# --- CUDA driver -----------------------------------------------------------------------------------------------

class _Driver:
    """The few CUDA driver calls a launch needs, through ctypes on libcuda (present wherever a GPU driver is)."""

    def __init__(self, path: str = "libcuda.so.1") -> None:
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as exc:
            raise UnsupportedError(f"the CUDA GRU kernel needs the CUDA driver ({path}): {exc}") from None
        self.lib.cuGetErrorString.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        self.lib.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
        self.contexts: dict[int, ctypes.c_void_p] = {}
        self.functions: dict[tuple, ctypes.c_void_p] = {}
        self.lock = threading.Lock()
        self.check(self.lib.cuInit(0), "cuInit")  # PyTorch has done it already; idempotent

    def check(self, status: int, what: str) -> None:
        if status != 0:
            text = ctypes.c_char_p()
            self.lib.cuGetErrorString(status, ctypes.byref(text))
            raise RuntimeFailure(f"CUDA driver {what} failed: {(text.value or b'error %d' % status).decode()}")

    def make_current(self, device: int) -> None:
        """PyTorch's primary context of `device` current on this thread (the driver API does not do it lazily)."""
        ctx = self.contexts.get(device)
        if ctx is None:
            dev = ctypes.c_int()
            self.check(self.lib.cuDeviceGet(ctypes.byref(dev), device), "cuDeviceGet")
            ctx = ctypes.c_void_p()
            self.check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
            self.contexts[device] = ctx
        current = ctypes.c_void_p()
        self.check(self.lib.cuCtxGetCurrent(ctypes.byref(current)), "cuCtxGetCurrent")
        if current.value != ctx.value:
            self.check(self.lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")

    def function(self, device: int, kernel: CompiledKernel) -> ctypes.c_void_p:
        key = (device, kernel.hidden, kernel.dtype, kernel.arch, kernel.split)
        with self.lock:
            if key not in self.functions:
                self.make_current(device)
                module = ctypes.c_void_p()
                self.check(self.lib.cuModuleLoadData(ctypes.byref(module), kernel.cubin), "cuModuleLoadData")
                func = ctypes.c_void_p()
                self.check(self.lib.cuModuleGetFunction(ctypes.byref(func), module, KERNEL_NAME.encode()),
                           "cuModuleGetFunction")
                self.functions[key] = func
            return self.functions[key]

    def launch(self, func: ctypes.c_void_p, device: int, grid: tuple[int, int], threads: int, stream: int,
               args: list) -> None:
        self.make_current(device)
        params = (ctypes.c_void_p * len(args))(*(ctypes.cast(ctypes.byref(a), ctypes.c_void_p) for a in args))
        self.check(self.lib.cuLaunchKernel(func, grid[0], grid[1], 1, threads, 1, 1, 0, ctypes.c_void_p(stream),
                                           params, None), "cuLaunchKernel")


@functools.lru_cache(maxsize=1)
def _driver() -> _Driver:
    return _Driver()


def _arch(device: torch.device) -> str:
    major, minor = torch.cuda.get_device_capability(device)
    return f"{major}{minor}"


def rows_recurrence(gi: torch.Tensor, w_hh_t: torch.Tensor, b_hh: torch.Tensor, split: int = SPLITS[0]
                    ) -> torch.Tensor:
    """out [B, T, 2H] from gi [B, T, 6H], w_hh_t [2, 3, H, H] and b_hh [2, 3H] (the shapes and meaning of
    `triton_gru.bigru_recurrence`, whose checks the caller has made), one launch of cuda_gru.cu on CUDA tensors."""
    batch, steps, _ = gi.shape
    hidden = w_hh_t.shape[3]
    validate_hidden(hidden)
    validate_split(split)
    if gi.device.type != "cuda":
        raise UnsupportedError(f"the CUDA GRU kernel runs on CUDA tensors, not on {gi.device.type}")
    if gi.dtype not in IO_CODES:
        raise UnsupportedError(f"the CUDA GRU kernel runs fp32, fp16 or bf16 tensors, not {gi.dtype}")
    gi = gi.contiguous()
    w_hh_t = w_hh_t.to(gi.dtype).contiguous()
    b_hh = b_hh.to(gi.dtype).contiguous()
    out = torch.empty(batch, steps, 2 * hidden, device=gi.device, dtype=gi.dtype)
    if batch == 0 or steps == 0:
        return out
    if gi.numel() >= 2 ** 31 or out.numel() >= 2 ** 31:
        raise UnsupportedError(f"the CUDA GRU kernel indexes with 32-bit strides; {tuple(gi.shape)} is too large")
    device = gi.device.index if gi.device.index is not None else torch.cuda.current_device()
    kernel = compile_kernel(hidden, gi.dtype, _arch(gi.device), split)
    launch_rows(_driver(), kernel, device, torch.cuda.current_stream(gi.device).cuda_stream, gi, w_hh_t, b_hh, out)
    return out


def launch_rows(driver: _Driver, kernel: CompiledKernel, device: int, stream: int, gi: torch.Tensor,
                w_hh_t: torch.Tensor, b_hh: torch.Tensor, out: torch.Tensor) -> None:
    """One launch of `kernel` on `stream`: the tensors' memory and strides in the kernel's parameter order. Split
    from rows_recurrence so that the tests run it against a fake driver (tests/doubles/cuda_emu/fake_libcuda.cpp)."""
    func = driver.function(device, kernel)
    args = [ctypes.c_void_p(gi.data_ptr()), ctypes.c_void_p(w_hh_t.data_ptr()), ctypes.c_void_p(b_hh.data_ptr()),
            ctypes.c_void_p(out.data_ptr()), ctypes.c_int(gi.shape[1]), ctypes.c_int(gi.stride(0)),
            ctypes.c_int(gi.stride(1)), ctypes.c_int(out.stride(0)), ctypes.c_int(out.stride(1))]
    driver.launch(func, device, (2, gi.shape[0]), kernel.threads, stream, args)


__all__ = ["SPLITS", "CompiledKernel", "compile_kernel", "launch_rows", "nvrtc", "nvrtc_available", "nvrtc_version", "ptxas_usage",
           "rows_recurrence", "source", "threads_per_block"]
