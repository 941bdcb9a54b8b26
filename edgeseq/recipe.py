"""Export recipes (exporters/*.toml): what a mobile build checks in and runs with `edgeseq export --recipe`.

A recipe names the model, formats, precisions, tolerances, latency budgets and target devices; running it builds
everything into one output folder with a manifest an app build can consume, and fails (exit 1) when parity or a
budget fails. Paths in a recipe can only point inside the output folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from .artifact import write_text_atomic
from .devices import get_profile
from .enums import Format, Precision
from .errors import InputError, UnknownNameError
from ._checks import integer, integers, positive_number, ratio
from .parity import validate_rel_l2
from .tomlfile import validate_table, read_toml

_TOP = {"name": str, "description": str, "model": str, "formats": list, "precisions": list, "devices": list,
        "out": str, "weights": str, "parity": dict, "latency": dict, "tolerances": dict, "budgets": list,
        "baseline": dict}
_PARITY = {"times": list, "batches": list}
_LATENCY = {"time": int, "iterations": int, "warmup": int, "threads": int}
_BASELINE = {"report": str, "max_slowdown": (int, float), "max_error_growth": (int, float)}
_BUDGET = {"device": str, "precision": str, "format": str, "p50_ms": (int, float), "p90_ms": (int, float),
           "p99_ms": (int, float)}
METRICS = ("p50_ms", "p90_ms", "p99_ms")


@dataclass(frozen=True)
class Budget:
    device: str
    precision: str
    format: str
    metric: str
    limit_ms: float


@dataclass(frozen=True)
class Baseline:
    """A report of an earlier build to compare with (`edgeseq diff`): a regression fails the build."""

    report: str  # path, taken relative to the recipe file
    max_slowdown: float | None = None
    max_error_growth: float | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    model: str
    formats: tuple[Format, ...]
    precisions: tuple[Precision, ...]
    devices: tuple[str, ...]
    out: str
    weights: str | None
    times: tuple[int, ...] | None
    batches: tuple[int, ...] | None
    latency_time: int | None
    iterations: int
    warmup: int
    threads: int | None
    tolerances: dict[str, float]
    budgets: tuple[Budget, ...]
    source: str
    device_paths: tuple[tuple[str, str], ...] = ()  # (profile name, .toml path) for devices given as files
    baseline: Baseline | None = None

    def device(self, name: str):
        """The DeviceProfile of a device the recipe names (shipped, or a .toml it points at)."""
        return get_profile(dict(self.device_paths).get(name, name))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["formats"] = [f.value for f in self.formats]
        d["precisions"] = [p.value for p in self.precisions]
        return d


def safe_relative(path: str, where: str) -> str:
    """A folder inside the output root ("." is the root itself): no absolute paths, no '..', no drive letters."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if path and not pure.parts:  # "." or "./": the output root itself; "" is refused (a typo, not a choice)
        return "."
    if not path or pure.is_absolute() or ".." in pure.parts or ":" in pure.parts[0]:
        raise InputError(f"{where}: 'out' must be a relative folder inside the output root, got {path!r}")
    return str(pure)


def _model_ref(model, source: str) -> str:
    """A registered name as is; a factory's relative FILE.py is relative to the recipe's own folder, so a recipe
    checked in beside the model code runs from anywhere."""
    from .models.factory import is_factory_ref

    if not isinstance(model, str) or not is_factory_ref(model):
        return model
    target, _, attr = model.rpartition(":")
    beside = Path(source).parent / target
    if target.endswith(".py") and not Path(target).is_absolute() and beside.is_file():
        return f"{beside.resolve()}:{attr}"
    return model


