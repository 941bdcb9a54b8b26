"""What the bench scripts share, so that every benchmark names, records, times and prints its results one way.

A script imports from it before anything else (`from _common import ...`: Python puts a script's own folder at the
head of sys.path). Importing it puts this checkout ahead of any installed edgeseq, so a benchmark measures the code
beside it, installed or not.
It stays light: numpy, torch and edgeseq are imported inside the helpers that need them.

Results of new runs are named after the machine whose numbers they are (`results_path`):

    bench/results/<name>-<machine>-<cpu features>.json   CPU benches, e.g. int8-cpus-x86_64-x86-avx2.json
    bench/results/<name>-<card>.json                     GPU benches, e.g. triton-gru-probe-nvidia-h200.json

<machine> is platform.machine(); <cpu features> is the CPU's int8 kernel family (edgeseq.environment.int8_isa:
x86-avx2, x86-avx512-vnni, arm64-dotprod, ...), the feature that decides whether a CPU result carries over to another
CPU; <card> is the GPU's name as torch reports it, in lower case with dashes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
if str(ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(ROOT))

SPEECH_T = (7, 50, 200, 1000)  # the parity cases of the quantization benches: real speech at batch 1 ...
RANDOM_T = (1, 50)  # ... and random normal inputs at batch 3


# ---- where results go -----------------------------------------------------------------------------------------------

def slug(text: str) -> str:
    """'NVIDIA H200' -> 'nvidia-h200': a name fit for a file name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_tag() -> str:
    """<machine>-<cpu features> of this host, e.g. x86_64-x86-avx2."""
    from edgeseq.environment import int8_isa

    machine = re.sub(r"[^a-z0-9_]+", "-", platform.machine().lower()).strip("-") or "unknown"  # x86_64 stays
    return f"{machine}-{int8_isa()}"


def card_tag() -> str:
    """The name of the GPU torch sees first, e.g. nvidia-h200 ('cpu' without one: a dry run)."""
    import torch

    return slug(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else "cpu"


def results_path(name: str, tag: str | None = None) -> Path:
    """bench/results/<name>-<tag>.json; tag defaults to this host's machine_tag()."""
    return RESULTS / f"{name}-{tag or machine_tag()}.json"


# ---- what a result records ------------------------------------------------------------------------------------------

def _git(*argv: str) -> str | None:
    try:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_state() -> dict:
    """The commit the numbers belong to, and whether edgeseq/ had uncommitted changes (then the numbers may come
    from code that no commit holds)."""
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", "edgeseq")
    return {"commit": _git("rev-parse", "HEAD"), "edgeseq_dirty": None if dirty is None else bool(dirty)}


def git_commit() -> str | None:
    """git_state() as one string: the commit, with "-dirty" when edgeseq/ had uncommitted changes."""
    state = git_state()
    return state["commit"] and state["commit"] + ("-dirty" if state["edgeseq_dirty"] else "")


def command_line() -> str:
    return " ".join(["python", *sys.argv])


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jsonable(obj):
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return str(obj)  # paths and the like


def write_json(out: Path | str, data: dict, say: bool = True) -> Path:
    """`data` as indented JSON at `out` (folders made), and (say) one 'wrote' line on stderr."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
    if say:
        print(f"wrote {out}", file=sys.stderr)
    return out


def write_report(out: Path | None, name: str, started: float, environment: dict, settings: dict,
                 results: list) -> None:
    """The record of a benchmark run: what ran (name), where (environment), how (settings: the git state and the
    command line added), when and how long (started: time.perf_counter() at the start), and the results."""
    if out is None:
        return
    write_json(out, {"benchmark": name, "created": utc_now(), "wall_seconds": round(time.perf_counter() - started, 1),
                     "environment": environment,
                     "settings": {**settings, "git": git_state(), "command": command_line()},
                     "results": results})


# ---- printing -------------------------------------------------------------------------------------------------------

def format_table(header: list[str] | tuple[str, ...], rows, title: str | None = None) -> str:
    """Plain-text columns, left-aligned, widths from the widest cell: readable in a terminal and in a log file."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(([title] if title else []) + lines)


def print_table(header, rows, title: str | None = None) -> None:
    print("\n" + format_table(header, rows, title), flush=True)


# ---- the machine while we measure -----------------------------------------------------------------------------------

class ForeignLoad:
    """CPU time other processes used while a block ran, as a share of the machine (0 = we had it to ourselves).

    Busy jiffies from /proc/stat minus this process's own CPU time; Linux only (None elsewhere).
    """

    def __enter__(self) -> "ForeignLoad":
        self.share = None
        self._start = (_busy_seconds(), _own_seconds(), time.perf_counter())
        return self

    def __exit__(self, *exc) -> None:
        busy0, own0, t0 = self._start
        busy1, own1, t1 = _busy_seconds(), _own_seconds(), time.perf_counter()
        if busy0 is None or busy1 is None or t1 <= t0:
            return
        foreign = max(0.0, (busy1 - busy0) - (own1 - own0))
        self.share = min(1.0, foreign / ((t1 - t0) * (os.cpu_count() or 1)))


def _busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal; guest time is already in user


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def add_timing_arguments(p, rounds: int = 10, iterations: int = 10) -> None:
    """--threads, --rounds, --iterations, --quick and --out, as every interleaved-timing bench takes them."""
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=rounds, help=f"interleaved rounds (default {rounds})")
    p.add_argument("--iterations", type=int, default=iterations,
                   help=f"timed runs per runner per round (default {iterations})")
    p.add_argument("--quick", action="store_true", help="3 rounds of 3; nothing written unless --out")
    p.add_argument("--out", type=Path, default=None)


