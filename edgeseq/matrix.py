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
from ._checks import integer
from .artifact import STAGING_PREFIX, make_dirs, remove_created, remove_stale, sha256_file, write_text_atomic
from .enums import Format, Precision
from .environment import cpu_info, fingerprint
from .errors import EdgeseqError, InputError
from .parity import Tolerances
from .report import Report, html_available, render_markdown, write_html

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


@dataclasses.dataclass(frozen=True)
class MatrixOptions:
    times: tuple[int, ...] | None = None
    batches: tuple[int, ...] | None = None
    latency_time: int | None = None
    threads: int | None = None
    warmup: int = 5
    iterations: int = 30
    opset: int = 17
    exporter: str = "torchscript"
    tolerances: Tolerances | dict[str, float] | None = None  # None: the model's own; a dict: on top of them
    shapes: tuple[str, ...] | None = None  # TensorRT optimization profile overrides, NAME=MIN:OPT:MAX
    max_time: int | None = None  # TFLite: the longest sequence the artifact serves (None: the format's default)
    quant: tuple[str, ...] = ()  # KEY=VALUE changes to the format's QuantConfig defaults, for every fp16 / int8 export
    calibration: str | None = None  # directory of .npy calibration inputs for int8-static (default: the model's own)
    bisect: bool = True  # a failing row is bisected at its worst case: the report names the first divergent layer
    rel_l2: tuple[tuple[str, float], ...] = ()  # (precision, rel L2) replacing that precision's tolerance (--tolerance)

    def __post_init__(self):
        """Bad timing settings fail here, not after the exports (iterations=0 used to fail at the first timing)."""
        for name, low in (("iterations", 1), ("warmup", 0), ("threads", 1), ("latency_time", 1)):
            optional = name in ("threads", "latency_time")
            object.__setattr__(self, name, integer(getattr(self, name), f"MatrixOptions.{name}", low, optional))


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


