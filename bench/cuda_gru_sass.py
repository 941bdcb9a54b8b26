"""What the CUDA GRU kernel (edgeseq/kernels/cuda_gru.cu) costs per step, read from its machine code, no GPU needed.

    python bench/cuda_gru_sass.py [--arch 90] [--clock-ghz 1.98]     # -> bench/results/cuda-gru-sass-sm<arch>.json

The result is named after the GPU architecture it describes (sm_90), not the machine that compiled it.
For each hidden size, split and dtype it compiles the kernel with NVRTC (edgeseq.kernels.cuda_gru.compile_kernel),
disassembles the cubin with nvdisasm (`pip install nvidia-cuda-nvdisasm`, or a CUDA toolkit on the PATH), finds
the time-step loop (the backward branch after the last barrier) and counts its instructions per thread by opcode.
A warp issues one instruction per cycle per scheduler and an SM has four schedulers, so instructions per step x
warps per scheduler is the issue-bound floor of one step in cycles; divided by the clock it is a floor in us, not
a prediction: latency the warps cannot hide (shuffles, MUFU, the barrier) comes on top. The measured numbers come
from bench/triton_gru_probe.py on a GPU (`cuda-rows-s4` / `-s2` rows).
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

# _common first: it puts this checkout's edgeseq ahead of an installed one
from _common import print_table, results_path, write_json

import torch

from edgeseq.kernels import cuda_gru

DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(\.[A-Z0-9_.]+)?")
LABEL = re.compile(r"^(\.L_x_\d+):")
BRANCH_TARGET = re.compile(r"BRA\s+`\((\.L_x_\d+)\)")


def find_nvdisasm() -> str | None:
    found = shutil.which("nvdisasm")
    if found:
        return found
    homes = [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    candidates = [os.path.join(h, "bin", "nvdisasm") for h in homes if h]
    for base in {sysconfig.get_paths()["purelib"], *sys.path}:
        candidates += glob.glob(os.path.join(base, "nvidia", "*", "bin", "nvdisasm"))
    return next((c for c in candidates if os.path.isfile(c) and os.access(c, os.X_OK)), None)


def step_loop(sass: str) -> list[str]:
    """The instructions of the time-step loop: from the label a backward branch after the last barrier jumps to,
    to that branch."""
    lines = sass.splitlines()
    bars = [i for i, line in enumerate(lines) if "BAR.SYNC" in line]
    if not bars:
        raise ValueError("no barrier in the kernel")
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := LABEL.match(line))}
    for i in range(bars[-1], len(lines)):
        m = BRANCH_TARGET.search(lines[i])
        if m and labels.get(m.group(1), len(lines)) < bars[-1]:
            return [line for line in lines[labels[m.group(1)]:i + 1] if INSTRUCTION.match(line)]
    raise ValueError("no backward branch after the last barrier")


def opcode_counts(instructions: list[str]) -> collections.Counter:
    return collections.Counter(INSTRUCTION.match(line).group(2) for line in instructions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90", help="compute capability to compile for (default 90: H100 / H200)")
    parser.add_argument("--clock-ghz", type=float, default=1.98, help="SM clock for the us floor (H100/H200 boost)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/cuda-gru-sass-sm<arch>.json)")
    args = parser.parse_args()
    nvdisasm = find_nvdisasm()
    if nvdisasm is None:
        print("error: nvdisasm not found; pip install nvidia-cuda-nvdisasm (or put a CUDA toolkit on the PATH)",
              file=sys.stderr)
        return 2
    version = subprocess.run([nvdisasm, "--version"], check=False, capture_output=True,
                             text=True).stdout.strip().splitlines()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for hidden in args.hidden:
            for split in cuda_gru.SPLITS:
                for name, dtype in DTYPES.items():
                    kernel = cuda_gru.compile_kernel(hidden, dtype, args.arch, split)
                    cubin = Path(tmp) / f"h{hidden}s{split}{name}.cubin"
                    cubin.write_bytes(kernel.cubin)
                    sass = subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True,
                                          check=True).stdout
                    loop = step_loop(sass)
                    ops = opcode_counts(loop)
                    warps = kernel.threads // 32
                    per_scheduler = len(loop) * warps / 4
                    rows.append({
                        "hidden": hidden, "split": split, "dtype": name, "arch": f"sm_{args.arch}",
                        "threads": kernel.threads, "registers": kernel.registers, "spill_bytes": kernel.spill_bytes,
                        "loop_instructions": len(loop), "warps": warps, "issue_cycles_per_step": per_scheduler,
                        "floor_us_per_step": per_scheduler / (args.clock_ghz * 1e3),
                        "opcodes": dict(ops.most_common()),
                    })
    result = {"nvrtc": cuda_gru.nvrtc_version(), "nvdisasm": version[-1] if version else "?",
              "clock_ghz": args.clock_ghz, "rows": rows,
              "note": "issue-bound floor from instruction counts, not a measurement"}
    out = write_json(args.out or results_path("cuda-gru-sass", f"sm{args.arch}"), result, say=False)
    print_table(("hidden", "split", "dtype", "threads", "regs", "spill", "instr/step", "FFMA", "LDS", "SHFL", "MUFU",
                 "BAR", "cycles", "floor us"),
                [(r["hidden"], r["split"], r["dtype"], r["threads"], r["registers"], r["spill_bytes"],
                  r["loop_instructions"], *(r["opcodes"].get(op, 0) for op in ("FFMA", "LDS", "SHFL", "MUFU", "BAR")),
                  f"{r['issue_cycles_per_step']:.0f}", f"{r['floor_us_per_step']:.3f}") for r in rows])
    print(f"floor = instructions per step x warps / 4 schedulers / {args.clock_ghz} GHz; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
