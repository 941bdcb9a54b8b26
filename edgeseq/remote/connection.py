"""What a remote runner needs from a transport: run a shell command, push files, pull files, close.

ssh.py and adb.py implement it with the system `ssh` / `scp` and `adb` clients (subprocesses: no Python ssh library,
and the user's own ssh config, agent and jump hosts keep working). Both share the retry policy here: a failure to
*reach* the device (refused, timed out, reset, device offline) is retried with exponential backoff; a failure that
retrying cannot fix (auth, host key, a missing program) is one DeviceError line at once.
"""

from __future__ import annotations

import abc
import re
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import DeviceError, InputError

SAFE_PATH = re.compile(r"^[A-Za-z0-9_./~+-]+$")  # remote paths we build never need quoting inside scp / adb


@dataclass(frozen=True)
class Completed:
    """A finished command (ours or the transport client's)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def err_text(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    @property
    def out_text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


Executor = Callable[[Sequence[str], float], Completed]


def run_subprocess(argv: Sequence[str], timeout: float) -> Completed:
    """The default executor: run argv with no stdin, capture both streams, never leave it running."""
    try:
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise DeviceError(f"{argv[0]!r} is not installed on this machine (it is needed to reach the device)") from None
    except subprocess.TimeoutExpired:
        raise DeviceTimeout(f"{argv[0]} did not finish within {timeout:.0f} s") from None
    return Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


class DeviceTimeout(DeviceError):
    """A command ran past its time limit."""


class Unreachable(DeviceError):
    """The device could not be reached; worth another try."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    backoff_s: float = 0.5  # then x2 each try: 0.5 s, 1 s, ... (bounded by attempts)

    def delays(self):
        for i in range(self.attempts - 1):
            yield self.backoff_s * (2 ** i)


def with_retries(step: Callable[[], Completed], policy: RetryPolicy,
                 sleep: Callable[[float], None] = time.sleep) -> Completed:
    """Run step(); on Unreachable try again after the policy's delays, then raise one line saying how many tries."""
    delays = list(policy.delays())
    started = time.monotonic()
    for attempt in range(len(delays) + 1):
        try:
            return step()
        except Unreachable as exc:
            if attempt == len(delays):
                tries = f"{attempt + 1} tries" if attempt else "1 try"
                raise Unreachable(f"{exc} ({tries} over {time.monotonic() - started:.1f} s)") from None
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


def last_line(text: str, default: str = "") -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else default


class Connection(abc.ABC):
    """One device, one session directory on it. `label` names it in every error ('raspberry-pi-5 (pi@host:22)')."""

    label: str

    @abc.abstractmethod
    def run(self, command: str, *, timeout: float, retry: RetryPolicy | None = None) -> Completed:
        """Run a shell command line on the device (already quoted); raise DeviceError if the device is not reached
        (after the connection's retries, or `retry`'s)."""

    @abc.abstractmethod
    def push(self, local_paths: Sequence[str], remote_dir: str) -> None:
        """Copy local files into an existing directory on the device, in one transfer where the client allows."""

    @abc.abstractmethod
    def pull(self, remote_paths: Sequence[str], local_dir: str) -> None:
        """Copy files from the device into a local directory."""

    def close(self) -> None:
        """Release what the connection holds (an ssh control master); idempotent."""

    # ---- shared by the transports: they set `execute` (argv, timeout -> Completed), `retry` and `label` ---------
    def attempt(self, argv: Sequence[str], timeout: float, check: Callable[[Completed], None],
                retry: RetryPolicy | None = None) -> Completed:
        """Run a client command (ssh, scp, adb), let `check` raise for its failures (Unreachable when a retry can
        help), and retry per the policy; a timeout names the device."""

        def step() -> Completed:
            try:
                done = self.execute(argv, timeout)
            except DeviceTimeout as exc:
                raise DeviceTimeout(f"{self.label}: {exc}") from None
            check(done)
            return done

        return with_retries(step, retry or self.retry)


def validate_remote_path(path: str, where: str) -> str:
    if not SAFE_PATH.match(path) or ".." in path.split("/"):
        raise InputError(f"{where}: remote path {path!r} may only use letters, digits and _ . / ~ + - (no '..')")
    return path
