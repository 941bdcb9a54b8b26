"""The hand-written CUDA BiGRU kernel (edgeseq/kernels/cuda_gru.cu), checked these ways:

- its own source, built for the CPU by g++ with tests/doubles/cuda_emu/ (one std::thread per CUDA thread, real
  barriers and warp exchanges) and compared with nn.GRU: the indexing, both directions, the gate math and the barrier;
  with fp16 / bf16 tensors too (host conversions in place of its two PTX ones), against a float64 recurrence;
- the same source built with ThreadSanitizer (tests/doubles/cuda_emu/racecheck.cpp): no two threads touch h_buf
  without a barrier between them, whatever the schedule (racecheck's job on a GPU); three racy mutations are reported;
- cuda_gru's ctypes driver layer against tests/doubles/cuda_emu/fake_libcuda.cpp, a libcuda double whose
  cuLaunchKernel runs that emulated kernel with the parameters it was handed (pointers, strides, steps, grid, block);
- compiled by NVRTC for sm_80 and sm_90 (every dtype): it compiles, and ptxas fits it in its register budget with no
  spills (weights in registers are the point of the kernel);
- on a CUDA GPU (skipped here): parity with nn.GRU and a fused CBHG through the parity harness (CUDA graph capture
  and replay: test_triton_gru.py, for both persistent kernels).
"""

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import edgeseq
from edgeseq.errors import RuntimeFailure, UnsupportedError
from edgeseq.formats.torch import TorchRunner
from edgeseq.kernels import cuda_gru
from edgeseq.models.fuse import fuse_for_inference
from edgeseq.kernels.triton_gru import GruKernelConfig, TritonBiGRU, bigru_recurrence, transposed_hh

EMU = Path(__file__).parent / "doubles" / "cuda_emu"
CUDA_CONFIG = GruKernelConfig(kind="cuda")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C++20) to build the kernel for the CPU")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none here)")


needs_nvrtc = pytest.mark.skipif(not cuda_gru.nvrtc_available(),
                                 reason="needs NVRTC (libnvrtc): pip install 'edgeseq[cuda]' or a CUDA build of torch")


def _rel_l2(got: torch.Tensor, ref: torch.Tensor) -> float:
    got, ref = got.double(), ref.double()
    return float(torch.linalg.vector_norm(got - ref) / torch.linalg.vector_norm(ref))


def _where_it_differs(got: torch.Tensor, expected: torch.Tensor, hidden: int, bar: float) -> str:
    """For a failed parity assert: per direction, the first step (in that direction's own order) and the first hidden
    unit past the bar, and whether anything is NaN; a first run on new hardware should say where, not only how much."""
    parts = []
    for name, half, order in (("forward", slice(0, hidden), 1), ("backward", slice(hidden, 2 * hidden), -1)):
        err = (got[..., half] - expected[..., half]).abs().amax(dim=0)  # [T, H]
        scale = expected[..., half].abs().amax().clamp_min(1e-6)
        bad = (err / scale > bar).nonzero().tolist()
        if not bad:
            parts.append(f"{name}: within the bar")
            continue
        t, j = min(bad, key=lambda tj: tj[0] * order)
        parts.append(f"{name}: first off at step t={t}, unit {j} (|err| {float(err[t, j]):.3g})")
    return "; ".join(parts) + ("; NaN in the output" if torch.isnan(got).any() else "")


def _gru(hidden: int, seed: int, input_size: int = 24) -> nn.GRU:
    torch.manual_seed(seed)
    return nn.GRU(input_size, hidden, batch_first=True, bidirectional=True).eval()


def _operands(gru: nn.GRU, x: torch.Tensor):
    """gi, w_hh_t, b_hh as TritonBiGRU hands them to the recurrence."""
    with torch.no_grad():
        w_ih = torch.cat([gru.weight_ih_l0, gru.weight_ih_l0_reverse])
        b_ih = torch.cat([gru.bias_ih_l0, gru.bias_ih_l0_reverse])
        gi = F.linear(x, w_ih, b_ih).contiguous()
        w_hh_t = transposed_hh(gru.weight_hh_l0, gru.weight_hh_l0_reverse).contiguous()
        b_hh = torch.stack([gru.bias_hh_l0, gru.bias_hh_l0_reverse]).contiguous()
    return gi, w_hh_t, b_hh


