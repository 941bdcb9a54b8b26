"""The main job: export a model to every requested format x precision, then check parity and latency of each
artifact on every runtime this machine has, and write report.json + report.md.

Artifacts are built in a staging folder and moved into the output folder only when the run gets to the end, so a
bad input or an interrupted run leaves nothing half-written there.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from . import api, formats
from .artifact import STAGING_PREFIX, make_dirs, remove_created, remove_stale, sha256_file, write_text_atomic
from .enums import Format, Precision
from .environment import cpu_info, fingerprint
from .errors import EdgeseqError
from .plan import MatrixOptions, MatrixPlan, plan_matrix
from .report import Report, html_available, render_markdown, write_html
from .padding import check_padding
from .streaming import DEFAULT_CHUNKS, check_stream


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """What the matrix is doing: a message, the steps of the whole run (exports, parity sweeps, latency runs), and the
    cases of the parity sweep under way. str() is the message, so `progress=print` works."""

    message: str
    step: int  # steps finished
    steps: int  # steps planned
    done: int | None = None  # cases of the current parity sweep finished (None: no sweep under way)
    total: int | None = None
    worst_rel_l2: float | None = None

    def __str__(self) -> str:
        return self.message


Progress = Callable[[ProgressEvent], None]


class _Tracker:
    def __init__(self, progress: Progress, steps: int):
        self.progress, self.steps, self.step = progress, steps, 0

    def say(self, message: str, **cases) -> None:
        self.progress(ProgressEvent(message, self.step, self.steps, **cases))

    def advance(self, n: int = 1) -> None:
        self.step = min(self.steps, self.step + n)


def _case_counter(track: _Tracker, label: str, total: int):
    """on_case callback: 'parity of X on Y: 7/20 cases (worst rel L2 so far 3e-07)' as the sweep goes."""
    state = {"done": 0, "worst": 0.0}

    def on_case(case) -> None:
        state["done"] += 1
        for out in case.outputs:
            if out.rel_l2 == out.rel_l2:
                state["worst"] = max(state["worst"], out.rel_l2)
        track.say(f"{label}: {state['done']}/{total} cases (worst rel L2 so far {state['worst']:.1e})",
                  done=state["done"], total=total, worst_rel_l2=state["worst"])

    return on_case


def run_matrix(
    model,
    formats_: Iterable[str | Format] = (Format.ONNX,),
    precisions: Iterable[str | Precision] = (Precision.FP32,),
    *,
    out_dir: str | Path,
    weights: str | Path | None = None,
    options: MatrixOptions = MatrixOptions(),
    progress: Progress = lambda msg: None,
    out_label: str = "out_dir",
) -> Report:
    """The main job: plan_matrix (every check, before any work) then run_plan. out_label: what an error about
    out_dir calls it ("out_dir" in the API, "--out" from the CLI)."""
    return run_plan(plan_matrix(model, formats_, precisions, out_dir=out_dir, weights=weights, options=options,
                                out_label=out_label), progress)


def run_plan(plan: MatrixPlan, progress: Progress = lambda msg: None) -> Report:
    """Export, check and time everything the plan names; the artifacts and report reach plan.out_dir only when the
    run gets to the end."""
    from .formats import torch as torch_format
    from .formats.torch import TorchRunner

    spec, weights, options, out_dir, feeds = plan.spec, plan.weights, plan.options, plan.out_dir, plan.feeds
    devices = {fmt: formats.get(fmt).runtime_devices() for fmt in plan.formats}
    cuda = torch_format.cuda_runners(spec, weights) if torch_format.cuda_available() else []
    int8 = plan.has_int8
    track = _Tracker(progress, 1 + 2 * len(cuda) + int8
                     + sum(1 + 2 * len(devices[step.format]) for step in plan.exports))
    track.say(f"building the PyTorch original of {spec.name}")
    reference = TorchRunner(spec, weights=weights, threads=options.threads).load()  # bad weights fail here
    latency_feed = spec.example_inputs(batch=1, time=options.latency_time if spec.has_dynamic_time else None)

    created = make_dirs(out_dir)  # on failure these go again (a/ of out_dir=a/b too), when nothing else is in them
    remove_stale(out_dir)  # what a killed earlier run left behind
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out_dir))
    finished = False
    try:
        artifacts, parity, latency, bisections, streams, padding = [], [], [], [], [], []
        track.say(f"timing torch-cpu eager (reference) at T={next(iter(latency_feed.values())).shape[1]}")
        latency.append(api.profile(reference, feed=latency_feed, warmup=options.warmup,
                                   iterations=options.iterations, artifact_label=""))
        track.advance()
        for gpu in cuda:  # PyTorch on the GPU: eager and CUDA graphs, fp32 and fp16 (timed with CUDA events)
            with gpu:
                label = f"parity of {gpu.runtime} against the CPU original"
                track.say(f"{label}: 0/{len(feeds)} cases", done=0, total=len(feeds))
                parity.append(api.check(gpu, spec, precision=gpu.precision, times=options.times,
                                        batches=options.batches, tolerances=options.tolerances,
                                        reference=reference, artifact_label="",
                                        on_case=_case_counter(track, label, len(feeds))))
                parity[-1], found = _bisect_failure(parity[-1], spec, weights, options, track, runner=gpu)
                bisections += found
                track.advance()
                track.say(f"latency of {gpu.runtime} (CUDA events)")
                latency.append(dataclasses.replace(
                    api.profile(gpu, feed=latency_feed, warmup=options.warmup, iterations=options.iterations,
                                artifact_label=""), precision=gpu.precision.value))
            track.advance()
        references = []
        if int8:
            track.say("checking PyTorch's own int8 (torch.ao dynamic) against the fp32 original")
            try:
                with TorchRunner(spec, weights=weights, threads=options.threads,
                                 precision=Precision.INT8_DYNAMIC) as q8:
                    references.append(api.check(q8, spec, precision=Precision.INT8_DYNAMIC, times=options.times,
                                                batches=options.batches, reference=reference, artifact_label=""))
                    latency.append(dataclasses.replace(
                        api.profile(q8, feed=latency_feed, warmup=options.warmup, iterations=options.iterations,
                                    artifact_label=""), precision=Precision.INT8_DYNAMIC.value))
            except Exception as exc:  # noqa: BLE001 - an informative row: a module torch.ao cannot run costs only it
                why = (str(exc).splitlines() or [""])[0][:200]
                track.say(f"PyTorch's own int8 left out: {type(exc).__name__}: {why}")
            track.advance()
        parents: dict[Format, Path] = {}
        for step in plan.exports:
            fmt, prec = step.format, step.precision
            track.say(f"exporting {spec.name} to {fmt.value} {prec.value}")
            contract = formats.get(fmt)
            staged = staging / contract.artifact_name(spec.name, prec)
            artifact = contract.export(spec, staged, precision=prec, weights=weights,
                                       options=step.options(parents.get(fmt)))
            track.advance()
            if prec is Precision.FP32:
                parents[fmt] = staged
            final = out_dir / Path(artifact.path).name  # a TensorRT plan-only export writes a .trt.onnx
            artifacts.append(dataclasses.replace(artifact, path=str(final)))
            if formats.detect_format(artifact.path) is not fmt or not devices[fmt]:  # a TensorRT plan without an
                # engine, a Core ML package off macOS:
                track.advance(2 * len(devices[fmt]))
                track.say(f"{Path(artifact.path).name}: {artifact.notes[0] if artifact.notes else 'not run'}")
                continue  # nothing runs it here, so no parity or latency row claims anything for it
            staged = Path(artifact.path)
            for device in devices[fmt]:
                with contract.runner(staged, device=device, threads=options.threads) as runner:
                    label = f"parity of {staged.name} on {runner.runtime}"
                    track.say(f"{label}: 0/{len(feeds)} cases", done=0, total=len(feeds))
                    parity.append(api.check(runner, spec, precision=prec, times=options.times,
                                            tolerances=options.tolerances,
                                            batches=options.batches, reference=reference,
                                            artifact_label=str(final),
                                            on_case=_case_counter(track, label, len(feeds))))
                    parity[-1], found = _bisect_failure(parity[-1], spec, weights, options, track,
                                                        artifact=staged, label=str(final))
                    bisections += found
                    if spec.has_dynamic_time and not spec.state:  # does padding reach valid frames? (info)
                        track.say(f"padding safety of {staged.name} on {runner.runtime}")
                        padding.append(check_padding(runner, spec, precision=prec.value,
                                                     tolerances=options.tolerances, artifact=str(final)))
                    if spec.state:  # a streaming model: chunk by chunk with the state carried, against one call
                        track.say(f"streaming {staged.name} on {runner.runtime} in chunks of "
                                  f"{', '.join(map(str, DEFAULT_CHUNKS))} frames")
                        streams.append(check_stream(runner, reference, spec, precision=prec.value,
                                                    tolerances=options.tolerances,  # resolved by the plan
                                                    artifact=str(final)))
                    if _record_validation(contract, staged, parity[-1]):
                        artifact = dataclasses.replace(artifact, sha256=sha256_file(staged),
                                                       size_bytes=staged.stat().st_size)
                        artifacts[-1] = dataclasses.replace(artifact, path=str(final))
                    track.advance()
                    track.say(f"latency of {staged.name} on {runner.runtime}")
                    result = api.profile(runner, feed=latency_feed, warmup=options.warmup,
                                         iterations=options.iterations, artifact_label=str(final))
                    latency.append(dataclasses.replace(result, artifact_bytes=artifact.size_bytes,
                                                       precision=prec.value))
                    track.advance()
        report = Report(model=spec.summary(), environment={**fingerprint(), "threads": options.threads},
                        artifacts=tuple(artifacts), parity=tuple(parity), latency=tuple(latency),
                        references=tuple(references), bisections=tuple(bisections), streams=tuple(streams),
                        padding=tuple(padding),
                        quantization=quant_summaries(artifacts, parity, latency, references))
        for staged_file in sorted(staging.iterdir()):  # artifacts and their companions (plans, sidecars, caches)
            target = out_dir / staged_file.name
            if staged_file.is_dir() and target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # a folder artifact (.mlpackage) from an earlier run: rename needs it gone
            staged_file.replace(target)
        track.say("writing report.json, report.md" + (" and report.html" if html_available() else ""))
        report.save(out_dir / "report.json")
        write_text_atomic(out_dir / "report.md", render_markdown(report.to_dict()))
        if not write_html(report.to_dict(), out_dir / "report.html"):
            (out_dir / "report.html").unlink(missing_ok=True)  # an earlier run's would not match this report.json
        finished = True
        return report
    finally:
        reference.close()
        shutil.rmtree(staging, ignore_errors=True)
        if not finished:
            remove_created(created)


def _record_validation(contract, path: Path, par) -> bool:
    """Stamp an int8 artifact whose parity passed on this host's CPU with where it passed (int8 kernel family, CPU,
    runtime, worst rel L2): int8 parity holds per CPU family, so the file itself says which one it was proven on.
    False when nothing was written (not int8, not passed, not this host's CPU, or a format without metadata)."""
    import json

    from .quantize import VALIDATED_ON_KEY

    int8 = par.precision in (Precision.INT8_DYNAMIC.value, Precision.INT8_STATIC.value)
    if not int8 or not par.passed or not par.cpu or par.cpu != cpu_info():
        return False
    worst = par.worst
    return contract.update_metadata(path, {VALIDATED_ON_KEY: json.dumps({
        "int8_isa": par.cpu["int8_isa"], "cpu": par.cpu["model"], "runtime": par.runtime,
        "rel_l2": worst.rel_l2, "tolerance": worst.tolerance.rel_l2, "cases": len(par.cases)}, sort_keys=True)})


def _bisect_failure(par, spec, weights, options: MatrixOptions, track: _Tracker, *, artifact: Path | None = None,
                    label: str = "", runner=None) -> tuple:
    """(parity row, [BisectResult]): a failed row bisected at its worst failing case (the mission's "which layer
    diverged" without a second command). Nothing when it passed, when bisection is off, or when the runtime
    crashed rather than diverged; a format bisection cannot read gets a note on the row instead."""
    from .bisection import bisect, bisect_torch

    failing = [c for c in par.cases if not c.passed and not c.error]
    if par.passed or not options.bisect or not failing:
        return par, []
    worst = max(failing, key=lambda c: max((o.rel_l2 for o in c.outputs if o.rel_l2 == o.rel_l2), default=0.0))
    track.say(f"bisecting {Path(label).name or par.runtime} at batch={worst.batch} T={worst.time} {worst.source}")
    kwargs = {"weights": weights, "precision": par.precision, "tolerances": options.tolerances,
              "batch": worst.batch, "time": worst.time, "source": worst.source}
    try:
        if runner is not None:
            found = bisect_torch(runner, spec, **kwargs)
        else:
            found = dataclasses.replace(bisect(artifact, spec, **kwargs), artifact=label, runtime=par.runtime)
    except EdgeseqError as exc:
        return dataclasses.replace(par, notes=par.notes + (f"layer bisection not run: {exc}",)), []
    except Exception as exc:  # noqa: BLE001 - a diagnosis that breaks must not cost the user the matrix and report
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        return dataclasses.replace(par, notes=par.notes + (f"layer bisection failed: {why}",)), []
    return par, [found]


def quant_summaries(artifacts, parity, latency, references) -> tuple:
    """For each fp16 / int8 artifact on each runtime: size and latency against the fp32 artifact of the same format
    on the same runtime, worst errors against the PyTorch fp32 original, PyTorch int8's errors, and what stayed
    float."""
    from .quantize import QuantSummary, worst_errors

    fp32 = {a.format: a for a in artifacts if a.precision == Precision.FP32.value}
    lat = {(x.runtime, x.artifact): x for x in latency}
    torch_int8 = worst_errors(references[0]) if references else None
    out = []
    for art in artifacts:
        if art.precision == Precision.FP32.value:
            continue
        base = fp32.get(art.format)
        for par in (p for p in parity if p.artifact == art.path):
            mine, theirs = lat.get((par.runtime, art.path)), lat.get((par.runtime, base.path)) if base else None
            census = art.quantization or {}
            errors = worst_errors(par)
            int8 = art.precision != Precision.FP16.value and torch_int8 is not None
            out.append(QuantSummary(
                artifact=art.path, precision=art.precision, runtime=par.runtime, config=census.get("config", {}),
                size_bytes=art.size_bytes, fp32_size_bytes=base.size_bytes if base else None,
                p50_ms=mine.p50_ms if mine else None, fp32_p50_ms=theirs.p50_ms if theirs else None,
                float_ops=census.get("float_ops", {}),
                quantized_ops=census.get("int8_ops") or census.get("fp16_ops") or {},
                torch_int8_rel_l2=torch_int8["rel_l2"] if int8 else None,
                torch_int8_max_abs=torch_int8["max_abs"] if int8 else None,
                **errors,
            ))
    return tuple(out)
