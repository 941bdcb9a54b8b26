"""Running artifacts on other machines: ssh (OpenSSH client) and adb (Android), behind the Runner interface.

    connect(profile)                  -> Connection (SshConnection | AdbConnection) for a profile's [transport]
    runner_for(path, profile, ...)    -> Runner: RemoteRunner (edgeseq's device agent, outputs + timings) or,
                                         for latency on an adb phone, BenchmarkModelRunner (LiteRT benchmark_model)

Parity is always computed here, against the PyTorch original; the device only runs the artifact.
"""

from __future__ import annotations

from pathlib import Path

from ..devices import DeviceProfile, Runtime, TransportKind
from ..errors import InputError
from .connection import Connection, RetryPolicy


def connect(profile: DeviceProfile, *, retry: RetryPolicy = RetryPolicy()) -> Connection:
    t = profile.transport
    if t.kind is TransportKind.SSH:
        from .ssh import SshConnection

        return SshConnection(t.host, user=t.user, port=t.port, key=t.key, known_hosts=t.known_hosts,
                             label=f"{profile.name} ({(t.user + '@') if t.user else ''}{t.host}:{t.port})",
                             retry=retry)
    if t.kind is TransportKind.ADB:
        from .adb import AdbConnection

        return AdbConnection(t.serial, label=f"{profile.name} (adb {t.serial or 'default device'})", retry=retry)
    raise InputError(f"device {profile.name!r} is local; it needs no connection")


def runner_for(path: str | Path, profile: DeviceProfile, *, threads: int | None = None, timing_only: bool = False,
               retry: RetryPolicy = RetryPolicy()):
    """The runner for `path` on a remote profile. timing_only picks benchmark_model on adb LiteRT phones."""
    connection = connect(profile, retry=retry)
    if timing_only and profile.transport.kind is TransportKind.ADB and profile.runtime is Runtime.LITERT:
        from .adb import BenchmarkModelRunner

        return BenchmarkModelRunner(path, profile, connection, threads=threads)
    from .runner import RemoteRunner

    return RemoteRunner(path, profile, connection, threads=threads)
