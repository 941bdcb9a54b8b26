"""`edgeseq export`: the matrix for one MODEL (formats x precisions x runtimes here), or everything a --recipe
names; prints the table and writes report.json / .md / .html (and a recipe's manifest.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..artifact import validate_output_file
from ..errors import InputError
from . import args
from .console import err, out, print_artifact_notes, print_failures, say
from .progress import matrix_progress

HTML_HINT = " (report.html needs matplotlib: pip install 'edgeseq[report]')"

# export flags a recipe sets itself: given with --recipe they are refused rather than silently ignored. The others
# apply on top of the recipe: --tolerance, -n / --warmup / --threads (its [latency]), --bisect / --no-bisect.
_RECIPE_SETS = {"format": "--format / -f", "precision": "--precision / -p", "weights": "--weights",
                "times": "--times", "batches": "--batches", "latency_time": "--latency-time", "opset": "--opset",
                "exporter": "--exporter", "shapes": "--shapes", "calibration": "--calibration", "quant": "--quant"}


def export_cmd(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="Registered model name, e.g. cbhg-lite, or your own: FILE.py:FACTORY (a factory returning a ModelSpec).")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", help="A recipe .toml or a shipped recipe name (android, ios, jetson, server).")] = None,
    on_device: Annotated[bool, typer.Option("--on-device", help="With --recipe: time each budget on its ssh / adb device and gate on it.")] = False,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write JUnit XML (one case per check and budget).")] = None,
    format: Annotated[Optional[List[str]], typer.Option("--format", "-f", help="Format(s): onnx, tflite, tensorrt, ort, coreml (repeat -f for several), or all: every format installed here.")] = None,
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
    from ..matrix import MatrixOptions, run_matrix
    from ..models import model_name
    from ..report import print_table, write_junit

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
        validate_output_file(junit, "--junit")
    with matrix_progress(err) as progress:
        report = run_matrix(model, format or ["onnx"], precisions, out_dir=target, weights=weights, options=options,
                            progress=progress, out_label="--out")  # checks --out before any work
    data = report.to_dict()
    print_table(data, out)
    print_artifact_notes(data)
    print_failures(data)
    if "all" in (format or []):
        from ..formats import formats_not_installed

        for fmt, how in formats_not_installed().items():
            say(f"-f all left out {fmt.value}: not installed here ({how})")
    if junit:
        write_junit(data, junit)
    html = " and report.html" if (target / "report.html").is_file() else HTML_HINT
    say(f"wrote {target / 'report.json'}, report.md{html}")
    raise typer.Exit(0 if report.passed else 1)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed this option (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _export_recipe(name_or_path: str, out_dir: Path | None, junit: Path | None, on_device: bool = False, *,
                   bisect: bool = True, overrides: dict | None = None, tolerances: dict | None = None) -> None:
    """overrides: iterations / warmup / threads given on the command line, replacing the recipe's [latency] ones;
    tolerances: --tolerance, on top of the recipe's [tolerances]. The manifest records the values that ran."""
    import dataclasses

    from ..recipe import builtin_recipe, load_recipe, run_recipe
    from ..report import print_table, regression_lines, write_junit

    path = Path(name_or_path)
    if not name_or_path.endswith(".toml") and builtin_recipe(name_or_path).is_file():
        path = builtin_recipe(name_or_path)
    recipe = load_recipe(path)
    recipe = dataclasses.replace(recipe, **(overrides or {}), tolerances={**recipe.tolerances, **(tolerances or {})})
    root = out_dir or Path("edgeseq-out")
    if junit:
        validate_output_file(junit, "--junit")
    with matrix_progress(err) as progress:
        manifest = run_recipe(recipe, root, progress=progress, on_device=on_device, bisect=bisect,
                              out_label="--out")  # checks --out before any work
    report = manifest.pop("report")
    print_table(report, out)
    print_artifact_notes(report)
    print_failures(report)
    for b in manifest["budgets"]:
        shown = f"{b['measured_ms']:.2f} ms" if b["measured_ms"] is not None else "not measured"
        line = f"budget {b['device']} {b['precision']} {b['metric']} <= {b['limit_ms']} ms: {b['status']} ({shown})"
        say(line + (f": {b['reason']}" if b["reason"] else ""), stderr=b["status"] == "fail")
    baseline = manifest.get("baseline")
    if baseline is not None:
        regressed = regression_lines(baseline)
        for line in regressed:
            say(f"regressed against {baseline['old']}: {line}", stderr=True)
        if not regressed:
            say(f"baseline {baseline['old']}: no regressions in {len(baseline['rows'])} rows")
        for note in baseline["notes"]:
            say(f"note: baseline: {note}")
    if junit:
        write_junit(report, junit, manifest["budgets"], baseline)
    say(f"wrote {root / recipe.out / 'manifest.json'}")
    raise typer.Exit(0 if manifest["passed"] else 1)