# --- the kernel's source on the CPU (g++ + tests/doubles/cuda_emu) ----------------------------------------------

def _gxx(kernel_dir: Path, source: str, hidden: int, split: int, out: Path, io: int = 0) -> None:
    """Build tests/doubles/cuda_emu/<source> (which includes cuda_gru.cu from kernel_dir) for the CPU; io: EDGESEQ_IO
    (0 fp32, 1 fp16, 2 bf16; the half-width ones with the host's conversions instead of PTX)."""
    subprocess.run(["g++", "-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", f"-DEDGESEQ_H={hidden}",
                    f"-DEDGESEQ_SPLIT={split}", f"-DEDGESEQ_IO={io}", *(["-DEDGESEQ_HOST_IO"] if io else []),
                    f"-I{kernel_dir}", f"-I{EMU}", str(EMU / source), "-o", str(out)],
                   check=True, capture_output=True, text=True)


def _build_emulated(kernel_dir: Path, hidden: int, out: Path, split: int = 4, io: int = 0) -> ctypes.CDLL:
    _gxx(kernel_dir, "run_kernel.cpp", hidden, split, out, io)
    lib = ctypes.CDLL(str(out))
    lib.emu_launch.argtypes = [ctypes.c_uint] * 3 + [ctypes.c_void_p] * 4 + [ctypes.c_int] * 5
    return lib


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """(hidden, split) -> the shipped cuda_gru.cu built for the CPU (built on first use)."""
    built: dict[tuple[int, int], ctypes.CDLL] = {}
    kernel_dir = Path(cuda_gru.__file__).parent

    def get(hidden: int, split: int = 4) -> ctypes.CDLL:
        if (hidden, split) not in built:
            out = tmp_path_factory.mktemp("emu") / f"gru{hidden}s{split}.so"
            built[(hidden, split)] = _build_emulated(kernel_dir, hidden, out, split)
        return built[(hidden, split)]

    return get


def _run_emulated(lib: ctypes.CDLL, gi, w_hh_t, b_hh, split: int = 4, dtype=torch.float32) -> torch.Tensor:
    batch, steps, _ = gi.shape
    hidden = w_hh_t.shape[3]
    out = torch.full((batch, steps, 2 * hidden), float("nan"), dtype=dtype)
    status = lib.emu_launch(2, batch, cuda_gru.threads_per_block(hidden, split), gi.data_ptr(), w_hh_t.data_ptr(),
                            b_hh.data_ptr(), out.data_ptr(), steps, gi.stride(0), gi.stride(1), out.stride(0),
                            out.stride(1))
    assert status == 0
    return out


@needs_gxx
@pytest.mark.parametrize(("hidden", "split", "batch", "steps"),
                         [(16, 4, 3, 7), (64, 4, 1, 9), (128, 4, 2, 5), (48, 4, 1, 1), (128, 2, 2, 5), (16, 2, 1, 6)])
def test_emulated_kernel_matches_nn_gru(emulated, hidden, split, batch, steps):
    gru = _gru(hidden, seed=hidden + steps)
    x = torch.randn(batch, steps, 24)
    with torch.no_grad():
        expected = gru(x)[0]
    got = _run_emulated(emulated(hidden, split), *_operands(gru, x), split=split)
    assert not torch.isnan(got).any()  # every (row, step, direction, unit) written
    assert _rel_l2(got, expected) < 1e-6
    # each direction on its own (a swapped direction would still give a plausible total error)
    assert _rel_l2(got[..., :hidden], expected[..., :hidden]) < 1e-6
    assert _rel_l2(got[..., hidden:], expected[..., hidden:]) < 1e-6


