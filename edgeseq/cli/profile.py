"""`edgeseq profile`: latency of one artifact, on one device, several side by side, or per stage of the model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.markup import escape

from ..artifact import validate_output_file, write_text_atomic
from ..errors import InputError
from . import args
from .console import err, out, say, say_error


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
        validate_output_file(json_out, "--json")
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
    say(f"{result.runtime} batch={result.batch} T={result.time}: p50 {result.p50_ms:.3f} ms, "
        f"p90 {result.p90_ms:.3f} ms, p99 {result.p99_ms:.3f} ms, mean {result.mean_ms:.3f} ms over {result.iterations} runs; "
        f"{result.frames_per_s:,.0f} frames/s, " + (f"RTF {result.rtf:.4f}, " if result.rtf is not None else "")
        + f"peak RSS {result.peak_rss_mb:.0f} MB")
    if result.emulated:
        from ..latency import EMULATED_NOTE

        say(f"note: {EMULATED_NOTE}")
    if result.note:
        say(f"note: {result.note}")


def _profile_stages(artifact: Path, model, batch: int, time: int | None, threads: int | None, warmup: int,
                    iterations: int, json_out: Path | None, device: str | None) -> None:
    from ..stage_profile import profile_stages
    from .tables import stages_table

    where = f"on {device}" if device not in (None, "cpu") else "in ONNX Runtime and PyTorch eager"
    with err.status(escape(f"profiling each stage {where}")):
        result = profile_stages(artifact, model, batch=batch, time=time, threads=threads, warmup=warmup,
                                iterations=iterations, device=device)
    data = result.to_dict()
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    out.print(stages_table(data))
    top = list(data["onnxruntime_op_types_ms"].items())[:6]
    say("onnxruntime by op type: " + ", ".join(f"{op} {ms:.3f} ms" for op, ms in top))


def _profile_devices(artifact: Path, devices: list[str], options: dict, json_out: Path | None) -> None:
    """Several devices at once: one column per device; a device that failed shows its error and sets the exit code."""
    from ..api import profile_many
    from .tables import side_by_side_table

    with err.status(f"profiling on {len(devices)} devices"):
        answers = profile_many(artifact, devices, **options)
    data = {"artifact": str(artifact), "devices": [a.to_dict() for a in answers]}
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    out.print(side_by_side_table(f"latency of {artifact.name}", data["devices"]))
    if any(a["result"] and a["result"]["emulated"] for a in data["devices"]):
        from ..latency import EMULATED_NOTE

        say(f"note: (emulated) = {EMULATED_NOTE}")
    for a in data["devices"]:
        if a["result"] and a["result"]["note"]:
            say(f"note ({a['device']}): {a['result']['note']}")
        if a["error"]:
            say_error(f"{a['device']}: {a['error']}")
    worst = max((a["exit_code"] for a in data["devices"]), default=0)
    if worst:
        raise typer.Exit(worst)
