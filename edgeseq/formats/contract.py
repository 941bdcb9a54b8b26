"""The contract every format package meets: the only questions the rest of edgeseq asks of a format.

A format package defines one `ExportFormat` subclass and registers its instance in `formats/__init__.py`; nothing
outside `formats/` knows a format's suffix, options, runtime names or quantization defaults.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from .._checks import integer
from ..enums import Format, Precision
from ..errors import InputError, UnsupportedError

if TYPE_CHECKING:  # pragma: no cover
    from ..artifact import Artifact
    from ..quantize import Approach, QuantConfig
    from ..runner import Runner


# what each export setting is, for the one-line error when a format does not take it
SETTING_WHAT = {
    "shapes": ("--shapes", "the engine's optimization profile"),
    "max_time": ("max_time", "the longest T they serve"),
    "quant": ("--quant", "changes to the quantization defaults"),
    "calibration": ("--calibration", "int8-static calibration data"),
    "parent": ("parent", "the fp32 file fp16 / int8 derive from"),
}


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """The flat export settings of the API, CLI and recipes; a format turns the ones it takes into its options."""

    opset: int = 17
    exporter: str = "torchscript"
    shapes: tuple[str, ...] | dict | None = None
    max_time: int | None = None
    quant: object | None = None
    calibration: str | None = None
    calibration_data: tuple | None = dataclasses.field(default=None, compare=False, repr=False)
    parent: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "opset", integer(self.opset, "opset"))
        object.__setattr__(self, "max_time", integer(self.max_time, "max_time", optional=True))
        if isinstance(self.shapes, str):
            object.__setattr__(self, "shapes", (self.shapes,))  # one NAME=MIN:OPT:MAX, not its characters
        if self.calibration_data is not None and not isinstance(self.calibration_data, tuple):
            object.__setattr__(self, "calibration_data", tuple(self.calibration_data))

    def given(self) -> set[str]:
        """The optional settings that were set (opset and exporter always have a value)."""
        out = {name for name in ("shapes", "max_time", "calibration", "parent") if getattr(self, name)}
        out |= {"quant"} if self.quant else set()
        out |= {"calibration"} if self.calibration_data is not None else set()
        return out


class ExportFormat(ABC):
    """One export format: its facts (class attributes) and what it does (methods)."""

    format: ClassVar[Format]
    title: ClassVar[str]  # how messages name it: "ONNX", "TFLite", "TensorRT"
    extra: ClassVar[str]  # pip install 'edgeseq[<extra>]' brings what export + run need
    precisions: ClassVar[tuple[Precision, ...]]
    suffixes: ClassVar[tuple[str, ...]]  # the file suffixes it reads; suffixes[0] is what export writes
    needs: ClassVar[tuple[str, ...]]  # modules export + run need importable (found by spec, never imported)
    settings: ClassVar[frozenset[str]] = frozenset()  # which of ExportSettings.given() it takes
    runtime: ClassVar[str]  # the runtime's name in runner labels: "<runtime>-<device>"
    folder: ClassVar[bool] = False  # the artifact is a folder (Core ML's .mlpackage), not one file
    # device-profile runtimes whose agent opens this file as it is, besides the runtime whose own format it is
    # (ORT: "onnxruntime", which loads an .ort like an .onnx), so a device reached over ssh runs it too
    device_runtimes: ClassVar[tuple[str, ...]] = ()
    # self-contained modules of this format's package (numpy and the runtime only, Python 3.8+) that the device agent
    # ships beside its own, flat in its zip: what runs the format's file on a device (ExecuTorch: the plan's interpreter)
    agent_modules: ClassVar[tuple[str, ...]] = ()

    # ---- facts ------------------------------------------------------------------------------------------------
    def artifact_name(self, model_name: str, precision: Precision) -> str:
        return f"{model_name}.{Precision.parse(precision).value}{self.suffixes[0]}"

    def handoff_suffix(self) -> str:
        """What a device that builds its own file from this export receives (TensorRT: the preflighted ONNX)."""
        return self.suffixes[0]

    def looks_like(self, head: bytes) -> bool:
        """Whether a file's first 8 bytes can be this format (cheap sanity check behind the suffix)."""
        return True

    def looks_like_folder(self, path: Path) -> bool:
        """For a folder format: whether the folder can be this format (its manifest is there)."""
        return False

    def install_hint(self) -> str:
        return f"pip install 'edgeseq[{self.extra}]'"

    # ---- export ------------------------------------------------------------------------------------------------
    def validate_precision(self, precision: Precision, options=None) -> None:
        if Precision.parse(precision) not in self.precisions:
            have = ", ".join(p.value for p in self.precisions)
            raise UnsupportedError(f"{self.title} export at {precision.value} is not available (it has: {have})")

    def refuse_settings(self, settings: ExportSettings) -> None:
        """A setting this format does not take is an InputError naming the formats that do."""
        for name in sorted(settings.given() - self.settings):
            raise InputError(f"{setting_takers(name)}; {self.format.value} does not take it")

    def options(self, precision: Precision, settings: ExportSettings = ExportSettings()):
        """This format's options object for one export; settings it does not take are errors, before any work."""
        precision = Precision.parse(precision)
        self.refuse_settings(settings)
        return self._options(precision, settings)

    @abstractmethod
    def _options(self, precision: Precision, settings: ExportSettings): ...

    @abstractmethod
    def export(self, spec, out: str | Path, *, precision: Precision = Precision.FP32, options=None,
               weights=None) -> "Artifact":
        """Convert only (never validate): spec -> one file written atomically, described by an Artifact."""

    def refuses(self, spec) -> str:
        """Why this format cannot export the model at all ('' when it can); the support table leaves such pairs out
        and export refuses them in one line before any work."""
        return ""

    def validate_plan(self, spec, options) -> None:
        """Checks that need the model (TensorRT: the shape profile against its inputs), before anything is written."""

    def sweep_limits(self, options) -> dict[str, int]:
        """The largest T / batch the artifact will serve ({} when any), so a parity sweep is checked up front."""
        return {}

    # ---- quantization ------------------------------------------------------------------------------------------
    def quant_defaults(self) -> "dict[Approach, QuantConfig]":
        """The measured default QuantConfig per approach; empty when the format quantizes with its own tool's
        defaults and takes no QuantConfig."""
        return {}

    def default_quant(self, precision: Precision | str) -> "QuantConfig":
        from ..quantize import Approach

        approach = Approach.for_precision(precision)
        try:
            return self.quant_defaults()[approach]
        except KeyError:
            raise UnsupportedError(f"no {approach.value} quantization defaults for {self.format.value}") from None

    def quant_config(self, precision: Precision | str, quant=None) -> "QuantConfig":
        """The default for the precision with `quant` (a QuantConfig, a dict or KEY=VALUE strings) on top."""
        from ..quantize import apply_quant

        config = apply_quant(self.default_quant(precision), quant)
        self.validate_quant(config)
        return config

    def validate_quant(self, config: "QuantConfig") -> None:
        """A config naming ops this format's quantizer does not know is an InputError (it would quantize nothing)."""

    # ---- run ---------------------------------------------------------------------------------------------------
    @abstractmethod
    def runner(self, path: str | Path, *, device: str | None = None, threads: int | None = None) -> "Runner": ...

    @abstractmethod
    def runtime_devices(self) -> list[str]:
        """The runner devices this machine has for the format (cpu first)."""

    def runtime_label(self, device: str) -> str:
        """The runtime name a runner on `device` reports (how reports and budgets name its rows)."""
        return f"{self.runtime}-{device}"

    # ---- metadata -----------------------------------------------------------------------------------------------
    @abstractmethod
    def read_metadata(self, path: str | Path) -> dict[str, str]:
        """An artifact's edgeseq metadata read on this host (no session, no device)."""

    def update_metadata(self, path: str | Path, items: dict[str, str]) -> bool:
        """Add entries in place; False when the format keeps no writable metadata."""
        return False

    # ---- bisection ----------------------------------------------------------------------------------------------
    def layer_outputs(self, path: str | Path, module, feed: dict, spec, expected: dict) -> tuple[dict, set, dict]:
        """(module -> tensor name, modules whose tensors mix several, module -> value): what the artifact computed
        at each PyTorch module it kept, for layer bisection."""
        raise UnsupportedError(f"layer bisection is not available for {self.format.value} artifacts")

    @property
    def has_layer_taps(self) -> bool:
        return type(self).layer_outputs is not ExportFormat.layer_outputs


def validate_contract(fmt: ExportFormat) -> list[str]:
    """What a registered format lacks (tests/test_format_contract.py asks this of every one)."""
    missing = [name for name in ("format", "title", "extra", "precisions", "suffixes", "needs", "runtime")
               if not hasattr(type(fmt), name)]
    if not missing:
        if not fmt.suffixes or not all(s.startswith(".") for s in fmt.suffixes):
            missing.append("suffixes (each starting with '.')")
        if not fmt.precisions or Precision.FP32 not in fmt.precisions:
            missing.append("precisions (fp32 among them)")
        unknown = fmt.settings - set(SETTING_WHAT)
        if unknown:
            missing.append(f"settings {sorted(unknown)} not in SETTING_WHAT")
    return missing


def setting_takers(name: str) -> str:
    """'--shapes applies to TensorRT exports only (the engine's optimization profile)': the start of the error for
    a setting given where it does not apply."""
    from . import registered

    flag, what = SETTING_WHAT[name]
    takers = " / ".join(f.title for f in registered() if name in f.settings) or "no"
    return f"{flag} applies to {takers} exports only ({what})"