def _gru_reference_f64(gi: torch.Tensor, w_hh_t: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """The recurrence in float64 from the very (rounded) operands the kernel gets: what it should compute before its
    own fp32 arithmetic and the rounding of its output."""
    gi, w, b = gi.double(), w_hh_t.double(), b_hh.double()
    batch, steps, _ = gi.shape
    hidden = w.shape[3]
    out = torch.zeros(batch, steps, 2 * hidden, dtype=torch.float64)
    for d in (0, 1):
        h = torch.zeros(batch, hidden, dtype=torch.float64)
        order = range(steps) if d == 0 else range(steps - 1, -1, -1)
        for t in order:
            x = gi[:, t, 3 * hidden * d: 3 * hidden * (d + 1)]
            hr, hz, hn = (h @ w[d, g] + b[d, g * hidden:(g + 1) * hidden] for g in range(3))
            r = torch.sigmoid(x[:, :hidden] + hr)
            z = torch.sigmoid(x[:, hidden:2 * hidden] + hz)
            n = torch.tanh(x[:, 2 * hidden:] + r * hn)
            h = (1 - z) * n + z * h
            out[:, t, hidden * d: hidden * (d + 1)] = h
    return out


@needs_gxx
@pytest.mark.parametrize(("dtype", "io", "bar"), [(torch.float16, 1, 1e-3), (torch.bfloat16, 2, 8e-3)])
def test_emulated_kernel_with_half_width_io(tmp_path, dtype, io, bar):
    """fp16 / bf16 tensors (the GPU rows the latency target is about): the kernel reads 16-bit gi / W_hh / b_hh
    and writes 16-bit out at the same element strides as fp32. Built here with the host's round-to-nearest-even
    conversions in place of its two PTX instructions, it matches a float64 recurrence on the same rounded operands
    within the output's own rounding (fp16 ~5e-4, bf16 ~4e-3 relative per element)."""
    hidden, split = 64, 4
    lib = _build_emulated(Path(cuda_gru.__file__).parent, hidden, tmp_path / f"io{io}.so", split, io)
    gru = _gru(hidden, seed=5)
    x = torch.randn(2, 7, 24)
    gi, w_hh_t, b_hh = (t.to(dtype).contiguous() for t in _operands(gru, x))
    got = _run_emulated(lib, gi, w_hh_t, b_hh, split=split, dtype=dtype)
    assert got.dtype == dtype and not torch.isnan(got.float()).any()
    expected = _gru_reference_f64(gi, w_hh_t, b_hh)
    for half in (slice(0, hidden), slice(hidden, 2 * hidden)):  # each direction on its own
        assert _rel_l2(got[..., half].double(), expected[..., half]) < bar
    with torch.no_grad():  # and, looser, the fp32 module itself: only rounding between them
        assert _rel_l2(got.float(), gru(x)[0]) < 4 * bar


@needs_gxx
def test_emulation_catches_a_missing_barrier(tmp_path):
    """The CPU harness is not a sequential loop in disguise: the kernel without its per-step __syncthreads (a race on
    h between steps) fails parity there."""
    text = cuda_gru.source()
    marker = "        __syncthreads();\n\n        t = t_next;"
    assert marker in text
    (tmp_path / "cuda_gru.cu").write_text(text.replace(marker, "\n        t = t_next;"))
    lib = _build_emulated(tmp_path, 64, tmp_path / "racy.so")
    gru = _gru(64, seed=1)
    x = torch.randn(2, 12, 24)
    with torch.no_grad():
        expected = gru(x)[0]
    assert _rel_l2(_run_emulated(lib, *_operands(gru, x)), expected) > 1e-3


def _racecheck(kernel_dir: Path, hidden: int, split: int, tmp_path: Path) -> subprocess.CompletedProcess:
    """tests/doubles/cuda_emu/racecheck.cpp built with ThreadSanitizer and run (exit 66 and a report when it saw a
    race); skips when this g++ cannot build with -fsanitize=thread."""
    exe = tmp_path / f"racecheck{hidden}s{split}"
    build = subprocess.run(["g++", "-std=c++20", "-O1", "-g", "-fsanitize=thread", "-pthread", f"-DEDGESEQ_H={hidden}",
                            f"-DEDGESEQ_SPLIT={split}", "-DEDGESEQ_IO=0", f"-I{kernel_dir}", f"-I{EMU}",
                            str(EMU / "racecheck.cpp"), "-o", str(exe)], capture_output=True, text=True)
    if build.returncode:
        pytest.skip(f"needs g++ with ThreadSanitizer (libtsan) for the race check: {build.stderr.strip()[:200]}")
    env = {**os.environ, "TSAN_OPTIONS": "exitcode=66 halt_on_error=0"}
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=env)
    if "unexpected memory mapping" in proc.stderr and shutil.which("setarch"):  # old TSan vs. high ASLR entropy
        proc = subprocess.run(["setarch", os.uname().machine, "-R", str(exe)], capture_output=True, text=True,
                              timeout=300, env=env)
    if "FATAL: ThreadSanitizer" in proc.stderr:
        pytest.skip(f"ThreadSanitizer cannot run here: {proc.stderr.strip().splitlines()[0][:200]}")
    return proc


