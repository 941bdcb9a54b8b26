"""Device profiles (devices/*.toml): what a device runs and how to reach it, validated on load.

A profile is data, not code: unknown keys, wrong types and missing fields are one-line errors naming the file and
the key, so a typo in a CI config fails loudly instead of silently running on the wrong delegate.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from .enums import Format, Precision, _Named
from .errors import InputError, UnknownNameError
from .parity import validate_rel_l2
from .tomlfile import validate_table, read_toml


class Runtime(_Named):
    ONNXRUNTIME = "onnxruntime"
    LITERT = "litert"
    TENSORRT = "tensorrt"
    TORCH = "torch"
    COREML = "coreml"
    EXECUTORCH = "executorch"


class Delegate(_Named):
    CPU = "cpu"
    XNNPACK = "xnnpack"
    GPU = "gpu"
    NNAPI = "nnapi"
    CUDA = "cuda"
    TENSORRT = "tensorrt"
    ANE = "ane"  # Core ML: CPU + Neural Engine (ct.ComputeUnit.CPU_AND_NE)
    ALL = "all"  # Core ML: every compute unit, Core ML's own choice (ct.ComputeUnit.ALL)


class TransportKind(_Named):
    LOCAL = "local"
    SSH = "ssh"
    ADB = "adb"


# edgeseq's runners on this machine, per runtime: the delegates they honour (the format each opens: RUNTIME_FORMAT)
_LOCAL_DELEGATES = {
    Runtime.ONNXRUNTIME: (Delegate.CPU, Delegate.CUDA, Delegate.GPU, Delegate.TENSORRT),
    Runtime.LITERT: (Delegate.CPU, Delegate.XNNPACK),
    Runtime.TENSORRT: (Delegate.TENSORRT, Delegate.CUDA, Delegate.GPU),
    Runtime.TORCH: (Delegate.CPU, Delegate.CUDA, Delegate.GPU),
    Runtime.COREML: (Delegate.CPU, Delegate.GPU, Delegate.ANE, Delegate.ALL),  # on macOS; a Mac over ssh otherwise
    Runtime.EXECUTORCH: (Delegate.CPU, Delegate.XNNPACK),
}
RUNTIME_FORMAT = {Runtime.ONNXRUNTIME: Format.ONNX, Runtime.LITERT: Format.TFLITE, Runtime.TENSORRT: Format.TENSORRT,
                  Runtime.TORCH: Format.TORCH, Runtime.COREML: Format.COREML, Runtime.EXECUTORCH: Format.EXECUTORCH}


ADB_REMOTE_DIR = "/data/local/tmp/edgeseq"


@dataclass(frozen=True)
class Transport:
    kind: TransportKind
    host: str = ""
    user: str = ""
    port: int = 22
    key: str = ""
    python: str = "python3"
    serial: str = ""
    remote_dir: str = "/tmp/edgeseq"
    known_hosts: str = ""  # ssh: a known_hosts file to check the host key against strictly (default: ssh's own)
    benchmark_model: str = ""  # adb: LiteRT's benchmark_model on the device (default: remote_dir/benchmark_model)
    trtexec: str = ""  # tensorrt over ssh: TensorRT's trtexec on the device (default: trtexec on its PATH)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kind"] = self.kind.value
        return d


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    runtime: Runtime
    delegate: Delegate
    transport: Transport
    threads: int | None = None
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    tolerances: dict[str, float] = field(default_factory=dict)  # precision -> rel L2, overriding the model's
    source: str = ""
    emulated: bool = False  # an emulator (QEMU): its numerics are the device's kernels, its timings are not latency
    cpu: str = ""  # the core the profile is for (QEMU_CPU for an emulated one): kernels, and so int8 / fp16 parity,
    # follow the core, so two profiles of one board can differ only here

    @property
    def format(self) -> Format:
        return RUNTIME_FORMAT[self.runtime]

    @property
    def local(self) -> bool:
        return self.transport.kind is TransportKind.LOCAL

    def validate_local(self, fmt: Format, takes: str = "") -> None:
        """Refuse an artifact this profile's runtime cannot open here, or a delegate edgeseq's local runner for
        that runtime would not use: the run would otherwise go to another runtime or provider and say nothing.
        `takes`: the file suffix of the runtime's format, for the message (the format package knows it)."""
        delegates = _LOCAL_DELEGATES[self.runtime]
        if self.runtime is Runtime.TORCH:  # local-cuda: the PyTorch rows' device, not one for files
            gpu = self.delegate is not Delegate.CPU
            where, use = ("this GPU", "--device cuda (ONNX Runtime's CUDA provider)") if gpu else ("this CPU",
                                                                                                  "--device cpu")
            raise InputError(f"device {self.name!r} is PyTorch on {where} (what the matrix's torch-"
                             f"{'cuda' if gpu else 'cpu'} rows and recipe budgets time), not a runtime for artifact "
                             f"files; to run an .onnx on {where} use {use}")
        if fmt is not RUNTIME_FORMAT[self.runtime]:
            raise InputError(f"device {self.name!r} runs {self.runtime.value}, which takes "
                             f"{takes or RUNTIME_FORMAT[self.runtime].value} files; this artifact is {fmt.value}")
        if self.delegate not in delegates:
            raise InputError(f"device {self.name!r}: edgeseq runs {self.runtime.value} on this machine with "
                             f"{', '.join(d.value for d in delegates)}, not the {self.delegate.value} delegate")

    def validate_precision(self, fmt: Format, precision: Precision) -> None:
        """`precisions` are those the device runs: an artifact outside them is refused. A TensorRT device given an
        ONNX builds its engine at its own precision, so that pairing is not judged by the ONNX's."""
        if fmt is self.format and precision not in self.precisions:
            raise InputError(f"device {self.name!r} runs {', '.join(p.value for p in self.precisions)}; "
                             f"the artifact is {precision.value}")

    def runner_device(self) -> str:
        """What a local runner's `device=` gets: the delegate, in the runner's terms (Core ML's are its own)."""
        if self.runtime is Runtime.COREML:
            return self.delegate.value
        return {Delegate.XNNPACK: "cpu", Delegate.NNAPI: "cpu", Delegate.GPU: "cuda"}.get(self.delegate, self.delegate.value)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "runtime": self.runtime.value,
            "delegate": self.delegate.value,
            "threads": self.threads,
            "precisions": [p.value for p in self.precisions],
            "tolerances": dict(self.tolerances),
            "transport": self.transport.to_dict(),
            "source": self.source,
            "emulated": self.emulated,
            "cpu": self.cpu,
        }


