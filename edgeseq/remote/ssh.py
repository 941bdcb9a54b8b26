"""ssh transport: the system OpenSSH client (`ssh`, `scp`) in subprocesses.

One control master per connection (OpenSSH multiplexing) so a check's handful of commands authenticate once; every
command still works without it (ControlMaster=no falls back to a direct connection). BatchMode means ssh never
prompts: a missing or wrong key is an authentication error, not a hang.

Host keys: with `known_hosts` in the profile the key is checked strictly against that file; without it ssh's own
known_hosts is used and a first-seen host is accepted (StrictHostKeyChecking=accept-new), a changed key never is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import DeviceError
from .connection import (Completed, Connection, Executor, RetryPolicy, Unreachable, last_line, run_subprocess,
                         with_retries)

CONNECT_TIMEOUT_S = 10
MASTER_IDLE_S = 600
# ssh's own words for "could not get there (this time)": worth another try
_TRANSIENT = ("connection refused", "connection timed out", "operation timed out", "timed out during banner exchange",
              "connection reset", "connection closed by", "closed by remote host", "broken pipe", "no route to host",
              "network is unreachable", "kex_exchange_identification", "connection lost", "connection closed")
_AUTH = ("permission denied", "too many authentication failures", "no supported authentication methods")
_HOST_KEY = ("host key verification failed", "remote host identification has changed", "host key for")


class SshConnection(Connection):
    def __init__(self, host: str, *, user: str = "", port: int = 22, key: str = "", known_hosts: str = "",
                 label: str = "", retry: RetryPolicy = RetryPolicy(), multiplex: bool | None = None,
                 executor: Executor = run_subprocess, ssh: str = "ssh", scp: str = "scp"):
        self.host, self.user, self.port = host, user, port
        self.key = os.path.expanduser(key) if key else ""
        self.known_hosts = os.path.expanduser(known_hosts) if known_hosts else ""
        self.target = f"{user}@{host}" if user else host
        self.label = label or f"{self.target}:{port}"
        self.retry = retry
        self.multiplex = (os.name != "nt") if multiplex is None else multiplex
        self.execute = executor
        self.ssh, self.scp = ssh, scp
        self._control_dir: str | None = None
        self._master = False

    # ---- options -----------------------------------------------------------------------------------------------
    def options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self.key:
            opts += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        else:
            opts += ["-o", "StrictHostKeyChecking=accept-new"]
        if self._control_dir:
            opts += ["-o", f"ControlPath={self._control_dir}/cm", "-o", "ControlMaster=no"]
        return opts

    def ssh_argv(self, command: str) -> list[str]:
        return [self.ssh, *self.options(), "-p", str(self.port), self.target, command]

    def _scp_host(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}" if self.user else host

    def scp_push_argv(self, local_paths: Sequence[str], remote_dir: str) -> list[str]:
        return [self.scp, "-B", *self.options(), "-P", str(self.port), *local_paths,
                f"{self._scp_host()}:{remote_dir}/"]

    def scp_pull_argv(self, remote_paths: Sequence[str], local_dir: str) -> list[str]:
        return [self.scp, "-B", *self.options(), "-P", str(self.port),
                *(f"{self._scp_host()}:{p}" for p in remote_paths), local_dir]

    # ---- errors ------------------------------------------------------------------------------------------------
    def classify(self, done: Completed, *, ssh_exit: bool) -> None:
        """Raise for a failure of ssh itself (not of the remote command): Unreachable when a retry can help."""
        text = done.err_text
        low = text.lower()
        failed_client = (done.returncode == 255) if ssh_exit else done.returncode != 0
        if not failed_client:
            return
        line = _reason(text, f"{Path(done.argv[0]).name} exited with {done.returncode}")
        if any(s in low for s in _AUTH):
            how = f"key {self.key}" if self.key else "the agent / default keys"
            raise DeviceError(f"{self.label}: ssh authentication failed for {self.target} with {how}: {line}")
        if any(s in low for s in _HOST_KEY):
            where = self.known_hosts or "~/.ssh/known_hosts"
            raise DeviceError(f"{self.label}: the host key of {self.host} does not match {where}: {line}")
        if "could not resolve hostname" in low:
            raise DeviceError(f"{self.label}: cannot resolve host {self.host!r}: {line}")
        if any(s in low for s in _TRANSIENT) or (ssh_exit and not text.strip()):
            raise Unreachable(f"{self.label}: cannot reach the device: {line}")
        if ssh_exit:
            raise DeviceError(f"{self.label}: ssh failed: {line}")

    # ---- control master ----------------------------------------------------------------------------------------
    def open(self) -> None:
        """Start the control master (authenticates once); without multiplexing, only check that we get in."""
        if self._master:
            return
        if not self.multiplex:
            self.run("true", timeout=CONNECT_TIMEOUT_S + 20)
            return
        base = "/tmp" if os.path.isdir("/tmp") else None
        self._control_dir = tempfile.mkdtemp(prefix="edgeseq-ssh-", dir=base)
        control = f"{self._control_dir}/cm"

        def start() -> Completed:
            log = Path(self._control_dir) / "master.log"
            # a first session ("true") opens the master; ControlPersist keeps it in the background afterwards (and
            # ends it after 10 idle minutes should close() never come). Not -N: a -N master refuses mux sessions.
            argv = [self.ssh, *self.options_without_control(), "-o", f"ControlPath={control}", "-o",
                    "ControlMaster=yes", "-o", f"ControlPersist={MASTER_IDLE_S}", "-p", str(self.port), self.target,
                    "true"]
            # the master stays in the background holding its stderr: give it a file, never our pipe
            with open(log, "wb") as err:
                try:
                    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                          timeout=CONNECT_TIMEOUT_S + 20)
                except FileNotFoundError:
                    raise DeviceError(f"{self.ssh!r} is not installed on this machine (the OpenSSH client is "
                                      "needed to reach ssh devices)") from None
                except subprocess.TimeoutExpired:
                    raise Unreachable(f"{self.label}: no answer within {CONNECT_TIMEOUT_S + 20} s") from None
            done = Completed(tuple(argv), proc.returncode, b"", log.read_bytes())
            self.classify(done, ssh_exit=True)
            if done.returncode != 0:
                raise DeviceError(f"{self.label}: ssh failed: {last_line(done.err_text, 'no message')}")
            return done

        try:
            with_retries(start, self.retry)
        except BaseException:
            self._cleanup_dir()
            raise
        self._master = True

    def options_without_control(self) -> list[str]:
        saved, self._control_dir = self._control_dir, None
        try:
            return self.options()
        finally:
            self._control_dir = saved

    def close(self) -> None:
        if self._master and self._control_dir:
            try:
                subprocess.run([self.ssh, "-o", f"ControlPath={self._control_dir}/cm", "-O", "exit", "-p",
                                str(self.port), self.target], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._master = False
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._control_dir:
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = None

    # ---- Connection --------------------------------------------------------------------------------------------
    def run(self, command: str, *, timeout: float, retry: RetryPolicy | None = None) -> Completed:
        return self.attempt(self.ssh_argv(command), timeout, lambda done: self.classify(done, ssh_exit=True), retry)

    def push(self, local_paths: Sequence[str], remote_dir: str) -> None:
        self._copy(self.scp_push_argv(local_paths, remote_dir), "push")

    def pull(self, remote_paths: Sequence[str], local_dir: str) -> None:
        self._copy(self.scp_pull_argv(remote_paths, local_dir), "pull")

    def _copy(self, argv: list[str], what: str) -> None:
        def check(done: Completed) -> None:
            try:
                self.classify(done, ssh_exit=False)
            except Unreachable as exc:
                if _reason(done.err_text).lower() == "scp: connection closed":  # also what a missing SFTP server says
                    raise Unreachable(f"{exc} (or the device has no SFTP server, which OpenSSH's scp needs)") from None
                raise
            if done.returncode != 0:
                raise DeviceError(f"{self.label}: scp {what} failed: {last_line(done.err_text, 'no message')}")

        self.attempt(argv, 600, check)


def _reason(text: str, default: str = "") -> str:
    """ssh's own line about the failure ("ssh: connect to host ...") over scp's generic "Connection closed"."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    own = [ln for ln in lines if ln.startswith("ssh: ")]
    return (own or lines or [default])[-1][:300]