@needs_gxx
@pytest.mark.parametrize(("hidden", "split"), [(128, 4), (128, 2), (16, 4)])
def test_kernel_is_race_free_under_thread_sanitizer(hidden, split, tmp_path):
    """compute-sanitizer's racecheck, on the CPU: every h_buf word and warp exchange of the shipped kernel is ordered
    by a barrier (ThreadSanitizer follows happens-before through the emulated __syncthreads, so this does not
    depend on how the threads happened to be scheduled)."""
    proc = _racecheck(Path(cuda_gru.__file__).parent, hidden, split, tmp_path)
    assert proc.returncode == 0 and "data race" not in proc.stderr, proc.stderr[-3000:]
    assert "launch status 0" in proc.stdout


RACY = {  # a mutation of cuda_gru.cu -> what it breaks
    "no barrier per step": ("        __syncthreads();\n\n        t = t_next;", "\n        t = t_next;"),
    "one h buffer, read and written in the same step": ("h_buf[(i + 1) & 1][j] = h;", "h_buf[i & 1][j] = h;"),
    "no barrier after h is zeroed": ("    __syncthreads();\n\n    for (int i", "\n    for (int i"),
}


@needs_gxx
@pytest.mark.parametrize("mutation", sorted(RACY))
def test_thread_sanitizer_reports_a_racy_kernel(mutation, tmp_path):
    """The race check can fail: each mutation leaves two threads touching h_buf with no barrier between them, and
    ThreadSanitizer names the kernel's line."""
    old, new = RACY[mutation]
    text = cuda_gru.source()
    assert text.count(old) == 1
    (tmp_path / "cuda_gru.cu").write_text(text.replace(old, new))
    proc = _racecheck(tmp_path, 64, 4, tmp_path)
    assert proc.returncode == 66, (proc.returncode, proc.stderr[-2000:])
    assert "WARNING: ThreadSanitizer: data race" in proc.stderr
    assert "cuda_gru.cu:" in proc.stderr  # the report points into the kernel's source


# --- the ctypes driver layer against a fake libcuda that runs the emulated kernel --------------------------------

@pytest.fixture(scope="module")
def fake_driver(tmp_path_factory):
    """hidden -> a cuda_gru._Driver on tests/doubles/cuda_emu/fake_libcuda.cpp built for that hidden size (split 4)."""
    made: dict[int, cuda_gru._Driver] = {}
    kernel_dir = Path(cuda_gru.__file__).parent

    def get(hidden: int) -> cuda_gru._Driver:
        if hidden not in made:
            out = tmp_path_factory.mktemp("libcuda") / f"libcuda_fake{hidden}.so"
            _gxx(kernel_dir, "fake_libcuda.cpp", hidden, 4, out)
            made[hidden] = cuda_gru._Driver(str(out))
        return made[hidden]

    return get


def _fake_kernel(hidden: int, cubin: bytes = b"\x7fELF fake cubin") -> cuda_gru.CompiledKernel:
    return cuda_gru.CompiledKernel(cubin, hidden, "fp32", "90", 4, 100, 0, "")