# ---- loading and validation -----------------------------------------------------------------------------------------

_TOP = {"name": str, "description": str, "runtime": str, "delegate": str, "threads": int, "precisions": list,
        "transport": dict, "tolerances": dict, "emulated": bool, "cpu": str}
_REQUIRED = ("name", "runtime", "delegate", "transport")
_TRANSPORT = {"kind": str, "host": str, "user": str, "port": int, "key": str, "python": str, "serial": str,
              "remote_dir": str, "known_hosts": str, "benchmark_model": str, "trtexec": str}
_TRANSPORT_REQUIRED = {TransportKind.SSH: ("host",), TransportKind.ADB: (), TransportKind.LOCAL: ()}


def parse_device_profile(data: dict, source: str) -> DeviceProfile:
    validate_table(data, _TOP, source)
    for key in _REQUIRED:
        if key not in data:
            raise InputError(f"{source}: missing required key {key!r}")
    validate_table(data["transport"], _TRANSPORT, f"{source} [transport]")
    try:
        runtime = Runtime.parse(data["runtime"])
        delegate = Delegate.parse(data["delegate"])
        kind = TransportKind.parse(data["transport"].get("kind", ""))
        precisions = tuple(Precision.parse(p) for p in data.get("precisions", ["fp32"]))
    except UnknownNameError as exc:
        raise InputError(f"{source}: {exc}") from None
    for key in _TRANSPORT_REQUIRED[kind]:
        if not data["transport"].get(key):
            raise InputError(f"{source} [transport]: {kind.value} needs {key!r}")
    threads = data.get("threads")
    if threads is not None and threads < 1:
        raise InputError(f"{source}: 'threads' must be >= 1")
    tolerances = {}
    for prec, value in data.get("tolerances", {}).items():
        try:
            Precision.parse(prec)
        except UnknownNameError as exc:
            raise InputError(f"{source} [tolerances]: {exc}") from None
        tolerances[prec] = validate_rel_l2(value, f"{source} [tolerances]: {prec!r}")
    fields = {k: v for k, v in data["transport"].items() if k != "kind"}
    if kind is TransportKind.ADB:  # Android's /tmp is not there for a shell user; /data/local/tmp is
        fields.setdefault("remote_dir", ADB_REMOTE_DIR)
    transport = Transport(kind=kind, **fields)
    return DeviceProfile(name=data["name"], description=data.get("description", ""), runtime=runtime,
                         delegate=delegate, transport=transport, threads=threads, precisions=precisions,
                         tolerances=tolerances, source=source, emulated=data.get("emulated", False),
                         cpu=data.get("cpu", ""))


