"""`edgeseq` verbs. Each parses its arguments, then calls exactly one public function.

Exit codes: 0 all checks passed, 1 a parity check (or a runtime) failed, 2 bad usage or input, 3 internal error.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..artifact import write_text_atomic
from ..errors import EdgeseqError
from . import args

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Export sequence models to edge formats; check parity and latency against PyTorch.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _handled(fn):
    """One line and a documented exit code for every failure; a traceback only with EDGESEQ_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except typer.Exit:
            raise
        except EdgeseqError as exc:  # escaped: "features[batch x time x 128]" is not rich markup
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug in edgeseq or a library: still one line unless asked for more
            if os.environ.get("EDGESEQ_DEBUG"):
                raise
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
                      "(set EDGESEQ_DEBUG=1 for a traceback)",
                      highlight=False, soft_wrap=True)
            raise typer.Exit(3) from None

    return wrapper


def _version(value: bool):
    if value:
        from .._version import __version__

        out.print(f"edgeseq {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False):
    """edgeseq command line."""


@app.command("models")
@_handled
def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False):
    """List the registered reference models with parameters and FLOPs."""
    from rich.table import Table

    from ..models import list_models

    rows = [spec.summary() for spec in list_models()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="edgeseq models")
    for col in ("name", "parameters", "GFLOP @ T", "input", "output"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        shape = lambda t: f"{t['name']}[{'x'.join(map(str, t['shape']))}]"  # noqa: E731
        table.add_row(r["name"], f"{r['parameters']:,}", f"{r['flops_at_default_time'] / 1e9:.3f} @ {r['default_time']}",
                      ", ".join(map(shape, r["inputs"])), ", ".join(map(shape, r["outputs"])))
    out.print(table)


@app.command("export")
@_handled
def export_cmd(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. cbhg-lite.")],
    format: Annotated[Optional[List[str]], typer.Option("--format", "-f", help="Format(s): onnx.")] = None,
    precision: Annotated[Optional[List[str]], typer.Option("--precision", "-p", help="fp32 | fp16 | int8-dynamic | int8-static | all.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: edgeseq-out/MODEL).")] = None,
    weights: args.Weights = None,
    times: args.Times = None,
    batches: args.Batches = None,
    latency_time: Annotated[Optional[int], typer.Option("--latency-time", min=1, help="T used for latency.")] = None,
    threads: args.Threads = None,
    warmup: args.Warmup = 5,
    iterations: args.Iterations = 30,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 17,
    exporter: Annotated[str, typer.Option("--exporter", help="ONNX exporter: torchscript | dynamo.")] = "torchscript",
    calibration: Annotated[Optional[Path], typer.Option(
        "--calibration", help="int8-static: directory of .npy input arrays to calibrate on (default: the model's "
                              "real-speech calibration inputs).")] = None,
    quant: Annotated[Optional[List[str]], typer.Option(
        "--quant", help="Change a quantization default, KEY=VALUE (repeatable): weight_type=uint8, per_channel=false, "
                        "quant_format=qoperator, calibration_method=percentile, op_types=Conv,MatMul, "
                        "weight_only=GRU, gru=hoisted.")] = None,
):
    """Export MODEL, then check parity and latency on every runtime here; writes report.json and report.md.

    fp16 / int8 artifacts are derived from the fp32 one, which is always built with them."""
    from ..enums import Precision
    from ..matrix import MatrixOptions, run_matrix
    from ..report import print_table

    precisions = precision or ["fp32"]
    if "all" in precisions:
        precisions = [p.value for p in Precision]
    options = MatrixOptions(times=args.int_list(times, "times"), batches=args.int_list(batches, "batches"),
                            latency_time=latency_time, threads=threads, warmup=warmup, iterations=iterations,
                            opset=opset, exporter=exporter, quant=tuple(quant or ()),
                            calibration=str(calibration) if calibration is not None else None)
    target = out_dir or Path("edgeseq-out") / model
    with err.status("starting") as status:
        report = run_matrix(model, format or ["onnx"], precisions, out_dir=target, weights=weights, options=options,
                            progress=lambda msg: status.update(msg))
    data = report.to_dict()
    print_table(data, out)
    _print_failures(data["parity"])
    out.print(f"wrote {target / 'report.json'} and {target / 'report.md'}", highlight=False)
    raise typer.Exit(0 if report.passed else 1)


def _print_failures(parity: list[dict]) -> None:
    for par in parity:
        for case in par["cases"]:
            if case["passed"]:
                continue
            why = case["error"] or "; ".join(f"{o['output']}: {o['reason']}" for o in case["outputs"] if not o["passed"])
            err.print(f"FAIL {par['runtime']} batch={case['batch']} T={case['time']} {case['source']}: {why}",
                      highlight=False, soft_wrap=True)


@app.command("check")
@_handled
def check_cmd(
    artifact: Annotated[Path, typer.Argument(help="Artifact file (.onnx).")],
    model: args.Model = None,
    weights: args.Weights = None,
    times: args.Times = None,
    batches: args.Batches = None,
    device: args.Device = None,
    threads: args.Threads = None,
    json_out: args.JsonOut = None,
):
    """Parity of ARTIFACT against the PyTorch original over a sequence-length x batch sweep."""
    from ..api import check

    result = check(artifact, model, weights=weights, times=args.int_list(times, "times"),
                   batches=args.int_list(batches, "batches"), device=device, threads=threads)
    data = result.to_dict()
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    worst = data["worst"] or {}
    status = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
    out.print(f"{status} {result.model} on {result.runtime} ({result.precision}): {len(result.cases)} cases, worst rel L2 "
              f"{worst.get('rel_l2', float('nan')):.3g}, max abs {worst.get('max_abs', float('nan')):.3g}, "
              f"cosine {worst.get('cosine', float('nan')):.7f}", highlight=False)
    for note in result.notes:
        out.print(f"note: {note}", highlight=False)
    _print_failures([data])
    raise typer.Exit(0 if result.passed else 1)


@app.command("profile")
@_handled
def profile_cmd(
    artifact: Annotated[Path, typer.Argument(help="Artifact file (.onnx): ours or any other.")],
    shape: Annotated[Optional[List[str]], typer.Option("--shape", help="NAME=DxDxD for free dimensions, e.g. features=1x200x128.")] = None,
    model: args.Model = None,
    batch: Annotated[int, typer.Option("--batch", min=1)] = 1,
    time: Annotated[Optional[int], typer.Option("--time", min=1, help="T for edgeseq models (default: model's).")] = None,
    warmup: args.Warmup = 5,
    iterations: args.Iterations = 50,
    budget: Annotated[Optional[float], typer.Option("--budget", min=0.01, help="Stop timing after this many seconds.")] = None,
    device: args.Device = None,
    threads: args.Threads = None,
    json_out: args.JsonOut = None,
):
    """Latency of ARTIFACT: p50/p90/p99, throughput, real-time factor, peak RSS."""
    from ..api import profile
    from ..inputs import parse_shapes

    result = profile(artifact, model=model, shapes=parse_shapes(shape), batch=batch, time=time, warmup=warmup,
                     iterations=iterations, budget_s=budget, device=device, threads=threads)
    data = result.to_dict()
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    out.print(
        f"{result.runtime} batch={result.batch} T={result.time}: p50 {result.p50_ms:.3f} ms, p90 {result.p90_ms:.3f} ms, "
        f"p99 {result.p99_ms:.3f} ms, mean {result.mean_ms:.3f} ms over {result.iterations} runs; "
        f"{result.frames_per_s:,.0f} frames/s, RTF {result.rtf:.4f}, peak RSS {result.peak_rss_mb:.0f} MB",
        highlight=False,
    )


def main() -> None:
    app()