@needs_gxx
@pytest.mark.parametrize(("hidden", "batch", "steps"), [(32, 2, 6), (128, 1, 4)])
def test_driver_layer_launches_the_kernel_with_its_parameters(fake_driver, hidden, batch, steps):
    """cuda_gru.launch_rows through ctypes into a libcuda double whose cuLaunchKernel unpacks the parameter array by
    the kernel's signature and runs the kernel: the result is nn.GRU's, so pointers, strides, steps, grid and block
    arrived where the kernel expects them. Also: the primary context is made current before module load and launch,
    and a second launch reuses the loaded function."""
    driver = fake_driver(hidden)
    gru = _gru(hidden, seed=hidden)
    x = torch.randn(batch, steps, 24)
    with torch.no_grad():
        expected = gru(x)[0]
    gi, w_hh_t, b_hh = _operands(gru, x)
    kernel = _fake_kernel(hidden)
    launches = ctypes.c_int.in_dll(driver.lib, "fake_launches").value
    for _ in range(2):
        out = torch.full((batch, steps, 2 * hidden), float("nan"))
        cuda_gru.launch_rows(driver, kernel, 0, 0, gi, w_hh_t, b_hh, out)
        assert _rel_l2(out, expected) < 1e-6
    assert ctypes.c_int.in_dll(driver.lib, "fake_launches").value == launches + 2
    assert len(driver.functions) == 1


@needs_gxx
def test_driver_errors_are_one_line_with_the_drivers_words(fake_driver):
    driver = fake_driver(32)
    with pytest.raises(RuntimeFailure, match="cuModuleLoadData failed: device kernel image is invalid"):
        driver.function(1, _fake_kernel(32, cubin=b"not an ELF image"))
    gru = _gru(32, seed=0)
    gi, w_hh_t, b_hh = _operands(gru, torch.randn(1, 3, 24))
    out = torch.empty(1, 3, 64)
    wrong_block = _fake_kernel(16)  # 64 threads for a kernel built for 128: the driver refuses the launch
    with pytest.raises(RuntimeFailure, match="cuLaunchKernel failed") as err:
        cuda_gru.launch_rows(driver, wrong_block, 0, 0, gi, w_hh_t, b_hh, out)
    assert "\n" not in str(err.value)


def test_missing_driver_is_one_line(tmp_path):
    with pytest.raises(UnsupportedError, match="needs the CUDA driver"):
        cuda_gru._Driver(str(tmp_path / "libcuda.so.1"))


# --- NVRTC / ptxas ----------------------------------------------------------------------------------------------