def parse_recipe(data: dict, source: str) -> Recipe:
    validate_table(data, _TOP, source)
    for key in ("name", "model", "formats"):
        if key not in data:
            raise InputError(f"{source}: missing required key {key!r}")
    parity, latency = data.get("parity", {}), data.get("latency", {})
    validate_table(parity, _PARITY, f"{source} [parity]")
    validate_table(latency, _LATENCY, f"{source} [latency]")
    for key, low in (("time", 1), ("iterations", 1), ("warmup", 0), ("threads", 1)):
        if key in latency:  # time = 0 used to mean "the default", threads = 0 a late crash
            integer(latency[key], f"{source} [latency] {key}", minimum=low)
    try:
        formats = tuple(Format.parse(f) for f in data["formats"])
        precisions = tuple(Precision.parse(p) for p in data.get("precisions", ["fp32"]))
        tolerances = {Precision.parse(k).value: v for k, v in data.get("tolerances", {}).items()}
        profiles = [get_profile(_device_ref(d, source)) for d in data.get("devices", [])]
        devices = tuple(p.name for p in profiles)
        device_paths = tuple((p.name, p.source) for p, d in zip(profiles, data.get("devices", []))
                             if str(d).endswith(".toml") or "/" in str(d))
    except UnknownNameError as exc:
        raise InputError(f"{source}: {exc}") from None
    for prec, value in tolerances.items():  # the rule the API and --tolerance use: 0 < rel L2 < 10, finite
        validate_rel_l2(value, f"{source} [tolerances] {prec}")
    budgets = []
    for i, raw in enumerate(data.get("budgets", [])):
        where = f"{source} [[budgets]] #{i + 1}"
        if not isinstance(raw, dict):
            raise InputError(f"{where}: must be a table")
        validate_table(raw, _BUDGET, where)
        metrics = [m for m in METRICS if m in raw]
        if len(metrics) != 1 or "device" not in raw:
            raise InputError(f"{where}: needs 'device' and exactly one of {', '.join(METRICS)}")
        if raw["device"] not in devices:
            raise InputError(f"{where}: device {raw['device']!r} is not in the recipe's devices {list(devices)}")
        try:
            precision = Precision.parse(raw.get("precision", "fp32")).value
            fmt = Format.parse(raw.get("format", profiles[devices.index(raw["device"])].format.value)).value
        except UnknownNameError as exc:
            raise InputError(f"{where}: {exc}") from None
        positive_number(raw[metrics[0]], f"{where}: {metrics[0]}")
        # a budget on something the recipe does not build would never be measured: the gate would vanish
        built = _measured_precisions(fmt, precisions, profiles[devices.index(raw["device"])])
        if precision not in built:
            raise InputError(f"{where}: precision {precision!r} is not built by the recipe (precisions: "
                             f"{sorted(built)})")
        if fmt != Format.TORCH.value and fmt not in {f.value for f in formats}:
            raise InputError(f"{where}: format {fmt!r} is not built by the recipe (formats: "
                             f"{[f.value for f in formats]})")
        budgets.append(Budget(raw["device"], precision, fmt, metrics[0], float(raw[metrics[0]])))
    baseline = _baseline(data.get("baseline"), source)
    return Recipe(
        name=data["name"], description=data.get("description", ""), model=_model_ref(data["model"], source),
        formats=formats,
        precisions=precisions, devices=devices, out=safe_relative(data.get("out", data["name"]), source),
        weights=data.get("weights"),
        times=integers(parity.get("times"), f"{source} [parity] times"),
        batches=integers(parity.get("batches"), f"{source} [parity] batches"),
        latency_time=latency.get("time"), iterations=latency.get("iterations", 30), warmup=latency.get("warmup", 5),
        threads=latency.get("threads"), tolerances=tolerances, budgets=tuple(budgets), source=source,
        device_paths=device_paths, baseline=baseline)


def _measured_precisions(fmt: str, precisions, profile) -> set[str]:
    """The precisions the matrix times for `fmt` on `profile`: the recipe's own (fp32 is always built with them);
    for torch, the reference rows: fp32, fp16 on a CUDA device, torch.ao int8-dynamic on the CPU when int8 is built."""
    built = {p.value for p in precisions} | {Precision.FP32.value}
    if fmt != Format.TORCH.value:
        return built
    cuda = profile.runner_device().startswith("cuda")
    int8 = not cuda and bool(built & {Precision.INT8_DYNAMIC.value, Precision.INT8_STATIC.value})
    return {Precision.FP32.value} | ({Precision.FP16.value} if cuda else set()) | (
        {Precision.INT8_DYNAMIC.value} if int8 else set())


def _baseline(raw: dict | None, source: str) -> Baseline | None:
    """[baseline]: the report must exist and be a report now, not after a long build."""
    if raw is None:
        return None
    from .report import load_report

    where = f"{source} [baseline]"
    validate_table(raw, _BASELINE, where)
    if "report" not in raw:
        raise InputError(f"{where}: needs 'report', the path of an earlier build's report.json")
    path = Path(raw["report"])
    if not path.is_absolute():
        path = Path(source).parent / path
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise InputError(f"{where}: report {str(path)!r} does not exist")
    load_report(path)  # an ArtifactError (one line) when it is not an edgeseq report
    limits = {}
    for key in ("max_slowdown", "max_error_growth"):
        if key in raw:
            limits[key] = ratio(raw[key], f"{where}: {key}")
    return Baseline(str(path), **limits)


