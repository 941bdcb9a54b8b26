"""`edgeseq` verbs. Each parses its arguments, then calls exactly one public function.

Exit codes: 0 all checks passed, 1 a parity check (or a runtime) failed, 2 bad usage or input, 3 internal error.
`export --format tensorrt` where no engine can be built exits 0 after writing the ONNX and the build plan: the
report lists the artifact as "not run" and says that no engine was built here. `preflight` exits 1 when the ONNX
has nodes TensorRT's parser would reject.
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

from ..artifact import check_output_file, write_text_atomic
from ..errors import EdgeseqError, InputError
from . import args
from .progress import matrix_progress

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Export sequence models to edge formats; check parity and latency against PyTorch.")
PIPE_WIDTH = 200  # piped / logged output (CI, `| tee`): tables at full width, not cropped to rich's 80 columns


def _console(stderr: bool = False) -> Console:
    """A terminal keeps its own width; elsewhere, unless COLUMNS says otherwise, PIPE_WIDTH, so a CI log shows
    'onnxruntime-cpu' and not 'onnxruntime-…'."""
    piped = not Console(stderr=stderr).is_terminal and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, soft_wrap=True, width=PIPE_WIDTH if piped else None)


out = _console()
err = _console(stderr=True)


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
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print edgeseq's version and exit.")] = False):
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
        table.add_row(r["name"], f"{r['parameters']:,}", f"{r['flops_at_default_time'] / 1e9:.3g} @ {r['default_time']}",
                      ", ".join(map(shape, r["inputs"])), ", ".join(map(shape, r["outputs"])))
    out.print(table)


@app.command("devices")
@_handled
def devices_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False):
    """List the device profiles: shipped (devices/*.toml), then this machine's own (e.g. tools/arm64-target's)."""
    from rich.table import Table

    from ..devices import list_profiles

    profiles = [p.to_dict() for p in list_profiles(user=True)]
    if as_json:
        print(json.dumps(profiles, indent=2))
        return
    table = Table(title="edgeseq devices")
    for col in ("name", "runtime", "delegate", "threads", "precisions", "transport", "description"):
        table.add_column(col)
    for p in profiles:
        t = p["transport"]
        where = {"ssh": f"ssh {t['user']}@{t['host']}:{t['port']}", "adb": f"adb {t['serial'] or '(default)'}"}.get(
            t["kind"], "local") + (" (emulated)" if p["emulated"] else "")
        table.add_row(p["name"], p["runtime"], p["delegate"], str(p["threads"] or "default"),
                      ", ".join(p["precisions"]), where, p["description"])
    out.print(table)


@app.command("export")
@_handled
def export_cmd(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="Registered model name, e.g. cbhg-lite, or your own: FILE.py:FACTORY (a factory returning a ModelSpec).")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", help="A recipe .toml or a shipped recipe name (android, jetson, server).")] = None,
    on_device: Annotated[bool, typer.Option("--on-device", help="With --recipe: time each budget on its ssh / adb device and gate on it.")] = False,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write JUnit XML (one case per check and budget).")] = None,
    format: Annotated[Optional[List[str]], typer.Option("--format", "-f", help="Format(s): onnx, tflite, tensorrt (repeat -f for several), or all: every format installed here.")] = None,
    precision: Annotated[Optional[List[str]], typer.Option("--precision", "-p", help="fp32 | fp16 | int8-dynamic | int8-static | all (each format's own).")] = None,
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
    shapes: Annotated[Optional[List[str]], typer.Option(
        "--shapes", help="TensorRT optimization profile NAME=MIN:OPT:MAX, e.g. features=1x1x128:1x200x128:16x1000x128 "
        "(default: from the model).")] = None,
    calibration: Annotated[Optional[Path], typer.Option(
        "--calibration", help="ONNX int8-static: directory of .npy input arrays to calibrate on (default: the "
                              "model's real-speech calibration inputs).")] = None,
    quant: Annotated[Optional[List[str]], typer.Option(
        "--quant", help="Change an ONNX quantization default, KEY=VALUE (repeatable): weight_type=uint8, per_channel=false, "
                        "quant_format=qoperator, calibration_method=percentile, op_types=Conv,MatMul, "
                        "weight_only=GRU, gru=hoisted.")] = None,
    tolerance: args.ToleranceOverrides = None,
    bisect: Annotated[bool, typer.Option(
        "--bisect/--no-bisect", help="Bisect each failing row and name the first PyTorch module that diverged "
                                     "(default: on; costs nothing when every row passes).")] = True,
):
    """Export MODEL (or everything a --recipe names), check parity and latency on every runtime here; writes
    report.json, report.md, report.html (and manifest.json for a recipe).

    fp16 / int8 artifacts are derived from the fp32 one, which is always built with them. `--format tensorrt` on a
    machine without TensorRT (or without a CUDA GPU) writes the TensorRT-ready ONNX and a build plan with the
    trtexec command for the target, says that no engine was built, and exits 0: no parity is claimed for an engine
    that does not exist.
    """
    from ..junit import write_junit
    from ..matrix import MatrixOptions, run_matrix
    from ..models import model_name
    from ..report import print_table

    if recipe is not None:
        if model is not None:
            raise InputError("give either MODEL or --recipe, not both")
        given = {name for name in ctx.params if _given(ctx, name)}
        for name, flag in _RECIPE_SETS.items():
            if name in given:
                raise InputError(f"{flag} cannot be combined with --recipe; set it in the recipe (or export a MODEL "
                                 "without --recipe)")
        overrides = {name: ctx.params[name] for name in ("iterations", "warmup", "threads") if name in given}
        _export_recipe(recipe, out_dir, junit, on_device, bisect=bisect, overrides=overrides,
                       tolerances=dict(args.tolerance_overrides(tolerance)))
        return
    if model is None:
        raise InputError("give a MODEL (see `edgeseq models`) or --recipe FILE")
    if on_device:
        raise InputError("--on-device times a recipe's budgets on its devices; give --recipe FILE")

    precisions = precision or ["fp32"]  # "all": each format's own precisions (run_matrix)
    options = MatrixOptions(times=args.int_list(times, "times"), batches=args.int_list(batches, "batches"),
                            latency_time=latency_time, threads=threads, warmup=warmup, iterations=iterations,
                            opset=opset, exporter=exporter, shapes=tuple(shapes) if shapes else None,
                            quant=tuple(quant or ()),
                            calibration=str(calibration) if calibration is not None else None, bisect=bisect,
                            rel_l2=args.tolerance_overrides(tolerance))
    target = out_dir or Path("edgeseq-out") / model_name(model)
    if junit:
        check_output_file(junit, "--junit")
    with matrix_progress(err) as progress:
        report = run_matrix(model, format or ["onnx"], precisions, out_dir=target, weights=weights, options=options,
                            progress=progress, out_label="--out")  # checks --out before any work
    data = report.to_dict()
    print_table(data, out)
    _print_artifact_notes(data)
    _print_failures(data)
    if "all" in (format or []):
        from ..formats import formats_not_installed

        for fmt, how in formats_not_installed().items():
            out.print(f"-f all left out {fmt.value}: not installed here ({how})", highlight=False)
    if junit:
        write_junit(data, junit)
    html = " and report.html" if (target / "report.html").is_file() else \
        " (report.html needs matplotlib: pip install 'edgeseq[report]')"
    out.print(f"wrote {target / 'report.json'}, report.md{html}", highlight=False)
    raise typer.Exit(0 if report.passed else 1)


# export flags a recipe sets itself: given with --recipe they are refused rather than silently ignored. The others
# apply on top of the recipe: --tolerance, -n / --warmup / --threads (its [latency]), --bisect / --no-bisect.
_RECIPE_SETS = {"format": "--format / -f", "precision": "--precision / -p", "weights": "--weights",
                "times": "--times", "batches": "--batches", "latency_time": "--latency-time", "opset": "--opset",
                "exporter": "--exporter", "shapes": "--shapes", "calibration": "--calibration", "quant": "--quant"}


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed this option (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _export_recipe(name_or_path: str, out_dir: Path | None, junit: Path | None, on_device: bool = False, *,
                   bisect: bool = True, overrides: dict | None = None, tolerances: dict | None = None) -> None:
    """overrides: iterations / warmup / threads given on the command line, replacing the recipe's [latency] ones;
    tolerances: --tolerance, on top of the recipe's [tolerances]. The manifest records the values that ran."""
    import dataclasses

    from ..junit import write_junit
    from ..recipe import builtin_recipe, load_recipe, run_recipe
    from ..report import print_table

    path = Path(name_or_path)
    if not name_or_path.endswith(".toml") and builtin_recipe(name_or_path).is_file():
        path = builtin_recipe(name_or_path)
    recipe = load_recipe(path)
    recipe = dataclasses.replace(recipe, **(overrides or {}), tolerances={**recipe.tolerances, **(tolerances or {})})
    root = out_dir or Path("edgeseq-out")
    if junit:
        check_output_file(junit, "--junit")
    with matrix_progress(err) as progress:
        manifest = run_recipe(recipe, root, progress=progress, on_device=on_device, bisect=bisect,
                              out_label="--out")  # checks --out before any work
    report = manifest.pop("report")
    print_table(report, out)
    _print_artifact_notes(report)
    _print_failures(report)
    for b in manifest["budgets"]:
        shown = f"{b['measured_ms']:.2f} ms" if b["measured_ms"] is not None else "not measured"
        line = f"budget {b['device']} {b['precision']} {b['metric']} <= {b['limit_ms']} ms: {b['status']} ({shown})"
        (err if b["status"] == "fail" else out).print(line + (f": {b['reason']}" if b["reason"] else ""),
                                                     highlight=False)
    baseline = manifest.get("baseline")
    if baseline is not None:
        from ..report_diff import regression_lines

        regressed = regression_lines(baseline)
        for line in regressed:
            err.print(f"regressed against {baseline['old']}: {line}", highlight=False, soft_wrap=True, markup=False)
        if not regressed:
            out.print(f"baseline {baseline['old']}: no regressions in {len(baseline['rows'])} rows", highlight=False,
                      markup=False)
        for note in baseline["notes"]:
            out.print(f"note: baseline: {note}", highlight=False, markup=False)
    if junit:
        write_junit(report, junit, manifest["budgets"], baseline)
    out.print(f"wrote {root / recipe.out / 'manifest.json'}", highlight=False)
    raise typer.Exit(0 if manifest["passed"] else 1)


def _print_artifact_notes(report: dict) -> None:
    """The first note of each artifact, e.g. that no TensorRT engine was built here and the trtexec command."""
    for art in report["artifacts"]:
        for note in art.get("notes", [])[:1]:
            out.print(f"note: {Path(art['path']).name}: {note}", highlight=False, markup=False)


def _print_failures(report: dict, notes: bool = True) -> None:
    """Each failing case, the notes that explain a row (bisection, int8 kernels on this CPU), then (export / recipe)
    the first divergent layer of each failing row. notes=False: the caller printed every note already."""
    from ..report import bisection_lines

    for par in report["parity"]:
        for case in par["cases"]:
            if case["passed"]:
                continue
            why = case["error"] or "; ".join(f"{o['output']}: {o['reason']}" for o in case["outputs"] if not o["passed"])
            err.print(f"FAIL {par['runtime']} batch={case['batch']} T={case['time']} {case['source']}: {why}",
                      highlight=False, soft_wrap=True, markup=False)
        for note in par.get("notes", []) if notes else ():
            if note.startswith(("layer bisection", "int8 kernels")):
                err.print(f"note: {par['runtime']}: {note}", highlight=False, soft_wrap=True, markup=False)
    for line in bisection_lines(report):
        err.print(line.replace("`", ""), highlight=False, soft_wrap=True, markup=False)


@app.command("check")
@_handled
def check_cmd(
    artifact: Annotated[Path, typer.Argument(help="Artifact file (.onnx, .tflite, .engine).")],
    model: args.Model = None,
    weights: args.Weights = None,
    times: args.Times = None,
    batches: args.Batches = None,
    device: args.OneDevice = None,
    threads: args.Threads = None,
    json_out: args.JsonOut = None,
    bisect: Annotated[bool, typer.Option("--bisect", help="On failure, name the first PyTorch module that diverged.")] = False,
    tolerance: args.ToleranceOverrides = None,
):
    """Parity of ARTIFACT against the PyTorch original over a sequence-length x batch sweep."""
    from ..api import check

    if device and len(device) > 1:  # a plain option would keep the last one and check there alone, saying nothing
        raise InputError(f"check runs on one --device (got {len(device)}: {', '.join(device)}); run it once per "
                         "device, or time several side by side with `edgeseq profile`")
    device = device[0] if device else None
    if json_out:
        check_output_file(json_out, "--json")
    overrides = dict(args.tolerance_overrides(tolerance))
    result = check(artifact, model, weights=weights, times=args.int_list(times, "times"),
                   batches=args.int_list(batches, "batches"), device=device, threads=threads, tolerances=overrides)
    data = result.to_dict()
    worst = data["worst"] or {}
    status = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
    out.print(f"{status} {result.model} on {result.runtime} ({result.precision}): {len(result.cases)} cases, worst rel L2 "
              f"{worst.get('rel_l2', float('nan')):.3g}, max abs {worst.get('max_abs', float('nan')):.3g}, "
              f"cosine {worst.get('cosine', float('nan')):.7f}", highlight=False)
    if result.precision.startswith("int8") and result.cpu:
        out.print(f"int8 parity holds per CPU: measured on {result.cpu['model']} ({result.cpu['int8_isa']} int8 "
                  "kernels); run `edgeseq check` on the target (or --device) to prove it there", highlight=False,
                  markup=False)
    for note in result.notes:
        out.print(f"note: {note}", highlight=False, markup=False)
    _print_failures({"parity": [data]}, notes=False)
    if bisect and not result.passed:
        from ..resolve import device_profile as _device_profile, resolve_tolerances
        from ..bisection import bisect as run_bisect
        from ..bisection import verdict
        from ..models import get_model

        spec = get_model(result.model)
        profile = _device_profile(device)  # the limits the check used: a profile's [tolerances] under --tolerance
        tolerances = resolve_tolerances(spec, overrides, device=profile.tolerances if profile else None)
        found = run_bisect(artifact, spec, weights=weights, precision=result.precision, tolerances=tolerances)
        data["bisect"] = found.to_dict()
        out.print(verdict(data["bisect"]), highlight=False, markup=False)
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    raise typer.Exit(0 if result.passed else 1)


@app.command("profile")
@_handled
def profile_cmd(
    artifact: Annotated[Path, typer.Argument(help="Artifact file (.onnx, .tflite): ours or any other.")],
    shape: Annotated[Optional[List[str]], typer.Option("--shape", help="NAME=DxDxD for free dimensions, e.g. features=1x200x128.")] = None,
    model: args.Model = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size of the generated input (edgeseq models).")] = 1,
    time: Annotated[Optional[int], typer.Option("--time", min=1, help="T for edgeseq models (default: model's).")] = None,
    warmup: args.Warmup = 5,
    iterations: args.Iterations = 50,
    budget: Annotated[Optional[float], typer.Option("--budget", min=0.01, help="Stop timing after this many seconds.")] = None,
    device: args.Devices = None,
    threads: args.Threads = None,
    json_out: args.JsonOut = None,
    stages: Annotated[bool, typer.Option(
        "--stages", help="Where the time goes: each top-level stage of the model (bank, highway, gru, ...) in ONNX "
                         "Runtime's profiler (next to PyTorch eager here), with its share of the FLOPs; .onnx, on "
                         "this machine's CPU or one ssh --device.")
    ] = False,
):
    """Latency of ARTIFACT: p50/p90/p99, throughput, real-time factor, peak RSS; on several devices side by side;
    per stage of the model with --stages."""
    from ..inputs import parse_shapes

    if json_out:
        check_output_file(json_out, "--json")
    if stages:
        if (device and len(device) > 1) or shape or budget is not None:
            raise InputError("--stages profiles an .onnx at the model's own input on one device (this machine's "
                             "CPU or an ssh device); drop --shape / --budget / the extra --device")
        _profile_stages(artifact, model, batch, time, threads, warmup, min(iterations, 50), json_out,
                        device[0] if device else None)
        return

    options = dict(model=model, shapes=parse_shapes(shape), batch=batch, time=time, warmup=warmup,
                   iterations=iterations, budget_s=budget, threads=threads)
    if device and len(device) > 1:
        _profile_devices(artifact, device, options, json_out)
        return
    from ..api import profile

    result = profile(artifact, device=device[0] if device else None, **options)
    data = result.to_dict()
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    out.print(
        f"{result.runtime} batch={result.batch} T={result.time}: p50 {result.p50_ms:.3f} ms, p90 {result.p90_ms:.3f} ms, "
        f"p99 {result.p99_ms:.3f} ms, mean {result.mean_ms:.3f} ms over {result.iterations} runs; "
        f"{result.frames_per_s:,.0f} frames/s, " + (f"RTF {result.rtf:.4f}, " if result.rtf is not None else "")
        + f"peak RSS {result.peak_rss_mb:.0f} MB",
        highlight=False,
    )
    if result.emulated:
        from ..latency import EMULATED_NOTE

        out.print(f"note: {EMULATED_NOTE}", highlight=False, markup=False)
    if result.note:
        out.print(f"note: {escape(result.note)}", highlight=False)


def _profile_stages(artifact: Path, model, batch: int, time: int | None, threads: int | None, warmup: int,
                    iterations: int, json_out: Path | None, device: str | None) -> None:
    from rich.table import Table

    from ..stage_profile import profile_stages

    where = f"on {device}" if device not in (None, "cpu") else "in ONNX Runtime and PyTorch eager"
    with err.status(f"profiling each stage {where}"):
        result = profile_stages(artifact, model, batch=batch, time=time, threads=threads, warmup=warmup,
                                iterations=iterations, device=device)
    data = result.to_dict()
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    eager = result.eager_total_ms is not None
    table = Table(title=f"where the time goes: {result.model} on {result.runtime}, batch={result.batch} "
                        f"T={result.time}, threads={result.threads or 'default'}, median of {result.iterations} runs")
    columns = ["stage", "FLOPs %", "onnxruntime ms", "%"] + (["eager ms", "%", "eager / onnxruntime"] if eager else [])
    for col in columns:
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for row in result.rows:
        cells = [row.stage, f"{row.flops_share_pct:.1f}", f"{row.onnxruntime_ms:.3f}", f"{row.onnxruntime_share_pct:.1f}"]
        if eager:
            cells += [f"{row.eager_ms:.3f}", f"{row.eager_share_pct:.1f}", f"{row.speedup:.2f}" if row.speedup else "-"]
        table.add_row(*cells)
    total = ["total", "100.0", f"{result.onnxruntime_total_ms:.3f}", "100.0"]
    if eager:
        total += [f"{result.eager_total_ms:.3f}", "100.0", f"{result.eager_total_ms / result.onnxruntime_total_ms:.2f}"
                  if result.onnxruntime_total_ms else "-"]
    table.add_row(*total, style="bold")
    out.print(table)
    top = list(result.onnxruntime_op_types_ms.items())[:6]
    out.print("onnxruntime by op type: " + ", ".join(f"{op} {ms:.3f} ms" for op, ms in top), highlight=False,
              markup=False)


_SIDE_BY_SIDE = (
    ("runtime", lambda r: r.runtime + (" (emulated)" if r.emulated else "")),
    ("batch x T", lambda r: f"{r.batch} x {r.time}"),
    ("threads", lambda r: str(r.threads or "default")),
    ("p50 ms", lambda r: f"{r.p50_ms:.3f}"),
    ("p90 ms", lambda r: f"{r.p90_ms:.3f}"),
    ("p99 ms", lambda r: f"{r.p99_ms:.3f}"),
    ("mean ms", lambda r: f"{r.mean_ms:.3f}"),
    ("runs", lambda r: str(r.iterations)),
    ("frames/s", lambda r: f"{r.frames_per_s:,.0f}"),
    ("RTF", lambda r: f"{r.rtf:.4f}" if r.rtf is not None else "-"),
    ("peak RSS MB", lambda r: f"{r.peak_rss_mb:.0f}"),
)


def _profile_devices(artifact: Path, devices: list[str], options: dict, json_out: Path | None) -> None:
    """Several devices at once: one column per device; a device that failed shows its error and sets the exit code."""
    from rich.table import Table

    from ..api import profile_many

    with err.status(f"profiling on {len(devices)} devices"):
        answers = profile_many(artifact, devices, **options)
    data = {"artifact": str(artifact), "devices": [a.to_dict() for a in answers]}
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    table = Table(title=f"latency of {artifact.name}")
    table.add_column("")
    for a in answers:
        table.add_column(a.device, justify="right")
    for label, cell in _SIDE_BY_SIDE:
        table.add_row(label, *(cell(a.result) if a.result else ("error" if label == "runtime" else "")
                               for a in answers))
    out.print(table)
    if any(a.result and a.result.emulated for a in answers):
        from ..latency import EMULATED_NOTE

        out.print(f"note: (emulated) = {EMULATED_NOTE}", highlight=False, markup=False)
    for a in answers:
        if a.result and a.result.note:
            out.print(f"note ({escape(a.device)}): {escape(a.result.note)}", highlight=False)
        if a.error:
            err.print(f"[bold red]error:[/] {escape(a.device)}: {escape(a.error)}", highlight=False, soft_wrap=True)
    worst = max((a.exit_code for a in answers), default=0)
    if worst:
        raise typer.Exit(worst)


@app.command("diff")
@_handled
def diff_cmd(
    old: Annotated[Path, typer.Argument(help="The earlier report.json (or the folder holding it).")],
    new: Annotated[Path, typer.Argument(help="The later report.json (or the folder holding it).")],
    max_slowdown: Annotated[Optional[float], typer.Option(
        "--max-slowdown", help="Fail when a row got more than this many times slower, e.g. 1.2: its p50 relative "
                                "to PyTorch eager in the same report (same machine only).")] = None,
    max_error_growth: Annotated[Optional[float], typer.Option(
        "--max-error-growth", help="Fail when a passing row's worst rel L2 grew by more than this ratio.")] = None,
    json_out: args.JsonOut = None,
    md_out: Annotated[Optional[Path], typer.Option(
        "--md", help="Also write the comparison as Markdown (a pull-request comment, a CI summary).")] = None,
):
    """Compare two export reports row by row: parity, worst error, p50 and size; exit 1 on a regression."""
    from rich.table import Table

    from ..report import load_report
    from ..report_diff import diff_reports, render_diff, render_diff_markdown

    def resolve(path: Path) -> Path:
        return path / "report.json" if path.is_dir() else path

    old_path, new_path = resolve(old), resolve(new)
    for path in (old_path, new_path):
        if not path.exists():
            raise InputError(f"{str(path)!r} does not exist")
    for path, flag in ((json_out, "--json"), (md_out, "--md")):
        if path:
            check_output_file(path, flag)
    result = diff_reports(load_report(old_path), load_report(new_path), max_slowdown=max_slowdown,
                          max_error_growth=max_error_growth, old_label=str(old_path), new_label=str(new_path))
    data = result.to_dict()
    header, *rows = render_diff(data)
    table = Table(title=f"edgeseq diff: {result.model}", show_lines=False)
    for col in header:
        table.add_column(col, no_wrap=col != "why")
    styles = {"regressed": "red", "improved": "green"}
    for row in rows:
        table.add_row(*row, style=styles.get(row[0]))
    out.print(table)
    for note in result.notes:
        out.print(f"note: {note}", highlight=False, markup=False)
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    if md_out:
        write_text_atomic(md_out, render_diff_markdown(data))
    regressed = [r for r in result.rows if r.status == "regressed"]
    out.print(f"{len(regressed)} of {len(result.rows)} rows regressed" if regressed else
              f"no regressions in {len(result.rows)} rows", highlight=False)
    raise typer.Exit(1 if regressed else 0)


@app.command("preflight")
@_handled
def preflight_cmd(
    onnx_file: Annotated[Path, typer.Argument(help="ONNX model to check against TensorRT's ONNX parser support.")],
    json_out: args.JsonOut = None,
):
    """Name the nodes of an ONNX model that TensorRT's ONNX parser would reject (no TensorRT needed); exit 1 if any."""
    from ..formats.tensorrt import preflight

    if json_out:
        check_output_file(json_out, "--json")
    result = preflight(onnx_file)
    data = result.to_dict()
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    out.print(f"{'OK' if result.ok else 'UNSUPPORTED'} {onnx_file.name}: {result.summary()}", highlight=False,
              markup=False)
    for issue in result.issues:
        out.print(f"- {issue}", highlight=False, markup=False)
    for warning in result.warnings:
        out.print(f"warning: {warning}", highlight=False, markup=False)
    raise typer.Exit(0 if result.ok else 1)


def main() -> None:
    """The console script. Usage errors (an unknown option, a value out of range) are one line naming the help
    command, like every other bad input, instead of click's usage panel; `edgeseq` alone still prints the help."""
    import sys

    try:
        code = app(prog_name="edgeseq", standalone_mode=False)
    except typer.Abort:
        err.print("interrupted")
        code = 130
    except Exception as exc:  # click's (vendored by typer) ClickException family: format_message / exit_code / show
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
        else:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "edgeseq"
            message = " ".join(exc.format_message().split())
            err.print(f"[bold red]error:[/] {escape(message)} (see: {escape(where)} --help)", highlight=False,
                      soft_wrap=True)
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)