def _runtime_devices(fmt: Format) -> list[str]:
    return formats.module_for(fmt).runtime_devices()


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
    """out_label: what an error about out_dir calls it ("out_dir" in the API, "--out" from the CLI)."""
    from .formats import torch as torch_format
    from .formats.torch import TorchRunner

    formats_ = [formats_] if isinstance(formats_, (str, Format)) else list(formats_)
    precisions = [precisions] if isinstance(precisions, (str, Precision)) else list(precisions)
    every_format = "all" in formats_
    # a repeated -f onnx is one export, not two rows of the same artifact
    fmts = formats.installed_formats() if every_format else list(dict.fromkeys(Format.parse(f) for f in formats_))
    # "all" precisions: each format's own (TensorRT has no int8-dynamic); a precision named outright must be
    # supported by every format asked for
    every_precision = "all" in precisions
    precs = list(Precision) if every_precision else [Precision.parse(p) for p in precisions]
    if every_format and not fmts:
        raise InputError("no export format is installed; pip install 'edgeseq[onnx]' (or [tflite])")
    if not fmts or not precs:
        raise InputError("give at least one format and one precision")
    if Format.TORCH in fmts:
        raise InputError("torch is the reference every format is compared with; it is always in the matrix")
    # fp16 / int8 artifacts derive from the fp32 one, which is also their size and latency baseline: always built
    precs = [p for p in Precision if p in precs or (p is Precision.FP32 and precs)]
    if options.quant and precs == [Precision.FP32]:
        raise InputError("quantization settings (--quant) apply to fp16 / int8 precisions; none was asked for")
    if options.calibration is not None and Precision.INT8_STATIC not in precs:
        raise InputError("--calibration data is for int8-static; add -p int8-static")

    def export_options(module, prec: Precision, parent: Path | None = None):
        derived = prec is not Precision.FP32
        is_trt = module.__name__.endswith(".tensorrt")
        return api._options(module, options.opset, options.exporter, options.shapes if is_trt else None,
                            options.max_time, precision=prec, quant=(options.quant or None) if derived else None,
                            calibration=options.calibration if derived else None, parent=parent)

    def precs_of(fmt: Format) -> list[Precision]:
        if not every_precision:
            return precs
        return [p for p in precs if p in formats.module_for(fmt).PRECISIONS]

    for fmt in fmts:  # unknown formats, unsupported precisions and bad settings fail before anything is written
        module = formats.module_for(fmt)
        for prec in precs_of(fmt):
            module.check_precision(prec)
            export_options(module, prec)
    spec = api.resolve_spec(model)
    weights = api._weights(weights)  # weights=5 is an InputError, not a TypeError in the middle of the run
    # --tolerance (rel_l2) on top of the model's or the recipe's tolerances
    options = dataclasses.replace(options, tolerances=api.resolve_tolerances(spec, options.tolerances,
                                                                             options.rel_l2))
    if options.shapes and Format.TENSORRT not in fmts:
        raise InputError("--shapes sets a TensorRT optimization profile; it applies to --format tensorrt only")
    if options.max_time is not None and Format.TFLITE not in fmts:
        raise InputError("max_time applies to TFLite exports (the longest T they serve); the matrix builds no TFLite")
    if Format.TENSORRT in fmts:  # a bad --shapes fails here, before anything is written
        trt = formats.module_for(Format.TENSORRT)
        trt.resolve_profile(spec, export_options(trt, Precision.FP32).shapes)
    if options.calibration is not None and Precision.INT8_STATIC in precs:
        from .quantize import load_calibration_dir

        load_calibration_dir(options.calibration, spec)
    out_dir = api._out_dir(out_dir, out_label)
    for fmt in fmts:  # a folder holding another model's artifacts under these names is refused before any work
        for prec in precs_of(fmt):
            api.refuse_overwriting_another_model(out_dir / api.artifact_name(spec, fmt, prec), spec)
    # the sweep is checked up front, against what the TFLite artifacts will serve (not at their parity check)
    limits = {}
    if Format.TFLITE in fmts:
        tflite = export_options(formats.module_for(Format.TFLITE), Precision.FP32)
        limits = {"max_time": tflite.max_time, "max_batch": tflite.max_batch}
    feeds = list(api.parity_feeds(spec, options.times, options.batches, None, **limits))
    int8 = any(p in (Precision.INT8_DYNAMIC, Precision.INT8_STATIC) for fmt in fmts for p in precs_of(fmt))
    devices = {fmt: _runtime_devices(fmt) for fmt in fmts}
    cuda = torch_format.cuda_runners(spec, weights) if torch_format.cuda_available() else []
    track = _Tracker(progress, 1 + 2 * len(cuda) + int8
                     + sum(len(precs_of(fmt)) * (1 + 2 * len(devices[fmt])) for fmt in fmts))
    track.say(f"building the PyTorch original of {spec.name}")
    reference = TorchRunner(spec, weights=weights, threads=options.threads).load()  # bad weights fail here
    latency_feed = spec.example_inputs(batch=1, time=options.latency_time if spec.has_dynamic_time else None)

    created = make_dirs(out_dir)  # on failure these go again (a/ of out_dir=a/b too), when nothing else is in them
    remove_stale(out_dir)  # what a killed earlier run left behind
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out_dir))
    finished = False
    try:
        artifacts, parity, latency, bisections = [], [], [], []
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
        for fmt in fmts:
            for prec in precs_of(fmt):
                track.say(f"exporting {spec.name} to {fmt.value} {prec.value}")
                module = formats.module_for(fmt)
                staged = staging / api.artifact_name(spec, fmt, prec)
                artifact = module.export(spec, staged, precision=prec, weights=weights,
                                         options=export_options(module, prec, parents.get(fmt)))
                track.advance()
                if prec is Precision.FP32:
                    parents[fmt] = staged
                final = out_dir / Path(artifact.path).name  # a TensorRT plan-only export writes a .trt.onnx
                artifacts.append(dataclasses.replace(artifact, path=str(final)))
                if formats.detect_format(artifact.path) is not fmt:  # e.g. a TensorRT plan without an engine:
                    track.advance(2 * len(devices[fmt]))
                    track.say(f"{Path(artifact.path).name}: {artifact.notes[0] if artifact.notes else 'not run'}")
                    continue  # nothing runs it here, so no parity or latency row claims anything for it
                staged = Path(artifact.path)
                for device in devices[fmt]:
                    with module.runner(staged, device=device, threads=options.threads) as runner:
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
                        if _record_validation(module, staged, parity[-1]):
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
                        references=tuple(references), bisections=tuple(bisections),
                        quantization=quant_summaries(artifacts, parity, latency, references))
        for staged_file in sorted(staging.iterdir()):  # artifacts and their companions (plans, sidecars, caches)
            staged_file.replace(out_dir / staged_file.name)
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


def _record_validation(module, path: Path, par) -> bool:
    """Stamp an int8 artifact whose parity passed on this host's CPU with where it passed (int8 kernel family, CPU,
    runtime, worst rel L2): int8 parity holds per CPU family, so the file itself says which one it was proven on.
    False when nothing was written (not int8, not passed, not this host's CPU, or a format without metadata)."""
    import json

    from .quantize import VALIDATED_ON_KEY

    update = getattr(module, "update_metadata", None)
    int8 = par.precision in (Precision.INT8_DYNAMIC.value, Precision.INT8_STATIC.value)
    if update is None or not int8 or not par.passed or not par.cpu or par.cpu != cpu_info():
        return False
    worst = par.worst
    update(path, {VALIDATED_ON_KEY: json.dumps({
        "int8_isa": par.cpu["int8_isa"], "cpu": par.cpu["model"], "runtime": par.runtime,
        "rel_l2": worst.rel_l2, "tolerance": worst.tolerance.rel_l2, "cases": len(par.cases)}, sort_keys=True)})
    return True


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