def _device_ref(value, source: str) -> str:
    """A device name, or a profile .toml path taken relative to the recipe file."""
    text = str(value)
    if (text.endswith(".toml") or "/" in text) and not Path(text).is_absolute():
        beside = Path(source).parent / text
        if beside.is_file():
            return str(beside)
    return text


def load_recipe(path: str | Path) -> Recipe:
    return parse_recipe(read_toml(path, "recipe"), str(path))


def builtin_recipe(name: str) -> Path:
    from .devices import builtin_dir

    return builtin_dir().parent / "exporters" / f"{name}.toml"


# ---- running -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetResult:
    budget: Budget
    runtime: str
    measured_ms: float | None
    status: str  # pass | fail | not-measured | not-judged (timed on an emulated device)
    reason: str = ""

    def to_dict(self) -> dict:
        return {**asdict(self.budget), "runtime": self.runtime, "measured_ms": self.measured_ms,
                "status": self.status, "reason": self.reason}


def judge_budgets(recipe: Recipe, report: dict, *, on_device: bool = False, progress=lambda msg: None) -> list:
    """Compare each budget with the latency measured on that device. Devices of this machine are read from the
    report; a remote device (ssh / adb) is profiled there when on_device is set, else it is 'not-measured'. An
    emulated device's budget is 'not-judged' either way (timed with on_device, so the run still proves the path)."""
    results = []
    formats_of = {a["path"]: a["format"] for a in report["artifacts"]}
    for budget in recipe.budgets:
        profile = recipe.device(budget.device)
        runtime = _runtime_of(budget, profile)
        if profile.emulated:
            results.append(_not_judged(budget, profile, _on_device(recipe, budget, profile, report, progress)
                                       if on_device else None))
            continue
        match = [x for x in report["latency"] if x["runtime"] == runtime and x["precision"] == budget.precision
                 and _row_format(x, formats_of) == budget.format]
        if not profile.local:
            results.append(_on_device(recipe, budget, profile, report, progress) if on_device else
                           BudgetResult(budget, runtime, None, "not-measured",
                                        f"{profile.name} is reached over {profile.transport.kind.value}; run the "
                                        "recipe with --on-device, or `edgeseq profile ARTIFACT --device "
                                        f"{profile.name}`"))
        elif not match:
            results.append(BudgetResult(budget, runtime, None, "not-measured", f"no {runtime} latency in the report"))
        else:
            results.append(_verdict(budget, runtime, match[0][budget.metric]))
    return results


def _row_format(row: dict, formats_of: dict[str, str]) -> str:
    """The format of a latency row's artifact, from the report's artifact records (a torch row has no artifact)."""
    return formats_of.get(row["artifact"], "?") if row["artifact"] else Format.TORCH.value


def _runtime_of(budget: Budget, profile) -> str:
    """The runtime name of the report's latency row for a budget (what the matrix's runners call themselves)."""
    if budget.format == Format.TORCH.value:  # torch-cpu, torch-cuda-fp16, torch-cpu-int8: the TorchRunner's own
        from .formats.torch import runtime_label

        return runtime_label(profile.runner_device(), budget.precision)
    from . import formats

    return formats.get(budget.format).runtime_label(profile.runner_device())


def _verdict(budget: Budget, runtime: str, value: float) -> "BudgetResult":
    ok = value <= budget.limit_ms
    return BudgetResult(budget, runtime, value, "pass" if ok else "fail",
                        "" if ok else f"{budget.metric} {value:.2f} ms > {budget.limit_ms} ms")


def _not_judged(budget: Budget, profile, timed: "BudgetResult | None") -> "BudgetResult":
    """An emulator's time says how fast QEMU runs on this host: recorded, never compared with the budget."""
    runtime = timed.runtime if timed else f"{profile.runtime.value}@{profile.name}"
    if timed is not None and timed.measured_ms is None:  # it could not run there: that is still a failure
        return timed
    shown = f"{budget.metric} {timed.measured_ms:.2f} ms there is QEMU's speed" if timed else "its timings are QEMU's"
    return BudgetResult(budget, runtime, timed.measured_ms if timed else None, "not-judged",
                        f"not judged (emulated): {profile.name} runs under an emulator; {shown} on this host, not "
                        "the device's latency")


