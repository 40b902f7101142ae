"""The service under hostile clients: a real ``argos serve`` on 127.0.0.1, bounded in time.

Mixes, for ``--seconds`` (default 30): authenticated stream and batch clients; slow clients that
send a request head one byte per second; clients that stall inside a body; chunked bodies over
the limit; unauthenticated floods of malformed and oversized bodies; waves of idle (half-open)
connections above the connection cap. Prints the status codes each kind got, the server's peak
RSS and descriptor count, its log size, and whether ``/healthz`` answered throughout. The
service passes when authenticated traffic never sees a 5xx and memory, descriptors and log stay
bounded (the quick version is ``tests/online/test_service_load.py``).

Usage: ``.venv/bin/python benchmarks/service_hostile_load.py [--seconds S] [--flood N]``
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BASIC = ROOT / "tests" / "fixtures" / "rules" / "basic"
TOKEN = "hostile-load-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 256 * 1024


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int) -> tuple[float, int]:
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--flood", type=int, default=400, help="idle connections per wave")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="argos-hostile-"))
    shutil.copytree(BASIC, tmp / "rules")
    (tmp / "token").write_text(TOKEN)
    port = _port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-c", "from argos.cli import main; main()", "serve"]
    cmd += ["--rules", str(tmp / "rules"), "--port", str(port), "--token-file", str(tmp / "token")]
    cmd += ["--max-body-bytes", str(MAX_BODY), "--header-seconds", "3", "--body-seconds", "3"]
    cmd += ["--max-connections", "200", "--log-level", "info"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    codes: dict[str, Counter[int | str]] = {}
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds
    peak = [0.0, 0]

    def note(kind: str, code: int | str) -> None:
        with lock:
            codes.setdefault(kind, Counter())[code] += 1

    def authenticated() -> None:
        with httpx.Client(base_url=base, headers=AUTH, timeout=30) as c:
            k = 0
            while time.monotonic() < stop:
                k += 1
                pts = [{"timestamp": k * 60 + i, "value": float(i % 7)} for i in range(50)]
                try:
                    r = c.post(
                        f"/v1/streams/s{threading.get_ident() % 97}-{k}/points",
                        json={"points": pts},
                    )
                    note("authenticated", r.status_code)
                except httpx.HTTPError as exc:
                    note("authenticated", type(exc).__name__)

    def slowloris() -> None:
        while time.monotonic() < stop:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                for b in b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n" * 10:
                    s.send(bytes([b]))
                    time.sleep(1)
                note("slowloris", "survived")
            except OSError:
                note("slowloris", "cut")

    def hostile() -> None:
        junk = b'{"timestamps": [' + b"1," * (MAX_BODY // 2) + b"1]}"
        with httpx.Client(base_url=base, timeout=30) as c:
            while time.monotonic() < stop:
                for kind, kw in (
                    ("unauth-malformed", {"content": b"{nope"}),
                    ("unauth-oversized", {"content": junk * 3}),
                    ("chunked-oversized", {"content": iter([junk, junk]), "headers": AUTH}),
                ):
                    try:
                        note(kind, c.post("/v1/detect", **kw).status_code)  # type: ignore[arg-type]
                    except httpx.HTTPError as exc:
                        note(kind, type(exc).__name__)

    def flood() -> None:
        while time.monotonic() < stop:
            socks = []
            for _ in range(args.flood):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                except OSError:
                    note("flood", "refused")
            time.sleep(4)
            for s in socks:
                s.close()
            note("flood", f"wave of {len(socks)}")

    def health() -> None:
        while time.monotonic() < stop + 5:
            try:
                note("healthz", httpx.get(f"{base}/healthz", timeout=5).status_code)
            except httpx.HTTPError as exc:
                note("healthz", type(exc).__name__)
            rss, fds = _status(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], fds)
            time.sleep(1)

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("server did not come up: " + (tmp / "server.log").read_text()[-2000:])
            time.sleep(0.2)
        rss0, fds0 = _status(proc.pid)
        jobs = [authenticated] * 4 + [slowloris] * 4 + [hostile] * 2 + [flood, health]
        threads = [threading.Thread(target=j, daemon=True) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.seconds + 60)
        for kind, counter in sorted(codes.items()):
            print(f"{kind:20s} {dict(counter)}")
        five = sum(
            n for c in codes.values() for k, n in c.items() if isinstance(k, int) and k >= 500
        )
        print(f"5xx responses: {five}")
        print(f"server RSS {rss0:.0f} -> peak {peak[0]:.0f} MB; fds {fds0} -> peak {peak[1]}")
        print(f"server log: {(tmp / 'server.log').stat().st_size / 1024:.0f} kB")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
