"""A real Herald for the tests: the ``herald`` binary that ``cargo xtask test`` builds
(``HERALD_TEST_BIN``, else ``target/debug/herald``), on port 0 and a fresh SQLite database; and a
private ``redis-server`` a test may stop (never the shared one)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator, List, Optional

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]


def herald_bin() -> str:
    if os.environ.get("HERALD_TEST_BIN"):
        return os.environ["HERALD_TEST_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    return str((ROOT / target) / "debug" / "herald")


def _drain(stream) -> None:
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


class Server:
    def __init__(self, extra: List[str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="herald-sdk-py-")
        env = {k: v for k, v in os.environ.items() if k not in ("HERALD_REDIS_URL", "HERALD_DATABASE_URL")}
        env["RUST_LOG"] = "warn"
        self.proc = subprocess.Popen(
            [herald_bin(), "serve", "--listen", "127.0.0.1:0", "--database-url", f"sqlite://{self.dir}/herald.db", "--signup-per-ip-per-hour", "0", *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        line = self.proc.stdout.readline().strip()  # printed once it listens
        if not (line.startswith("herald admin: ") and line.endswith("/api/v1")):
            self.stop()
            raise RuntimeError(f"herald did not start: {line!r}")
        self.base = line[len("herald admin: ") : -len("/api/v1")]
        _drain(self.proc.stdout)

    def tenant(self, slug: str) -> str:
        """Signs up ``slug`` and returns a publish+subscribe key."""
        r = httpx.post(
            f"{self.base}/api/v1/signup",
            json={"email": f"owner@{slug}.example", "password": "correct horse battery staple", "tenant": {"slug": slug, "name": slug}},
        )
        assert r.status_code == 201, r.text
        cookie = r.headers["set-cookie"].split(";")[0]
        r = httpx.post(
            f"{self.base}/api/v1/tenants/{slug}/keys",
            json={"name": "sdk", "scopes": ["publish", "subscribe"]},
            headers={"cookie": cookie, "origin": self.base},
        )
        assert r.status_code == 201, r.text
        return r.json()["secret"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for line in self.proc.stdout:
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server exited before it was ready")
        _drain(self.proc.stdout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def herald() -> Iterator[Server]:
    server = Server([])
    yield server
    server.stop()


@pytest.fixture
def redis() -> Iterator[PrivateRedis]:
    r = PrivateRedis()
    yield r
    r.stop()


@pytest.fixture
def herald_on_redis(redis: PrivateRedis) -> Iterator[Server]:
    server = Server(["--redis-url", redis.url])
    yield server
    server.stop()


@pytest.fixture
def herald_rate_limited(tmp_path: Path) -> Iterator[Server]:
    plans = tmp_path / "plans.toml"
    plans.write_text(
        "[plans.sdk]\nmax_connections = 100\nmessages_per_day = 100000\nmax_message_bytes = 65536\n"
        "publish_per_second = 1\npublish_burst = 1\nchannels_per_connection = 16\nmax_history_size = 1000\n"
    )
    server = Server(["--plans", str(plans), "--default-plan", "sdk"])
    yield server
    server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