def _on_device(recipe: Recipe, budget: Budget, profile, report: dict, progress) -> "BudgetResult":
    """Time the budget's artifact on the remote device itself; a device that cannot run it fails the budget (the
    build asked for an on-device verdict)."""
    from . import api
    from .errors import EdgeseqError

    from . import formats

    suffix = formats.get(budget.format).handoff_suffix()  # what the device takes (a Jetson builds its own engine)
    found = [a for a in report["artifacts"] if a["format"] == budget.format and a["precision"] == budget.precision
             and a["path"].endswith(suffix)]
    label = f"{profile.runtime.value}@{profile.name}"
    if not found:
        return BudgetResult(budget, label, None, "fail", f"the build made no {budget.precision} {budget.format} "
                                                         f"artifact for {profile.name}")
    from .matrix import ProgressEvent

    progress(ProgressEvent(f"timing {Path(found[0]['path']).name} on {profile.name}", 1, 1))
    try:
        result = api.profile(found[0]["path"], device=profile, time=recipe.latency_time, warmup=recipe.warmup,
                             iterations=recipe.iterations, threads=recipe.threads)
    except EdgeseqError as exc:
        return BudgetResult(budget, label, None, "fail", str(exc))
    return _verdict(budget, result.runtime, getattr(result, budget.metric))


def write_manifest(recipe: Recipe, report: dict, budgets: list[BudgetResult], out_dir: Path,
                   baseline: dict | None = None) -> dict:
    """manifest.json: what an app build consumes (artifacts, checksums, sizes, I/O specs, versions, verdicts)."""
    artifacts = []
    for a in report["artifacts"]:
        rows = [p for p in report["parity"] if p["artifact"] == a["path"]]
        checks = [p["passed"] for p in rows]
        artifacts.append({
            "file": Path(a["path"]).name, "format": a["format"], "precision": a["precision"], "sha256": a["sha256"],
            "size_bytes": a["size_bytes"], "inputs": a["inputs"], "outputs": a["outputs"], "opset": a["opset"],
            "weights_sha256": a["weights_sha256"],
            # None: nothing here ran it (e.g. a TensorRT plan without an engine), so no parity is claimed
            "parity_passed": all(checks) if checks else None,
            # int8 parity holds per CPU: where each check ran, and (int8 ONNX) the CPUs its kernels are exact on
            "checked_on": [{"runtime": p["runtime"], "passed": p["passed"], "cpu": (p.get("cpu") or {}).get("model"),
                            "int8_isa": (p.get("cpu") or {}).get("int8_isa")} for p in rows],
            "int8_cpus": (a.get("quantization") or {}).get("int8_cpus"),
            "notes": list(a.get("notes", [])),
        })
    manifest = {
        "schema": "edgeseq.manifest/1",
        "recipe": recipe.to_dict(),
        "model": report["model"]["name"],
        "passed": report["passed"] and all(b.status != "fail" for b in budgets)
        and not (baseline or {}).get("regressed", False),
        "artifacts": artifacts,
        "budgets": [b.to_dict() for b in budgets],
        "baseline": baseline,
        "environment": report["environment"],
    }
    write_text_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def run_recipe(recipe: Recipe, out_root: str | Path, progress=lambda msg: None, *, on_device: bool = False,
               bisect: bool = True, out_label: str = "out_root") -> dict:
    """Build everything the recipe names into out_root/recipe.out; returns the manifest (also on disk). on_device:
    also time each budget's artifact on its remote device (ssh / adb) and judge the budget by that. bisect: name
    the first divergent layer of a failing row (off: --no-bisect). out_label: what an error about the output folder
    calls it (run_matrix checks it before any work; "--out" from the CLI)."""
    from .resolve import path_arg as _path
    from .matrix import MatrixOptions, run_matrix
    from .models import get_model

    spec = get_model(recipe.model)
    out_dir = _path(out_root, out_label) / recipe.out
    options = MatrixOptions(times=recipe.times, batches=recipe.batches, latency_time=recipe.latency_time,
                            threads=recipe.threads, warmup=recipe.warmup, iterations=recipe.iterations,
                            tolerances=dict(recipe.tolerances), bisect=bisect)  # on the model's own
    report = run_matrix(spec, recipe.formats, recipe.precisions, out_dir=out_dir, weights=recipe.weights,
                        options=options, progress=progress, out_label=out_label).to_dict()
    budgets = judge_budgets(recipe, report, on_device=on_device, progress=progress)
    baseline = None
    if recipe.baseline is not None:
        from .report import diff_reports, load_report

        base = recipe.baseline
        baseline = diff_reports(load_report(base.report), report, max_slowdown=base.max_slowdown,
                                max_error_growth=base.max_error_growth, old_label=base.report,
                                new_label=str(out_dir / "report.json")).to_dict()
    manifest = write_manifest(recipe, report, budgets, out_dir, baseline)
    manifest["report"] = report
    return manifest