def load_profile(path: str | Path) -> DeviceProfile:
    return parse_device_profile(read_toml(path, "device profile"), str(path))


def builtin_dir() -> Path:
    """devices/ of a source checkout, or the copy shipped inside the wheel."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "devices").is_dir():
        return root / "devices"
    return Path(str(resources.files("edgeseq") / "_data" / "devices"))


def user_dir() -> Path:
    """Profiles this machine adds (tools/arm64-target writes its own here): $EDGESEQ_DEVICES_DIR, else
    $XDG_CONFIG_HOME/edgeseq/devices (~/.config/edgeseq/devices)."""
    if os.environ.get("EDGESEQ_DEVICES_DIR"):
        return Path(os.environ["EDGESEQ_DEVICES_DIR"])
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "edgeseq" / "devices"


def list_profiles(user: bool = False) -> list[DeviceProfile]:
    """The shipped profiles; with user, also those in user_dir() whose names no shipped one takes."""
    shipped = [load_profile(p) for p in sorted(builtin_dir().glob("*.toml"))]
    taken = {p.name for p in shipped}
    mine = sorted(user_dir().glob("*.toml")) if user and user_dir().is_dir() else []
    return shipped + [load_profile(p) for p in mine if p.stem not in taken]


def get_profile(name_or_path: str | Path) -> DeviceProfile:
    """A shipped profile by name, else one in user_dir() by name, or a .toml path."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        return load_profile(text)
    for folder in (builtin_dir(), user_dir()):
        candidate = folder / f"{text}.toml"
        if candidate.is_file():
            return load_profile(candidate)
    names = ", ".join(sorted(p.stem for p in builtin_dir().glob("*.toml")))
    mine = ", ".join(sorted(p.stem for p in user_dir().glob("*.toml"))) if user_dir().is_dir() else ""
    raise UnknownNameError(f"unknown device {text!r}; shipped profiles: {names}; in {user_dir()}: {mine or 'none'} "
                           "(tools/arm64-target up adds arm64-qemu there), or pass a path to a .toml")


PLAIN_DEVICES = ("cpu", "cuda", "tensorrt")


def resolve_device(value: str | None) -> DeviceProfile | None:
    """`--device` takes a plain runner device (cpu, cuda, tensorrt), a shipped profile name, or a .toml path."""
    if value is None or value.split(":")[0] in PLAIN_DEVICES:
        return None
    return get_profile(value)
