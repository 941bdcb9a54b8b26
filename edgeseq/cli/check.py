"""`edgeseq check`: parity of one artifact against the PyTorch original over a T x batch sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..artifact import validate_output_file, write_text_atomic
from ..errors import InputError
from . import args
from .console import print_failures, say, say_marked


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
    padding: Annotated[bool, typer.Option(
        "--padding", help="Also check padding safety: each row of ragged zero-padded batches against its own run.")
    ] = False,
    chunks: Annotated[str | None, typer.Option(
        "--chunks", help="Streaming models: chunk sizes for the chunked-vs-full gate (default 1,8,32).")] = None,
):
    """Parity of ARTIFACT against the PyTorch original over a sequence-length x batch sweep; a streaming model
    (state inputs / outputs) is also fed chunk by chunk with its state carried, against one full-sequence run."""
    from ..api import check

    if device and len(device) > 1:  # a plain option would keep the last one and check there alone, saying nothing
        raise InputError(f"check runs on one --device (got {len(device)}: {', '.join(device)}); run it once per "
                         "device, or time several side by side with `edgeseq profile`")
    device = device[0] if device else None
    if json_out:
        validate_output_file(json_out, "--json")
    overrides = dict(args.tolerance_overrides(tolerance))
    sizes = _stream_sizes(artifact, model, device, chunks)  # bad --chunks: refused before any work
    result = check(artifact, model, weights=weights, times=args.int_list(times, "times"),
                   batches=args.int_list(batches, "batches"), device=device, threads=threads, tolerances=overrides)
    data = result.to_dict()
    worst = data["worst"] or {}
    say_marked("PASS" if result.passed else "FAIL", "green" if result.passed else "red",
               f" {result.model} on {result.runtime} ({result.precision}): {len(result.cases)} cases, worst rel L2 "
               f"{worst.get('rel_l2', float('nan')):.3g}, max abs {worst.get('max_abs', float('nan')):.3g}, "
               f"cosine {worst.get('cosine', float('nan')):.7f}")
    if result.precision.startswith("int8") and result.cpu:
        say(f"int8 parity holds per CPU: measured on {result.cpu['model']} ({result.cpu['int8_isa']} int8 "
            "kernels); run `edgeseq check` on the target (or --device) to prove it there")
    for note in result.notes:
        say(f"note: {note}")
    for flag in result.growth_flags:
        say(f"note: {flag}")
    print_failures({"parity": [data]}, notes=False)
    if bisect and not result.passed:
        data["bisect"] = _bisect(artifact, result, weights, device, overrides)
    if padding:
        from ..api import check_padding

        padded = check_padding(artifact, model, device=device, threads=threads, tolerances=overrides)
        say(f"padding: {padded.verdict()}")
        data["padding"] = padded.to_dict()
    streamed = _stream(artifact, model, weights, device, threads, overrides, sizes) if sizes else None
    if streamed is not None:
        data["stream"] = streamed.to_dict()
    if json_out:
        write_text_atomic(json_out, json.dumps(data, indent=2) + "\n")
    raise typer.Exit(0 if result.passed and (streamed is None or streamed.passed) else 1)


def _stream_sizes(artifact: Path, model, device, chunks: str | None) -> tuple[int, ...]:
    """The chunk sizes to stream: --chunks, or 1,8,32 where the model declares state; () where it does not."""
    from ..resolve import model_of, open_runner

    sizes = args.int_list(chunks, "chunks")
    if sizes is not None and (not sizes or min(sizes) < 1):
        raise InputError(f"--chunks takes chunk sizes >= 1, got {chunks!r}")
    with open_runner(artifact, device=device) as runner:
        spec = model_of(runner, model)
    if not spec.state:
        return sizes or ()  # --chunks on a stateless model: what a windowed approximation would cost
    return sizes or (1, 8, 32)


def _stream(artifact: Path, model, weights, device, threads, overrides: dict, sizes: tuple[int, ...]):
    """The chunked-vs-full gate: prints its verdict and each chunk size's cost, returns the StreamResult. A model
    without state cannot stream exactly: its windowed approximation's error is printed instead (None returned)."""
    from ..api import check_stream
    from ..resolve import model_of, open_runner
    from ..streaming import windowed_stream

    with open_runner(artifact, device=device, threads=threads) as runner:
        spec = model_of(runner, model)
        if not spec.state:
            found = windowed_stream(runner, spec, chunks=sizes, artifact=str(artifact))
            say(f"streaming: {spec.name} carries no state, so it cannot stream exactly; computing each chunk from "
                f"{found.context} past frames, the chunk and a lookahead, against one call over T={found.time}:")
            for line in found.lines():
                say(f"  {line}")
            return None

    result = check_stream(artifact, model, chunks=sizes, weights=weights, device=device, threads=threads,
                          tolerances=overrides)
    worst = max((o.rel_l2 for c in result.cases for o in c.outputs), default=float("nan"))
    say_marked("PASS" if result.passed else "FAIL", "green" if result.passed else "red",
               f" streaming {result.model} on {result.runtime}: chunks of {', '.join(str(c.chunk) for c in result.cases)}"
               f" frames with the state carried vs one call over T={result.cases[0].time}, worst rel L2 {worst:.3g}")
    for c in result.cases:
        say(f"  chunk {c.chunk}: first call {c.first_chunk_ms:.3f} ms, then {c.chunk_ms:.3f} ms a call "
            f"({c.share_ratio:.2f}x its frames' share of one full call, {c.full_ms:.2f} ms)")
    for line in result.failures[:10]:
        say(f"  FAIL {line}")
    return result


def _bisect(artifact: Path, result, weights, device: str | None, overrides: dict) -> dict:
    """The first PyTorch module that left tolerance, under the limits the check used (a profile's [tolerances]
    under --tolerance); prints its verdict and returns the BisectResult dict."""
    from ..resolve import device_profile as _device_profile, resolve_tolerances
    from ..bisection import bisect as run_bisect
    from ..bisection import verdict
    from ..models import get_model

    spec = get_model(result.model)
    profile = _device_profile(device)
    tolerances = resolve_tolerances(spec, overrides, device=profile.tolerances if profile else None)
    found = run_bisect(artifact, spec, weights=weights, precision=result.precision, tolerances=tolerances).to_dict()
    say(verdict(found))
    return found