@needs_nvrtc
@pytest.mark.parametrize("arch", ["80", "90"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("hidden", [64, 128])
@pytest.mark.parametrize("split", [4, 2])
def test_kernel_compiles_within_its_register_budget(arch, dtype, hidden, split):
    kernel = cuda_gru.compile_kernel(hidden, dtype, arch, split)
    assert kernel.cubin[:4] == b"\x7fELF"
    assert f"sm_{arch}" in kernel.log
    assert kernel.spill_bytes == 0, kernel.log
    # a block of split x H threads must fit the SM's 64K registers (and 255 per thread), and each thread's
    # 3H / split weights must be in them
    assert 3 * hidden // split < kernel.registers <= min(255, 65536 // kernel.threads), kernel.log


def test_ptxas_usage_reads_registers_and_spills():
    log = ("ptxas info    : Function properties for k\nptxas         .     8 bytes stack frame, 12 bytes spill stores, "
           "20 bytes spill loads\nptxas info    : Used 128 registers, used 1 barriers, 1024 bytes smem")
    assert cuda_gru.ptxas_usage(log) == (128, 32)
    assert cuda_gru.ptxas_usage("nothing here") == (-1, -1)


@needs_nvrtc
def test_compile_errors_are_one_line():
    with pytest.raises(RuntimeFailure, match=r"sm_10: .*gpu-architecture") as err:
        cuda_gru.compile_kernel(128, torch.float32, "10")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("hidden", [40, 8, 256])
def test_hidden_sizes_outside_the_kernel_are_refused(hidden):
    with pytest.raises(UnsupportedError, match="multiples of 16 up to 128"):
        cuda_gru.compile_kernel(hidden, torch.float32, "90")


def test_splits_other_than_2_or_4_are_refused():
    with pytest.raises(UnsupportedError, match="2 or 4"):
        GruKernelConfig(kind="cuda", split=8)
    with pytest.raises(UnsupportedError, match="2 or 4 threads, not 3"):
        cuda_gru.compile_kernel(64, torch.float32, "90", split=3)
    assert GruKernelConfig(kind="cuda", split=2).label == "cuda-rows-s2"


def test_cpu_tensors_are_refused_with_one_line():
    gru = _gru(32, seed=0)
    gi, w_hh_t, b_hh = _operands(gru, torch.randn(1, 4, 24))
    with pytest.raises(UnsupportedError, match="CUDA tensors"):
        bigru_recurrence(gi, w_hh_t, b_hh, CUDA_CONFIG)
    assert CUDA_CONFIG.label == "cuda-rows-s2"  # the default split: 2 measured faster than 4


def test_fuse_with_gru_cuda_runs_the_module_on_the_cuda_kernel():
    spec = edgeseq.get_model("cbhg-lite")
    fused = fuse_for_inference(spec.build(), gru="cuda")
    assert isinstance(fused.gru, TritonBiGRU) and fused.gru.config == CUDA_CONFIG
    with pytest.raises(UnsupportedError, match="CUDA tensors"):  # on the CPU: one line, not a crash in ctypes
        fused(torch.from_numpy(spec.example_inputs(batch=1, time=5)[spec.input_names[0]]))


def test_missing_nvrtc_names_the_install(monkeypatch):
    monkeypatch.setattr(cuda_gru, "_nvrtc_candidates", lambda: ["/nonexistent/libnvrtc.so.13"])
    cuda_gru.nvrtc.cache_clear()
    try:
        with pytest.raises(edgeseq.errors.MissingExtraError, match=r"pip install 'edgeseq\[cuda\]'"):
            cuda_gru.nvrtc()
    finally:
        cuda_gru.nvrtc.cache_clear()


# --- CUDA ---------------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize(("dtype", "bar"), [(torch.float32, 1e-5), (torch.float16, 1e-3), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize(("hidden", "batch", "steps"), [(128, 1, 200), (128, 3, 50), (64, 2, 1), (16, 17, 9)])
@pytest.mark.parametrize("split", [4, 2])
def test_cuda_kernel_matches_nn_gru(dtype, bar, hidden, batch, steps, split):
    gru = _gru(hidden, seed=hidden + batch)
    x = torch.randn(batch, steps, 24)
    with torch.no_grad():
        expected = gru(x)[0]
        got = TritonBiGRU(gru, GruKernelConfig(kind="cuda", split=split)).cuda().to(dtype)(x.cuda().to(dtype))
    assert got.dtype == dtype
    got = got.float().cpu()
    assert _rel_l2(got, expected) < bar, _where_it_differs(got, expected, hidden, bar)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", ["cbhg", "cbhg-lite"])
def test_cuda_fused_cbhg_with_the_cuda_kernel_passes_parity(name, precision):
    spec = edgeseq.get_model(name)
    fused = fuse_for_inference(spec.build(), gru="cuda")
    runner = TorchRunner(spec, module=fused, device="cuda", precision=precision)
    result = edgeseq.check(runner, spec, precision=precision, times=(1, 7, 200), batches=(1, 3))
    assert result.passed, result.failures
    assert fused.gru.last_config == CUDA_CONFIG


def test_sass_reader_finds_the_step_loop(monkeypatch):
    """bench/cuda_gru_sass.py: the loop is the backward branch after the last barrier (forward branches inside it,
    predicated instructions and the prologue do not count as loop ends or starts)."""
    import importlib.util

    bench = Path(__file__).parents[1] / "bench"
    monkeypatch.syspath_prepend(str(bench))  # as `python bench/cuda_gru_sass.py` runs it: bench/_common importable
    path = bench / "cuda_gru_sass.py"
    spec = importlib.util.spec_from_file_location("cuda_gru_sass", path)
    sass_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sass_tool)
    sass = """
        /*0000*/                   LDG.E R2, desc[UR4][R2.64] ;
        /*0010*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
.L_x_2:
        /*0020*/                   LDS.128 R4, [R1] ;
        /*0030*/                   FFMA R6, R4, R5, R6 ;
        /*0040*/               @P0 BRA `(.L_x_1) ;
        /*0050*/                   SHFL.BFLY PT, R7, R6, 0x1, 0x1f ;
.L_x_1:
        /*0060*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*0070*/              @!P1 BRA `(.L_x_2) ;
        /*0080*/                   EXIT ;
"""
    loop = sass_tool.step_loop(sass)
    assert len(loop) == 6
    assert sass_tool.opcode_counts(loop) == {"LDS": 1, "FFMA": 1, "BRA": 2, "SHFL": 1, "BAR": 1}
