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
from .artifact import STAGING_PREFIX, remove_stale, write_text_atomic
from .enums import Format, Precision
from .environment import fingerprint
from .errors import InputError
from .parity import Tolerances
from .report import Report, render_markdown, write_html

Progress = Callable[[str], None]


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
    tolerances: Tolerances | None = None  # None: the model's own
    shapes: tuple[str, ...] | None = None  # TensorRT optimization profile overrides, NAME=MIN:OPT:MAX
    max_time: int | None = None  # TFLite: the longest sequence the artifact serves (None: the format's default)


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
) -> Report:
    from .formats.torch import TorchRunner, cuda_available

    fmts = [Format.parse(f) for f in formats_]
    precs = [Precision.parse(p) for p in precisions]
    if not fmts or not precs:
        raise InputError("give at least one format and one precision")
    if Format.TORCH in fmts:
        raise InputError("torch is the reference every format is compared with; it is always in the matrix")
    for fmt in fmts:  # unknown formats and unsupported precisions fail before anything is written
        for prec in precs:
            formats.module_for(fmt).check_precision(prec)
    spec = api.resolve_spec(model)
    fmt_options = {fmt: api._options(formats.module_for(fmt), options.opset, options.exporter,
                                     options.shapes if fmt is Format.TENSORRT else None, options.max_time)
                   for fmt in fmts}
    if options.shapes and Format.TENSORRT not in fmts:
        raise InputError("--shapes sets a TensorRT optimization profile; it applies to --format tensorrt only")
    if Format.TENSORRT in fmts:  # a bad --shapes fails here, before anything is written
        formats.module_for(Format.TENSORRT).resolve_profile(spec, fmt_options[Format.TENSORRT].shapes)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {str(out_dir)!r} exists and is not a directory")
    feeds = list(api.parity_feeds(spec, options.times, options.batches, None))  # validates the sweep up front
    progress(f"building the PyTorch original of {spec.name}")
    reference = TorchRunner(spec, weights=weights, threads=options.threads).load()  # bad weights fail here
    latency_feed = spec.example_inputs(batch=1, time=options.latency_time if spec.has_dynamic_time else None)

    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir)  # what a killed earlier run left behind
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out_dir))
    finished = False
    try:
        artifacts, parity, latency = [], [], []
        progress(f"timing torch-cpu eager (reference) at T={next(iter(latency_feed.values())).shape[1]}")
        latency.append(api.profile(reference, feed=latency_feed, warmup=options.warmup,
                                   iterations=options.iterations, artifact_label=""))
        if cuda_available():
            with TorchRunner(spec, weights=weights, device="cuda") as gpu:
                progress("checking torch-cuda against the CPU original")
                parity.append(api.check(gpu, spec, times=options.times, batches=options.batches,
                                        tolerances=options.tolerances,
                                        reference=reference, artifact_label=""))
                latency.append(api.profile(gpu, feed=latency_feed, warmup=options.warmup,
                                           iterations=options.iterations, artifact_label=""))
        for fmt in fmts:
            for prec in precs:
                progress(f"exporting {spec.name} to {fmt.value} {prec.value}")
                module = formats.module_for(fmt)
                staged = staging / api.artifact_name(spec, fmt, prec)
                artifact = module.export(spec, staged, precision=prec, weights=weights, options=fmt_options[fmt])
                final = out_dir / Path(artifact.path).name
                artifacts.append(dataclasses.replace(artifact, path=str(final)))
                if formats.detect_format(artifact.path) is not fmt:  # e.g. a TensorRT plan without an engine:
                    progress(f"{Path(artifact.path).name}: {artifact.notes[0] if artifact.notes else 'not run'}")
                    continue  # nothing runs it here, so no parity or latency row claims anything for it
                staged = Path(artifact.path)
                for device in _runtime_devices(fmt):
                    with module.runner(staged, device=device, threads=options.threads) as runner:
                        progress(f"parity of {staged.name} on {runner.runtime}: {len(feeds)} cases")
                        parity.append(api.check(runner, spec, precision=prec, times=options.times,
                                                tolerances=options.tolerances,
                                                batches=options.batches, reference=reference,
                                                artifact_label=str(final)))
                        progress(f"latency of {staged.name} on {runner.runtime}")
                        result = api.profile(runner, feed=latency_feed, warmup=options.warmup,
                                             iterations=options.iterations, artifact_label=str(final))
                        latency.append(dataclasses.replace(result, artifact_bytes=artifact.size_bytes,
                                                           precision=prec.value))
        report = Report(model=spec.summary(), environment={**fingerprint(), "threads": options.threads},
                        artifacts=tuple(artifacts), parity=tuple(parity), latency=tuple(latency))
        for staged_file in sorted(staging.iterdir()):  # artifacts and their companions (plans, sidecars, caches)
            staged_file.replace(out_dir / staged_file.name)
        report.save(out_dir / "report.json")
        write_text_atomic(out_dir / "report.md", render_markdown(report.to_dict()))
        write_html(report.to_dict(), out_dir / "report.html")
        finished = True
        return report
    finally:
        reference.close()
        shutil.rmtree(staging, ignore_errors=True)
        if created and not finished and not any(out_dir.iterdir()):
            out_dir.rmdir()