def timing_out(args, name: str) -> Path | None:
    """Where the results go (None for a --quick smoke run without --out); --quick also cuts the rounds to 3 of 3."""
    if args.quick:
        args.rounds, args.iterations = 3, 3
    return args.out if args.out is not None else (None if args.quick else results_path(name))


def interleaved_p50(a, b, feed, rounds: int, iterations: int) -> tuple[float, float, float | None]:
    """p50 ms of runner a and runner b, timed in alternating rounds so that load from other processes falls on both
    alike; also that load (ForeignLoad.share) meanwhile."""
    for runner in (a, b):
        for _ in range(3):
            runner.infer(feed)
    times = {id(a): [], id(b): []}
    with ForeignLoad() as load:
        for _ in range(rounds):
            for runner in (a, b):
                for _ in range(iterations):
                    t0 = time.perf_counter()
                    runner.infer(feed)
                    times[id(runner)].append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times[id(a)]), statistics.median(times[id(b)]), load.share


# ---- errors against the PyTorch original ----------------------------------------------------------------------------

def loose_tolerance():
    """A tolerance no error fails (rel L2 inf): the benches measure errors; the tests gate on them."""
    from edgeseq.parity import Tolerance

    return Tolerance(rel_l2=float("inf"))


def feeds_for(spec) -> list[tuple[str, int, int, dict]]:
    """(source, batch, T, feed): real speech at SPEECH_T (batch 1) and random inputs at RANDOM_T (batch 3)."""
    feeds = [("speech", 1, t, spec.example_inputs(batch=1, time=t, source="speech", seed=11)) for t in SPEECH_T]
    feeds += [("random", 3, t, spec.example_inputs(batch=3, time=t, source="random", seed=12)) for t in RANDOM_T]
    return feeds


def errors(runner, feeds, refs) -> list[dict]:
    """max abs, rel L2, cosine and SNR of runner's outputs against refs (the original's outputs), per case."""
    from edgeseq.parity import compare

    loose, out = loose_tolerance(), []
    for (source, batch, t, feed), ref in zip(feeds, refs):
        got = runner.infer(feed)
        for name, want in ref.items():
            e = compare(name, want, got[name], loose)
            out.append({"source": source, "batch": batch, "time": t, "output": name, "max_abs": e.max_abs,
                        "rel_l2": e.rel_l2, "cosine": e.cosine, "snr_db": e.snr_db})
    return out


def worst(errs, source=None) -> dict:
    """The worst of each measure over errors() rows (of one source: 'speech' / 'random', or all)."""
    rows = [e for e in errs if source is None or e["source"] == source]
    return {"max_abs": max(e["max_abs"] for e in rows), "rel_l2": max(e["rel_l2"] for e in rows),
            "cosine": min(e["cosine"] for e in rows), "snr_db": min(e["snr_db"] for e in rows)}


# ---- GPU: one way to time a CUDA graph ------------------------------------------------------------------------------

def require_gpu(what: str = "this benchmark") -> str | None:
    """None when torch sees a CUDA GPU, else the one-line error to print (exit 2) instead of a traceback."""
    import torch

    if torch.cuda.is_available():
        return None
    return f"error: {what} needs a CUDA GPU and torch sees none; run it on a GPU machine"


def event_times_ms(step, iterations: int) -> list[float]:
    """Device time of each of `iterations` calls of step(), each between two CUDA events and synchronized."""
    import torch

    times = []
    for _ in range(iterations):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def capture(fn, warmup: int = 3):
    """fn() captured in a torch.cuda.CUDAGraph after `warmup` calls on a side stream (cuDNN / cuBLAS workspaces and
    Triton compiles happen there, outside the capture)."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def graph_times_ms(fn, iterations: int, replays: int = 10) -> list[float]:
    """Per-replay device times of a CUDA graph of fn(), after `replays` untimed replays."""
    import torch

    graph = capture(fn)
    for _ in range(replays):
        graph.replay()
    torch.cuda.synchronize()
    return event_times_ms(graph.replay, iterations)


def graph_p50_ms(fn, iterations: int) -> float:
    """Median device time of one replay of a CUDA graph of fn()."""
    return float(statistics.median(graph_times_ms(fn, iterations)))


# ---- helpers kept with the tests ------------------------------------------------------------------------------------

def tests_module(name: str):
    """tests/<name>.py imported by path (e.g. fuzz_targets, which the tests and fuzz_loaders.py share)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
