"""Escape suite: hostile rules must get their expected status and change nothing outside.

Every case runs twice: through the full pipeline (static gate on, which rejects most of them) and
with the static gate bypassed, so the hostile code really executes and only the kernel layers
(seccomp, Landlock, network namespace, privilege drop, rlimits, wall-clock kill) stand in the way.
After each run the test checks that nothing happened outside: the sentinel file and the watched
directory are unchanged, no marker file appeared, the loopback listener saw no connection, the
labels held by this process were not found, and the sandbox still serves a benign rule.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from argos.sandbox.pool import RunResult, Sandbox, SandboxLimits, Status

# Labels held by the test (trainer) process. Rules try to find them; the raw bytes are a marker
# that appears nowhere in the rule code (rules rebuild it from the reversed hex).
_MARKER = b"ARGOS-LABELS-" + uuid.uuid4().hex.encode()
PARENT_LABELS = np.frombuffer(_MARKER * 64, dtype=np.uint8).copy()
_MARKER_REVERSED_HEX = _MARKER[::-1].hex()

FAKE_KEY = "sk-test-" + uuid.uuid4().hex

LIMITS = SandboxLimits(cpu_seconds=1.0, wall_seconds=8.0, memory_mb=256)

#: ``ARGOS_ESCAPE_LAYERS=seccomp,netns,drop_privileges`` runs the suite's two sandboxes with only
#: those kernel layers (to measure docs/sandbox.md's rows for hosts without a layer, e.g. without
#: Landlock): the cases a missing layer lets through then fail, and the failures are the row.
SUITE_LAYERS = (
    [x for x in os.environ["ARGOS_ESCAPE_LAYERS"].split(",") if x]
    if "ARGOS_ESCAPE_LAYERS" in os.environ
    else None
)

HEADER = '"""Hostile test rule. Normal: anything. Abnormal: nothing."""\n'
TAIL = "\nPARAMS = {{}}\nLOOKBACK = 0\n"  # braces doubled: codes go through str.format


@dataclass(frozen=True)
class Env:
    watch: Path
    sentinel: Path
    labels_file: Path
    marker: Path
    port: int
    parent_pid: int
    victim_pid: int
    shm_key: int


@dataclass(frozen=True)
class Case:
    """A hostile rule; ``gated``/``ungated`` are the expected statuses with the gate on/off.

    When the ungated status is ``ok`` the rule reports success of its attack as True labels, so
    the test also asserts that every output label is False ("blocked").
    """

    id: str
    code: str
    gated: Status
    ungated: Status
    detail: str = ""  # substring expected in the ungated result's detail
    alt: Status | None = None  # also accepted (CPU cases: a starved CI box may hit wall first)


def _rule(body: str, imports: str = "import numpy as np") -> str:
    """A module whose detect() runs ``body`` (indented), with a helper for blocked/escaped."""
    indented = "\n".join("    " + ln if ln else ln for ln in body.strip("\n").splitlines())
    return (
        HEADER
        + imports
        + "\nimport numpy as np\n"
        + TAIL
        + "\n\ndef detect(values, timestamps, params):\n"
        + "    n = len(values)\n"
        + "    escaped = False\n"
        + indented
        + "\n    return np.full(n, bool(escaped))\n"
    )


def _try(stmt: str) -> str:
    """Body that sets ``escaped`` when ``stmt`` completes without an exception."""
    return f"try:\n    {stmt}\n    escaped = True\nexcept Exception:\n    pass\n"


OK, SR, RE = Status.OK, Status.STATIC_REJECT, Status.RUNTIME_ERROR
CASES: list[Case] = [
    # The socket module may not even be importable in the child (the interpreter's stdlib can be
    # unreadable for nobody); the ctypes variants below reach the syscalls regardless.
    Case(
        "network_connect",
        _rule(_try("import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1)")),
        SR,
        OK,
    ),
    Case(
        "dns_lookup",
        _rule(_try("import socket; socket.getaddrinfo('localhost', 80)")),
        SR,
        OK,
    ),
    Case(
        "raw_connect_syscall",
        _rule(
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "fd = libc.socket(2, 1, 0)\n"
            "addr = (2).to_bytes(2, 'little') + ({port}).to_bytes(2, 'big')\n"
            "addr += bytes([127, 0, 0, 1])\n"
            "escaped = fd >= 0 and libc.connect(fd, addr + bytes(8), 16) == 0\n",
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "raw_socket_syscall",
        _rule("escaped = ctypes.CDLL(None).socket(2, 2, 0) >= 0", "import ctypes"),
        SR,
        OK,
    ),
    Case("os_system", _rule("escaped = os.system('touch {marker}') == 0", "import os"), SR, OK),
    Case(
        "posix_system",
        _rule("escaped = posix.system('touch {marker}') == 0", "import posix"),
        SR,
        OK,
    ),
    Case(
        "subprocess_run",
        _rule(
            _try("subprocess.run(['/usr/bin/touch', '{marker}'], check=True)"), "import subprocess"
        ),
        SR,
        OK,
    ),
    Case(
        "execv",
        _rule(_try("os.execv('/bin/sh', ['sh', '-c', 'touch {marker}'])"), "import os"),
        SR,
        OK,
    ),
    Case(
        "subclasses_walk",
        _rule(
            "for cls in ().__class__.__bases__[0].__subclasses__():\n"
            "    if cls.__name__ == 'Popen':\n"
            "        try:\n"
            "            cls(['/usr/bin/touch', '{marker}']).wait()\n"
            "            escaped = True\n"
            "        except Exception:\n"
            "            pass\n"
        ),
        SR,
        OK,
    ),
    Case(
        "frame_walk_to_builtins",
        _rule(
            "try:\n"
            "    raise ValueError\n"
            "except ValueError as exc:\n"
            "    frame = exc.__traceback__.tb_frame\n"
            "b = frame.f_globals['__builtins__']\n"
            "imp = b['__import__'] if isinstance(b, dict) else b.__import__\n"
            "escaped = imp('os').system('touch {marker}') == 0\n"
        ),
        SR,
        OK,
    ),
    Case(
        "eval_import",
        _rule("escaped = eval(\"__import__('os').system('touch {marker}')\") == 0"),
        SR,
        OK,
    ),
    Case("write_new_file", _rule(_try("open('{watch}/new.txt', 'w').write('x')")), SR, OK),
    Case("write_tmp_file", _rule(_try("open('{marker}', 'w').write('x')")), SR, OK),
    Case("truncate_sentinel", _rule(_try("open('{sentinel}', 'w').close()")), SR, OK),
    Case("append_sentinel", _rule(_try("open('{sentinel}', 'a').write('x')")), SR, OK),
    Case("os_truncate", _rule(_try("os.truncate('{sentinel}', 0)"), "import os"), SR, OK),
    Case("unlink_sentinel", _rule(_try("os.unlink('{sentinel}')"), "import os"), SR, OK),
    Case("symlink", _rule(_try("os.symlink('/etc/passwd', '{watch}/link')"), "import os"), SR, OK),
    Case(
        "rename_sentinel",
        _rule(_try("os.rename('{sentinel}', '{watch}/moved')"), "import os"),
        SR,
        OK,
    ),
    Case("numpy_save", _rule(_try("np.save('{watch}/x.npy', values)")), SR, OK),
    Case("read_etc_shadow", _rule(_try("open('/etc/shadow').read()")), SR, OK),
    Case("read_etc_passwd", _rule(_try("open('/etc/passwd').read()")), SR, OK),
    Case(
        "env_secret",
        _rule("escaped = any(k.endswith('API_KEY') for k in os.environ)", "import os"),
        SR,
        OK,
    ),
    Case("parent_environ", _rule(_try("open('/proc/{parent_pid}/environ', 'rb').read()")), SR, OK),
    Case(
        "labels_file_read",
        _rule(_try("escaped = len(np.fromfile('{labels_file}', dtype=np.uint8)) > 0")),
        SR,
        OK,
    ),
    Case(
        "labels_parent_mem",
        _rule(
            "marker = bytes.fromhex('{marker_hex}')[::-1]\n"
            "try:\n"
            "    maps = open('/proc/{parent_pid}/maps').read().splitlines()\n"
            "    mem = open('/proc/{parent_pid}/mem', 'rb')\n"
            "    for line in maps:\n"
            "        a, b = (int(x, 16) for x in line.split()[0].split('-'))\n"
            "        try:\n"
            "            mem.seek(a)\n"
            "            if marker in mem.read(min(b - a, 1 << 26)):\n"
            "                escaped = True\n"
            "                break\n"
            "        except Exception:\n"
            "            pass\n"
            "except Exception:\n"
            "    pass\n"
        ),
        SR,
        OK,
    ),
    Case(
        "labels_gc_walk",
        _rule(
            "marker = bytes.fromhex('{marker_hex}')[::-1]\n"
            "for obj in gc.get_objects():\n"
            "    try:\n"
            "        if isinstance(obj, np.ndarray) and marker in obj.tobytes():\n"
            "            escaped = True\n"
            "    except Exception:\n"
            "        pass\n",
            "import gc",
        ),
        SR,
        OK,
    ),
    Case(
        "process_vm_readv",
        _rule(
            _try(
                "assert ctypes.CDLL(None, use_errno=True).syscall(310, {parent_pid}, 0, 0, 0, 0, 0)"
                " == 0"
            ),
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "ptrace_attach",
        _rule(
            _try("assert ctypes.CDLL(None).ptrace(16, {parent_pid}, 0, 0) == 0"), "import ctypes"
        ),
        SR,
        OK,
    ),
    Case(
        "ctypes_system",
        _rule("escaped = ctypes.CDLL(None).system(b'touch {marker}') == 0", "import ctypes"),
        SR,
        OK,
    ),
    Case(
        "unshare_userns",
        _rule("escaped = ctypes.CDLL(None).unshare(0x10000000) == 0", "import ctypes"),
        SR,
        OK,
    ),
    # Signal 0 performs the same permission check as a real signal without harming anyone if a
    # layer failed (a root child could otherwise kill every process on the machine).
    Case("kill_parent", _rule(_try("os.kill({parent_pid}, 0)"), "import os"), SR, OK),
    Case("kill_zygote", _rule(_try("os.kill(os.getppid(), 0)"), "import os"), SR, OK),
    Case("kill_all", _rule(_try("os.kill(-1, 0)"), "import os"), SR, OK),
    Case("fork", _rule(_try("os.fork() or os._exit(0)"), "import os"), SR, OK),
    Case(
        "fork_bomb",
        _rule("while True:\n    os.fork()", "import os"),
        SR,
        RE,
        "PermissionError",
    ),
    Case(
        "threads",
        _rule("threading.Thread(target=lambda: None).start()", "import threading"),
        SR,
        RE,
        "can't start new thread",
    ),
    Case(
        "cpu_spin",
        _rule("while True:\n    pass"),
        Status.CPU_LIMIT,
        Status.CPU_LIMIT,
        alt=Status.TIMEOUT,
    ),
    Case(
        "slow_import",
        HEADER
        + "import numpy as np\nX = sum(range(10**12))\n"
        + TAIL
        + "def detect(values, timestamps, params):\n    return np.zeros(len(values), bool)\n",
        Status.CPU_LIMIT,
        Status.CPU_LIMIT,
        alt=Status.TIMEOUT,
    ),
    Case(
        "ignore_sigxcpu",
        _rule(
            "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass", "import signal"
        ),
        SR,
        Status.CPU_LIMIT,
        alt=Status.TIMEOUT,
    ),
    Case("sleep_past_wall", _rule("time.sleep(3600)", "import time"), SR, Status.TIMEOUT),
    Case(
        "memory_bomb_numpy",
        _rule("x = np.ones(10**11)"),
        Status.MEMORY_LIMIT,
        Status.MEMORY_LIMIT,
    ),
    Case(
        "memory_bomb_list",
        _rule("x = [0] * (10**10)"),
        Status.MEMORY_LIMIT,
        Status.MEMORY_LIMIT,
    ),
    Case(
        "memory_grow",
        _rule("chunks = []\nwhile True:\n    chunks.append(np.ones(10**6))"),
        Status.MEMORY_LIMIT,
        Status.MEMORY_LIMIT,
    ),
    Case("infinite_recursion", _rule("def f(k):\n    return f(k + 1)\nf(0)"), RE, RE),
    Case("system_exit", _rule("raise SystemExit(0)"), RE, RE),
    Case("os_exit", _rule("os._exit(0)", "import os"), SR, Status.CRASHED),
    Case("segfault", _rule("ctypes.string_at(0)", "import ctypes"), SR, Status.CRASHED),
    Case(
        "huge_output",
        HEADER
        + "import numpy as np\n"
        + TAIL
        + "def detect(values, timestamps, params):\n    return np.zeros(10**8, dtype=bool)\n",
        Status.BAD_OUTPUT,
        Status.BAD_OUTPUT,
    ),
    Case(
        "flood_result_pipe",
        _rule("os.write(3, b'\\xff' * (1 << 27))", "import os"),
        SR,
        Status.BAD_OUTPUT,
    ),
    Case(
        "forged_result_frame",
        _rule(
            "import json\n"
            "h = json.dumps({{'p': 0, 'status': 'ok', 'runtime_ms': 0}}).encode()\n"
            "frame = len(h).to_bytes(4, 'little') + n.to_bytes(4, 'little') + h\n"
            "os.write(3, frame + b'\\x07' * n)\n"
            "os._exit(0)",
            "import os",
        ),
        SR,
        Status.BAD_OUTPUT,
    ),
    Case(
        "protocol_stdout",
        _rule(
            _try("assert os.write(1, b'\\x00\\x00\\x10\\x00garbage') > 0") + "escaped = False",
            "import os",
        ),
        SR,
        OK,
    ),
    Case(
        "wrong_shape",
        _rule("return np.zeros((n, 2), dtype=bool)"),
        Status.BAD_OUTPUT,
        Status.BAD_OUTPUT,
    ),
    Case("wrong_dtype", _rule("return np.full(n, 0.5)"), Status.BAD_OUTPUT, Status.BAD_OUTPUT),
    Case("string_output", _rule("return ['yes'] * n"), Status.BAD_OUTPUT, Status.BAD_OUTPUT),
    Case("nan_output", _rule("return np.full(n, np.nan)"), Status.BAD_OUTPUT, Status.BAD_OUTPUT),
    Case("none_output", _rule("return None"), Status.BAD_OUTPUT, Status.BAD_OUTPUT),
]

# Red-team classes 1-3 (kernel layers, child side). Before the IPC namespace and the seccomp
# additions every one of these had an effect on a root host with all layers on: IPC objects were
# created and outlived the child (3 x 512 MiB of shm held after exit, a root-owned 0644 segment
# read), another `nobody` process was re-limited, re-niced, re-pinned or SIGKILLed through
# F_SETOWN/F_SETSIG, and inotify/stat/O_PATH/listmount/getpgid saw past Landlock. The rules clean up
# what they create so the controls (kernel layers minus seccomp and namespaces) leave no trace.
_LIBC = "libc = ctypes.CDLL(None, use_errno=True)\n"
KERNEL_CASES: list[Case] = [
    Case(
        "sysv_shm_create",
        _rule(
            _LIBC + "sid = libc.shmget(0, 1 << 20, 0o1600)\n"
            "escaped = sid >= 0\n"
            "if escaped:\n    libc.shmctl(sid, 0, None)",
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "sysv_shm_read_root_segment",
        _rule(_LIBC + "escaped = libc.shmget({shm_key}, 0, 0) >= 0", "import ctypes"),
        SR,
        OK,
    ),
    Case(
        "sysv_msg_queue",
        _rule(
            _LIBC + "q = libc.msgget(0, 0o1600)\n"
            "escaped = q >= 0\n"
            "if escaped:\n    libc.msgctl(q, 0, None)",
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "sysv_semaphore_set",
        _rule(
            _LIBC + "q = libc.semget(0, 1, 0o1600)\n"
            "escaped = q >= 0\n"
            "if escaped:\n    libc.semctl(q, 0, 0)",
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "posix_mq_open",
        _rule(
            _LIBC + "name = b'argos-escape-{shm_key}'\n"
            "fd = libc.syscall(240, name, 0o102, 0o600, None)\n"  # O_CREAT | O_RDWR
            "escaped = fd >= 0 or libc.syscall(241, name) == 0",  # created even when refused
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "prlimit_other_process",
        _rule(
            _LIBC + "lim = (ctypes.c_uint64 * 2)(8, 8)\n"
            "escaped = libc.prlimit64({victim_pid}, 7, lim, None) == 0",  # RLIMIT_NOFILE
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "setpriority_other_process",
        _rule(
            _LIBC + "a = libc.setpriority(0, {victim_pid}, 19) == 0\n"
            "b = libc.setpriority(2, 0, 19) == 0\n"  # PRIO_USER: every process of the uid
            "escaped = a or b",
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "sched_other_process",
        _rule(
            _LIBC + "mask = ctypes.c_uint64(1)\n"
            "a = libc.sched_setaffinity({victim_pid}, 8, ctypes.byref(mask)) == 0\n"
            "prio = ctypes.c_int(0)\n"
            "b = libc.sched_setscheduler({victim_pid}, 5, ctypes.byref(prio)) == 0\n"  # IDLE
            "c = libc.sched_setparam({victim_pid}, ctypes.byref(prio)) == 0\n"
            "escaped = a or b or c",
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "f_setown_sigkill",
        _rule(
            _LIBC + "r, w = os.pipe()\n"
            "a = libc.fcntl(r, 8, {victim_pid}) == 0\n"  # F_SETOWN
            "b = libc.fcntl(r, 10, 9) == 0\n"  # F_SETSIG SIGKILL
            "libc.fcntl(r, 4, 0o20000 | 0o4000)\n"  # F_SETFL O_ASYNC | O_NONBLOCK
            "os.write(w, b'x')\n"
            "escaped = a or b",
            "import ctypes, os",
        ),
        SR,
        OK,
    ),
    Case(
        "inotify_tmp",
        _rule(
            _LIBC + "fd = libc.inotify_init1(0)\n"
            "escaped = fd >= 0 and libc.inotify_add_watch(fd, b'/tmp', 0xFFF) >= 0",
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "stat_unreadable_files",
        _rule(
            _try("os.stat('{labels_file}')")
            + "a = escaped\nescaped = False\n"
            + _try("os.lstat('/etc/shadow')")
            + "b = escaped\nescaped = False\n"
            + _try("os.access('/etc/shadow', os.F_OK) or os.readlink('/proc/1/cwd')")
            + "escaped = escaped or a or b",
            "import os",
        ),
        SR,
        OK,
    ),
    Case(
        "o_path_fstat",
        _rule(_try("os.fstat(os.open('{labels_file}', os.O_PATH))"), "import os"),
        SR,
        OK,
    ),
    Case(
        "listmount_statmount",
        _rule(
            _LIBC
            + "req = (ctypes.c_uint32 * 6)(24, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0, 0)\n"  # LSMT_ROOT
            "buf = (ctypes.c_uint64 * 64)()\n"
            "escaped = libc.syscall(458, req, buf, 64, 0) > 0",
            "import ctypes",
        ),
        SR,
        OK,
    ),
    Case(
        "probe_other_pids",
        _rule(
            _LIBC + "seen = [p for p in range(1, 512) if libc.getpgid(p) >= 0]\n"
            "seen += [{victim_pid}] if libc.getsid({victim_pid}) >= 0 else []\n"
            "escaped = any(p != os.getpid() for p in seen)",
            "import ctypes, os",
        ),
        SR,
        OK,
    ),
]
CASES += KERNEL_CASES


@pytest.fixture(scope="module")
def listener() -> Iterator[socket.socket]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.setblocking(False)
    yield srv
    srv.close()


def _start_victim() -> subprocess.Popen[bytes]:
    """A process of the uid the sandboxed child runs as (``nobody`` when the tests run as root)."""
    if os.geteuid() != 0:
        return subprocess.Popen(["sleep", "600"])
    return subprocess.Popen(["sleep", "600"], user=65534, group=65534, extra_groups=[])


def _stop(victim: subprocess.Popen[bytes]) -> None:
    victim.kill()
    victim.wait()


def _victim_state(pid: int) -> tuple[str, int, frozenset[int], int]:
    limits = Path(f"/proc/{pid}/limits").read_text()
    return (
        limits,
        os.getpriority(os.PRIO_PROCESS, pid),
        frozenset(os.sched_getaffinity(pid)),
        (os.sched_getscheduler(pid)),
    )


_LIBC_TEST = ctypes.CDLL(None, use_errno=True)


@pytest.fixture(scope="module")
def victim() -> Iterator[subprocess.Popen[bytes]]:
    proc = _start_victim()
    yield proc
    _stop(proc)


@pytest.fixture(scope="module")
def shm_key() -> Iterator[int]:
    """A root-owned (test-uid-owned) 0644 System V segment holding a secret."""
    key = 0x41520000 + os.getpid() % 0xFFFF
    sid = _LIBC_TEST.shmget(key, 4096, 0o1644)
    assert sid >= 0, os.strerror(ctypes.get_errno())
    yield key
    _LIBC_TEST.shmctl(sid, 0, None)  # IPC_RMID


def _ipc_objects() -> list[str]:
    """Every System V IPC object on the host (id column of /proc/sysvipc/*)."""
    out = []
    for kind in ("shm", "msg", "sem"):
        lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        out += [f"{kind}:{ln.split()[1]}" for ln in lines]
    return sorted(out)


@pytest.fixture(scope="module")
def env(listener: socket.socket, victim: subprocess.Popen[bytes], shm_key: int) -> Iterator[Env]:
    # World-writable on purpose: only the sandbox's kernel layers, not file modes, may stop writes.
    watch = Path(tempfile.mkdtemp(prefix="argos-escape-"))
    watch.chmod(0o777)
    sentinel = watch / "sentinel.txt"
    sentinel.write_text("do not touch\n")
    sentinel.chmod(0o666)
    labels_file = watch / "labels.bin"
    labels_file.write_bytes(PARENT_LABELS.tobytes())
    labels_file.chmod(0o644)
    marker = Path(tempfile.gettempdir()) / f"argos-escape-marker-{uuid.uuid4().hex}"
    port = listener.getsockname()[1]
    yield Env(watch, sentinel, labels_file, marker, port, os.getpid(), victim.pid, shm_key)
    for p in sorted(watch.rglob("*"), reverse=True):
        p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
    watch.rmdir()
    marker.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def secret_env() -> Iterator[None]:
    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = FAKE_KEY
    yield
    if old is None:
        del os.environ["OPENAI_API_KEY"]
    else:
        os.environ["OPENAI_API_KEY"] = old


@pytest.fixture(scope="module")
def gated(secret_env: None) -> Iterator[Sandbox]:
    with Sandbox(limits=LIMITS, layers=SUITE_LAYERS) as sb:
        yield sb


@pytest.fixture(scope="module")
def ungated(secret_env: None) -> Iterator[Sandbox]:
    with Sandbox(limits=LIMITS, static_gate=False, layers=SUITE_LAYERS) as sb:
        if not sb.host.kernel_layers:
            pytest.skip("no kernel isolation layer on this host")
        yield sb


BENIGN = (
    '"""Benign. Normal: < 5. Abnormal: >= 5."""\nimport numpy as np\n'
    'PARAMS = {"t": 5.0}\nLOOKBACK = 0\n\n'
    "def detect(values, timestamps, params):\n    return values >= params['t']\n"
)


def _snapshot(e: Env) -> dict[str, object]:
    files = {
        str(p): (p.stat().st_size, p.stat().st_mode, p.stat().st_mtime)
        for p in sorted(e.watch.rglob("*"))
    }
    return {"files": files, "ipc": _ipc_objects(), "victim": _victim_state(e.victim_pid)}


def _inputs() -> list[tuple[np.ndarray, np.ndarray]]:
    v = np.arange(64, dtype=np.float64) % 10
    return [(v, np.arange(64, dtype=np.int64) * 60)]


def _fill(code: str, e: Env) -> str:
    return code.format(
        port=e.port,
        marker=e.marker,
        watch=e.watch,
        sentinel=e.sentinel,
        labels_file=e.labels_file,
        parent_pid=e.parent_pid,
        marker_hex=_MARKER_REVERSED_HEX,
        victim_pid=e.victim_pid,
        shm_key=e.shm_key,
    )


def _assert_nothing_happened(
    e: Env, before: dict[str, object], listener: socket.socket, sb: Sandbox
) -> None:
    assert Path(f"/proc/{e.victim_pid}").exists(), "the victim process was killed"
    after = _snapshot(e)
    assert after["files"] == before["files"], "files in the watched directory changed"
    assert after["ipc"] == before["ipc"], "a System V IPC object was created or removed"
    assert after["victim"] == before["victim"], "another process's limits or scheduling changed"
    assert e.sentinel.read_text() == "do not touch\n"
    assert not e.marker.exists(), "a process or write outside the sandbox created the marker"
    with pytest.raises(BlockingIOError):
        conn, _ = listener.accept()
        conn.close()
    assert PARENT_LABELS.tobytes().startswith(_MARKER)
    # the zygote and the pool survive: a benign rule still runs
    after = sb.run(BENIGN, _inputs())
    assert after.status is Status.OK, after.detail
    assert after.outputs is not None and int(after.outputs[0].sum()) == 30


def _check(case: Case, sb: Sandbox, expected: Status, e: Env, listener: socket.socket) -> RunResult:
    before = _snapshot(e)
    res = sb.run(_fill(case.code, e), _inputs())
    ok_statuses = {expected} | ({case.alt} if case.alt and expected is not Status.OK else set())
    assert res.status in ok_statuses, f"{case.id}: {res.status} {res.detail} {res.traceback}"
    if expected is Status.OK:
        assert res.outputs is not None
        assert not res.outputs[0].any(), f"{case.id}: the attack reported success"
    else:
        assert res.outputs is None and res.detail
    _assert_nothing_happened(e, before, listener, sb)
    return res


def test_suite_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_rule_with_static_gate(
    case: Case, gated: Sandbox, env: Env, listener: socket.socket
) -> None:
    _check(case, gated, case.gated, env, listener)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_rule_kernel_layers_only(
    case: Case, ungated: Sandbox, env: Env, listener: socket.socket
) -> None:
    res = _check(case, ungated, case.ungated, env, listener)
    assert case.detail in res.detail


@pytest.mark.timeout(60)
def test_static_reject_names_the_line(gated: Sandbox, env: Env) -> None:
    code = _fill(next(c.code for c in CASES if c.id == "os_system"), env)
    res = gated.run(code, _inputs())
    assert res.status is Status.STATIC_REJECT
    assert "line 2: import of 'os' is not allowed" in res.detail


# Each kernel layer on its own, with the gate off: a layer must hold without the others.
LAYER_CASES = [
    ("seccomp", "raw_connect_syscall"),
    ("seccomp", "os_system"),
    ("seccomp", "truncate_sentinel"),
    ("seccomp", "kill_all"),
    ("seccomp", "kill_parent"),
    ("netns", "raw_connect_syscall"),
    ("seccomp", "prlimit_other_process"),
    ("seccomp", "f_setown_sigkill"),
    ("seccomp", "sysv_shm_create"),
    ("seccomp", "stat_unreadable_files"),
    ("seccomp", "probe_other_pids"),
    ("netns", "sysv_shm_read_root_segment"),
    ("landlock", "write_tmp_file"),
    ("landlock", "truncate_sentinel"),
    ("landlock", "labels_file_read"),
    ("landlock", "read_etc_passwd"),
    ("drop_privileges", "read_etc_shadow"),
    ("drop_privileges", "labels_parent_mem"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("layer", "case_id"), LAYER_CASES, ids=[f"{a}-{b}" for a, b in LAYER_CASES]
)
def test_single_layer_holds(
    layer: str, case_id: str, env: Env, listener: socket.socket, secret_env: None
) -> None:
    case = next(c for c in CASES if c.id == case_id)
    with Sandbox(limits=LIMITS, static_gate=False, layers=[layer], allow_unconfined=True) as sb:
        if not getattr(sb.host, layer):
            pytest.skip(f"layer {layer} unavailable on this host")
        _check(case, sb, Status.OK, env, listener)


@pytest.mark.timeout(60)
def test_without_layers_the_attack_works_so_the_suite_can_fail(
    env: Env, listener: socket.socket
) -> None:
    """Control: with every kernel layer off, the same hostile rule does escape (as root)."""
    case = next(c for c in CASES if c.id == "read_etc_passwd")
    with Sandbox(limits=LIMITS, static_gate=False, layers=[], allow_unconfined=True) as sb:
        res = sb.run(_fill(case.code, env), _inputs())
    assert res.status is Status.OK and res.outputs is not None
    assert res.outputs[0].all(), "unconfined run should be able to read /etc/passwd"


@pytest.mark.timeout(60)
def test_control_unconfined_connect_reaches_the_listener(env: Env, listener: socket.socket) -> None:
    """Control: the listener check detects a real connection when nothing blocks it."""
    case = next(c for c in CASES if c.id == "raw_connect_syscall")
    with Sandbox(limits=LIMITS, static_gate=False, layers=[], allow_unconfined=True) as sb:
        res = sb.run(_fill(case.code, env), _inputs())
    assert res.status is Status.OK and res.outputs is not None and res.outputs[0].all()
    listener.setblocking(True)
    listener.settimeout(5)
    try:
        conn, _ = listener.accept()
        conn.close()
    finally:
        listener.setblocking(False)


@pytest.mark.timeout(120)
def test_control_unconfined_rule_finds_the_parent_labels(env: Env) -> None:
    """Control: with no kernel layer (as root) the /proc/<parent>/mem attack finds the labels."""
    if os.geteuid() != 0:
        pytest.skip("reading another process's memory needs root (or ptrace rights)")
    case = next(c for c in CASES if c.id == "labels_parent_mem")
    limits = SandboxLimits(cpu_seconds=20.0, wall_seconds=60.0, memory_mb=512)
    with Sandbox(limits=limits, static_gate=False, layers=[], allow_unconfined=True) as sb:
        res = sb.run(_fill(case.code, env), _inputs())
    assert res.status is Status.OK and res.outputs is not None
    assert res.outputs[0].all(), "an unconfined rule should find the labels in the parent's memory"


# Controls for classes 1-3: the kernel layers as they were before (Landlock and the uid drop, no
# seccomp, no namespaces) let each of these attacks through, so the assertions above can fail.
CONTROL_KERNEL_CASES = [
    "sysv_shm_create",
    "sysv_shm_read_root_segment",
    "posix_mq_open",
    "prlimit_other_process",
    "f_setown_sigkill",
    "inotify_tmp",
    "stat_unreadable_files",
    "probe_other_pids",
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case_id", CONTROL_KERNEL_CASES)
def test_control_kernel_attack_works_without_seccomp_and_namespaces(case_id: str, env: Env) -> None:
    if os.geteuid() != 0:
        pytest.skip("the control needs root (uid drop to nobody, a root-owned segment)")
    case = next(c for c in CASES if c.id == case_id)
    own = _start_victim()
    try:
        layers = ["landlock", "drop_privileges"]
        with Sandbox(limits=LIMITS, static_gate=False, layers=layers) as sb:
            res = sb.run(
                _fill(case.code, env).replace(str(env.victim_pid), str(own.pid)), _inputs()
            )
        assert res.status is Status.OK and res.outputs is not None, res.detail
        assert res.outputs[0].all(), f"{case_id}: the attack should work without seccomp/netns"
    finally:
        _stop(own)
