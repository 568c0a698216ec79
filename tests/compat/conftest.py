"""Fixtures for the real-client compatibility suite: a `strata serve` process per test.

The broker binary comes from $STRATA_BIN, else $CARGO_TARGET_DIR/debug/strata, else
<repo>/target/debug/strata. Each broker gets its own temp dir (data + stderr log) and free
ports; when a test fails, the tail of every broker log it used is attached to the report.

A test that needs a tool this machine may lack (kcat, promtool, node, moto_server) says so with
`requires(...)` or `missing(...)`: a skip with the reason, or a failure when $CI is set, since
CI installs every tool with scripts/install-test-deps.sh and a skip there would hide a broken
setup behind a green run.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 40.0
DEFAULT_TEST_TIMEOUT_S = 120
IN_CI = bool(os.environ.get("CI"))


def missing(reason: str):
    """Ends the calling test, which cannot run without what `reason` names: skipped, or failed
    under CI."""
    if IN_CI:
        pytest.fail(f"{reason}; CI installs it with scripts/install-test-deps.sh", pytrace=False)
    pytest.skip(reason)


def requires(available: bool, reason: str):
    """A mark: the test runs only when `available`, else `missing(reason)` ends it."""
    return pytest.mark.requires(available=available, reason=reason)


def strata_bin() -> Path:
    candidates = []
    if os.environ.get("STRATA_BIN"):
        candidates.append(Path(os.environ["STRATA_BIN"]))
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "strata")
    candidates.append(REPO / "target" / "debug" / "strata")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise RuntimeError(
        "no strata binary: set STRATA_BIN or build with `cargo build --bins` (looked at "
        + ", ".join(str(c) for c in candidates)
        + ")"
    )


def strata_cli(command: str, broker_or_addr, *args, ok=True) -> subprocess.CompletedProcess:
    """Runs `strata <command> <args> --bootstrap-server <broker>` without the test's STRATA_*
    environment; asserts it succeeded (or, with ok=False, that it failed)."""
    addr = broker_or_addr if isinstance(broker_or_addr, str) else broker_or_addr.bootstrap
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    p = subprocess.run(
        [str(strata_bin()), command, *args, "--bootstrap-server", addr],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    what = f"strata {command} {' '.join(args)}"
    if ok:
        assert p.returncode == 0, f"{what} exited {p.returncode}:\n{p.stderr}"
    else:
        assert p.returncode != 0, f"{what} should have failed:\n{p.stdout}"
    return p


def die_with_parent():
    """Runs in the child before exec: SIGKILL it if pytest dies, so no broker outlives a run
    that was itself killed (CI time limit, Ctrl-C twice)."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


_PORTS_GIVEN: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port for a broker to listen on, chosen below the kernel's ephemeral range: a port the
    kernel picked (bind to 0) can be taken as the local port of some outgoing connection before
    the broker binds it ("Address already in use"); one below the range never is. Each port is
    handed out once per test run."""
    low, high = 20000, _ephemeral_low() - 1
    if high - low < 1000:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(10000):
        port = random.randint(low, high)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


def accepts_connections(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(cond, timeout: float, what: str, interval: float = 0.05):
    """Polls `cond` until it returns a truthy value; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


NEAR_FULL_DISK_MARKS = {
    "strata.log.dir.disk.low.watermark.ratio": "0.98",
    "strata.log.dir.disk.high.watermark.ratio": "0.99",
    "strata.log.dir.disk.refuse.ratio": "0.995",
}


class StrataBroker:
    """One `strata serve` process; restartable on the same data dir and ports."""

    def __init__(self, tmp: Path, extra_sets: dict[str, str] | None = None):
        self.bin = strata_bin()
        self.dir = tmp
        self.data_dir = tmp / "data"
        self.port = free_port()
        self.controller_port = free_port()
        self.http_port = free_port()
        while len({self.port, self.controller_port, self.http_port}) < 3:
            self.controller_port = free_port()
            self.http_port = free_port()
        self.extra_sets = dict(extra_sets or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.log_paths: list[Path] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        sets = {
            "log.dirs": str(self.data_dir),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "http.listener": f"127.0.0.1:{self.http_port}",
            # The broker measures its disk's real use: near-full marks keep a test machine
            # with a well-used disk from refusing produce or dropping local segments.
            # test_disk_pressure.py sets the defaults back and fakes the use instead.
            **NEAR_FULL_DISK_MARKS,
        }
        sets.update(self.extra_sets)
        args = [str(self.bin), "serve"]
        for k, v in sets.items():
            args += ["--set", f"{k}={v}"]
        return args

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        self.starts += 1
        log_path = self.dir / f"strata-{self.starts}.log"
        self.log_paths.append(log_path)
        # Every STRATA_* variable is node config to `strata serve`, and an unknown one is a
        # startup error, so STRATA_BIN (set by scripts/test.sh) must not reach it. Keep the
        # broker hermetic: only STRATA_LOG passes through.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env["STRATA_LOG"] = os.environ.get("STRATA_LOG", "info")
        env["NO_COLOR"] = "1"
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.args(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.dir,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(
                    f"strata exited with code {code} during startup:\n{self.log_tail()}"
                )
            if accepts_connections(self.port):
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"strata did not accept connections on {self.bootstrap} within "
                    f"{STARTUP_TIMEOUT_S:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL: no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def terminate(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
            raise AssertionError(
                f"strata did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM:\n{self.log_tail()}"
            )

    def stop(self):
        """Graceful shutdown; the exit code must be 0."""
        code = self.terminate()
        assert code == 0, f"strata exited with code {code} after SIGTERM:\n{self.log_tail()}"

    def restart(self):
        """Starts again on the same data dir and ports (after kill() or stop())."""
        if self.is_running():
            self.stop()
        return self.start()

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for p in self.log_paths[-2:]:
            try:
                text = p.read_text(errors="replace").splitlines()
            except OSError:
                continue
            out.append(f"--- {p.name} (last {lines} lines) ---")
            out.extend(text[-lines:])
        return "\n".join(out)

    def log_text(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in self.log_paths if p.exists()
        )

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture
def broker_factory(tmp_path, request):
    """Starts brokers on demand (with extra `--set` keys); all are killed at teardown."""
    brokers: list[StrataBroker] = []
    request.node._strata_brokers = brokers

    def make(extra_sets: dict[str, str] | None = None) -> StrataBroker:
        d = tmp_path / f"broker{len(brokers)}"
        d.mkdir()
        b = StrataBroker(d, extra_sets)
        brokers.append(b)
        return b.start()

    yield make
    for b in brokers:
        b.cleanup()


@pytest.fixture
def broker(broker_factory) -> StrataBroker:
    return broker_factory()


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(available, reason): see `requires` in conftest.py")
    # kafka-python 3 loads its protocol schemas with a deprecated importlib.resources API.
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before any fixture starts a broker for a test that cannot run.
    for mark in item.iter_markers("requires"):
        if not mark.kwargs["available"]:
            missing(mark.kwargs["reason"])


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT_S))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for i, b in enumerate(getattr(item, "_strata_brokers", [])):
            state = "running" if b.is_running() else f"exited ({b.proc.returncode if b.proc else '-'})"
            report.sections.append(
                (f"strata broker {i} log ({b.bootstrap}, {state})", b.log_tail())
            )
