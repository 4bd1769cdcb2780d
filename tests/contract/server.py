"""A real `strata serve` on a scratch SQLite data directory, for the CI's browser, contract and
client checks: one `internal`-tier partner (no rate limits) is created with the operator CLI first,
so the caller gets its org id and `org:admin` key; the server listens on a free loopback port."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("STRATA_BIN", ROOT / "target" / "debug" / "strata"))
LOGS = ROOT / "target" / "contract-logs"


class Server:
    """`with Server("name") as srv:` gives `srv.base_url`, `srv.admin_key`, `srv.org_id`.

    The server's log (JSON lines) goes to target/contract-logs/<name>.log; its data directory is
    removed at the end."""

    def __init__(self, name: str, credits: int = 100_000_000, start_seconds: float = 60.0):
        self.name = name
        self.credits = credits
        self.start_seconds = start_seconds
        self.base_url = ""
        self.admin_key = ""
        self.org_id = ""
        self._dir: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    def cli(self, *args: str) -> str:
        """Runs an operator command on the server's data directory and returns its stdout."""
        assert self._dir is not None
        done = subprocess.run(
            [str(BINARY), "--data-dir", self._dir.name, *args],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"strata {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def __enter__(self) -> "Server":
        # A step's `timeout` sends SIGTERM: leave through __exit__ so the data directory goes.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} is missing: run `cargo build -p strata` first")
        self._dir = tempfile.TemporaryDirectory(prefix=f"strata-{self.name}-")
        created = json.loads(self.cli(
            "partners", "create", "--name", "Contract Partner", "--tier", "internal",
            "--credits", str(self.credits), "--json",
        ))
        self.org_id, self.admin_key = created["organizationId"], created["apiKey"]

        LOGS.mkdir(parents=True, exist_ok=True)
        self._log = open(LOGS / f"{self.name}.log", "wb")
        self._proc = subprocess.Popen(
            [str(BINARY), "--data-dir", self._dir.name, "serve", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=self._log, text=True,
        )
        listening: list[str] = []
        ready = threading.Event()

        def read_stdout() -> None:
            # `serve` prints "strata listening on http://ADDR (sqlite)" once bound.
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                if line.startswith("strata listening on "):
                    listening.append(line.split()[3])
                    ready.set()
            ready.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        if not ready.wait(self.start_seconds) or not listening:
            self.__exit__(None, None, None)
            raise RuntimeError(f"strata serve did not start; see {LOGS / (self.name + '.log')}")
        self.base_url = listening[0]
        return self

    def __exit__(self, *_exc) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
        if self._dir is not None:
            self._dir.cleanup()
