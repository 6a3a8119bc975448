"""Starts a real `ormdb serve` process for tests: free loopback ports, an ipc socket in a
temporary directory, readiness from its "listening" line, SIGTERM to stop it. Shared by the
binding's remote tests and the SQLAlchemy adapter's (which add this directory to sys.path)."""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[3]
# scripts/test.sh builds the binary (cargo build --features ormdb/cli) before the Python suites;
# ORMDB_BIN points at another build.
BIN = Path(os.environ.get("ORMDB_BIN", ROOT / "target" / "debug" / "ormdb"))

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp: Path, tcp: Optional[str] = None, extra: Optional[list] = None) -> None:
        # A restart passes the previous server's tcp URL (the ipc path is fixed per directory).
        # Ports picked here may be taken by another process before the server binds them (the
        # machine is shared): then start again on other ports.
        for attempt in range(5):
            try:
                self._start(tmp, tcp, extra or [])
                return
            except RuntimeError as e:
                if tcp is not None or "Address in use" not in str(e) or attempt == 4:
                    raise

    def _start(self, tmp: Path, tcp: Optional[str], extra: list) -> None:
        self.tcp = tcp or f"tcp://127.0.0.1:{free_port()}"
        self.ipc = f"ipc://{tmp / 'req.sock'}"
        # The change endpoints are given, not left to their default (the request port + 1,
        # which nothing reserved); clients learn them in the handshake.
        changes = [
            "--changes-listen",
            f"tcp://127.0.0.1:{free_port()}",
            "--changes-listen",
            f"ipc://{tmp / 'changes.sock'}",
        ]
        self.proc = subprocess.Popen(
            [str(BIN), "serve", str(tmp / "db"), "--listen", self.tcp, "--listen", self.ipc, *changes, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if "listening on" in line:
                    ready.set()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not ready.wait(0.1):
            if self.proc.poll() is not None:
                reader.join(timeout=5)  # the rest of its output, for the message
                raise RuntimeError(f"ormdb serve exited early: {''.join(self.lines)}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("ormdb serve did not start within 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
