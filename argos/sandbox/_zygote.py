"""Zygote worker: a long-lived, single-threaded process that forks one locked-down child per run.

Started by :mod:`argos.sandbox.pool` as ``python -I argos/sandbox/_zygote.py`` with a scrubbed
environment. This
file is self-contained (stdlib + numpy only) so that it never imports the trainer's package.

Protocol on stdin/stdout (all integers little-endian):

* request: ``u32 len`` + JSON header, then the raw buffers the header announces;
* response: ``u32 len`` + JSON header, then ``blob_len`` raw bytes.

Ops: ``probe`` (which kernel layers work here), ``load`` (cache input arrays under a key), ``run``
(fork a child that runs rule code on cached inputs and streams result frames back), ``drop`` (forget
a cache key). The zygote never parses what the child writes: it relays the child's bytes,
size-capped, plus how the child ended. The parent validates everything.

Child lock-down order: setsid, fds (only the result pipe and /dev/null), empty scratch cwd, rlimits,
network namespace, Landlock (read-only access to the Python installation only), privilege drop to
nobody (when root), parent-death signal, no_new_privs + seccomp filter. Any layer the start-up probe
reported as available that then fails makes the child report a setup error (fail closed).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import json
import linecache
import math
import os
import platform
import resource
import select
import signal
import statistics
import struct
import sys
import tempfile
import time
import traceback
from typing import Any

import numpy as np

# Preload what rules may import, so the children need no file access for imports.
import numpy.fft
import numpy.lib.stride_tricks
import numpy.linalg
import numpy.ma
import numpy.polynomial
import numpy.random

_PRELOADED = (math, statistics)

sys.dont_write_bytecode = True

RULE_FILENAME = "<rule>"
NOBODY = 65534
MAX_DETAIL = 4000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# --- seccomp -----------------------------------------------------------------------------------
AUDIT_ARCH_X86_64 = 0xC000003E
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
EPERM = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_GET_SECCOMP = 21
SECCOMP_MODE_FILTER = 2
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000

# x86_64 syscall numbers denied outright.
_DENY_X86_64 = {
    # processes and programs
    "fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "execve": 59, "execveat": 322,
    # network
    "socket": 41, "socketpair": 53, "connect": 42, "accept": 43, "bind": 49, "listen": 50,
    "accept4": 288,
    # other processes' memory and handles
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "pidfd_open": 434, "pidfd_send_signal": 424, "pidfd_getfd": 438,
    "migrate_pages": 256, "move_pages": 279,
    # namespaces, mounts, system administration
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272,
    "setns": 308, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
    "setdomainname": 171, "init_module": 175, "delete_module": 176, "finit_module": 313,
    "kexec_load": 246, "kexec_file_load": 320, "acct": 163, "quotactl": 179, "syslog": 103,
    "iopl": 172, "ioperm": 173, "modify_ldt": 154, "uselib": 134, "personality": 135,
    "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305,
    "vhangup": 153, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "open_tree": 428, "move_mount": 429, "mount_setattr": 442,
    # kernel attack surface
    "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250, "add_key": 248,
    "request_key": 249, "open_by_handle_at": 304, "name_to_handle_at": 303,
    # file-system changes (rules do no I/O)
    "creat": 85, "truncate": 76, "rename": 82, "mkdir": 83, "rmdir": 84, "link": 86,
    "unlink": 87, "symlink": 88, "chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93,
    "lchown": 94, "mknod": 133, "utime": 132, "utimes": 235, "renameat": 264, "mkdirat": 258,
    "mknodat": 259, "fchownat": 260, "futimesat": 261, "unlinkat": 263, "linkat": 265,
    "symlinkat": 266, "fchmodat": 268, "utimensat": 280, "renameat2": 316, "fchmodat2": 452,
    "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197,
    "lremovexattr": 198, "fremovexattr": 199, "openat2": 437,
    # credentials
    "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setgroups": 116,
    "setresuid": 117, "setresgid": 119, "setfsuid": 122, "setfsgid": 123,
}  # fmt: skip
# Signals: allowed only when the first argument is the child's own pid.
_SIGNAL_X86_64 = {"kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
                  "rt_tgsigqueueinfo": 297}  # fmt: skip
# open(path, flags, mode): flags is arg 1; openat(dirfd, path, flags, mode): flags is arg 2.
_OPEN_X86_64 = {"open": (2, 1), "openat": (257, 2)}
_WRITE_FLAGS = (
    0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000
)  # WRONLY RDWR CREAT TRUNC APPEND TMPFILE


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


_LD_W_ABS = 0x20
_JEQ = 0x15
_JGE = 0x35
_JSET = 0x45
_RET = 0x06


def _seccomp_program(own_pid: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF program for the seccomp filter (x86_64)."""
    deny = SECCOMP_RET_ERRNO | EPERM
    p: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, 4),  # arch
        (_JEQ, 1, 0, AUDIT_ARCH_X86_64),
        (_RET, 0, 0, SECCOMP_RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, 0),  # syscall nr
        (_JGE, 0, 1, 0x40000000),  # x32 ABI
        (_RET, 0, 0, deny),
    ]
    for nr in sorted(set(_DENY_X86_64.values())):
        p += [(_JEQ, 0, 1, nr), (_RET, 0, 0, deny)]
    for nr in sorted(_SIGNAL_X86_64.values()):
        p += [
            (_JEQ, 0, 4, nr),
            (_LD_W_ABS, 0, 0, 16),  # args[0], low 32 bits
            (_JEQ, 0, 1, own_pid & 0xFFFFFFFF),
            (_RET, 0, 0, SECCOMP_RET_ALLOW),
            (_RET, 0, 0, deny),
        ]
    for nr, argi in _OPEN_X86_64.values():
        p += [
            (_JEQ, 0, 4, nr),
            (_LD_W_ABS, 0, 0, 16 + 8 * argi),
            (_JSET, 0, 1, _WRITE_FLAGS),
            (_RET, 0, 0, deny),
            (_RET, 0, 0, SECCOMP_RET_ALLOW),
        ]
    p.append((_RET, 0, 0, SECCOMP_RET_ALLOW))
    return p


_PID_PLACEHOLDER = 0xFFFFFFFE
_PROGRAM = _seccomp_program(_PID_PLACEHOLDER)
_PID_SLOTS = [i for i, ins in enumerate(_PROGRAM) if ins[0] == _JEQ and ins[3] == _PID_PLACEHOLDER]
_FILTER = (_SockFilter * len(_PROGRAM))(*[_SockFilter(*ins) for ins in _PROGRAM])


def install_seccomp() -> None:
    """Set no_new_privs and install the (prebuilt) filter; raises OSError on failure."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    pid = os.getpid() & 0xFFFFFFFF
    for i in _PID_SLOTS:  # the child's copy of the prebuilt program gets its own pid
        _FILTER[i].k = pid
    fprog = _SockFprog(len(_PROGRAM), ctypes.cast(_FILTER, ctypes.POINTER(_SockFilter)))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP) failed")


# --- Landlock ----------------------------------------------------------------------------------
_LANDLOCK_CREATE = 444
_LANDLOCK_ADD_RULE = 445
_LANDLOCK_RESTRICT = 446
_LANDLOCK_RULE_PATH_BENEATH = 1
_LL_EXECUTE = 1 << 0
_LL_READ_FILE = 1 << 2
_LL_READ_DIR = 1 << 3


class _LLRulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _LLPathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel, 0 if unavailable (x86_64 only)."""
    if platform.machine() != "x86_64":
        return 0
    r = _libc.syscall(_LANDLOCK_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return int(r) if r > 0 else 0


def _landlock_handled(abi: int) -> int:
    bits = (1 << 13) - 1  # ABI 1: EXECUTE .. MAKE_SYM
    if abi >= 2:
        bits |= 1 << 13  # REFER
    if abi >= 3:
        bits |= 1 << 14  # TRUNCATE
    if abi >= 5:
        bits |= 1 << 15  # IOCTL_DEV
    return bits


def install_landlock(read_paths: list[str]) -> None:
    """Restrict file-system access to reading ``read_paths``; raises OSError on failure."""
    abi = landlock_abi()
    if abi <= 0:
        raise OSError("landlock unavailable")
    attr = _LLRulesetAttr(_landlock_handled(abi))
    fd = _libc.syscall(_LANDLOCK_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path in read_paths:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                is_dir = os.path.isdir(path)
                access = _LL_READ_FILE | _LL_EXECUTE | (_LL_READ_DIR if is_dir else 0)
                rule = _LLPathBeneath(access, pfd)
                r = _libc.syscall(
                    _LANDLOCK_ADD_RULE, fd, _LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0
                )
                if r != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
            finally:
                os.close(pfd)
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if _libc.syscall(_LANDLOCK_RESTRICT, fd, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(fd)


_READ_PATHS: list[str] = []


def _read_paths() -> list[str]:
    """The Python installation (stdlib, site-packages with numpy) — readable by rules."""
    if _READ_PATHS:
        return _READ_PATHS
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(np.__file__))))
    paths.add(os.path.dirname(os.path.realpath(os.__file__)))
    _READ_PATHS.extend(sorted({os.path.realpath(p) for p in paths if p}))
    return _READ_PATHS


# --- lock-down ---------------------------------------------------------------------------------
def _unshare_net(as_root: bool) -> None:
    """Enter a new, empty network namespace (inside a new user namespace when unprivileged)."""
    if as_root and _libc.unshare(CLONE_NEWNET) == 0:
        return
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")


def _vm_size() -> int:
    """Current virtual memory size in bytes (first field of /proc/self/statm, in pages)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


def lock_down(layers: dict[str, bool], limits: dict[str, Any], scratch: str) -> None:
    """Apply every layer to the current (child) process; fd 3 is the result pipe."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(4, 65536)
    os.chdir(scratch)
    as_root = os.geteuid() == 0
    vm = _vm_size()
    cpu = max(1, math.ceil(float(limits["cpu_seconds"])))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    mem = int(limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (vm + mem, vm + mem))
    if layers.get("netns"):
        _unshare_net(as_root)
    if layers.get("landlock"):
        install_landlock(_read_paths())
    if as_root and layers.get("drop_privileges"):
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)
    if os.geteuid() != 0:
        # Counts all processes of the user: no fork/clone at all (a second layer under seccomp).
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if layers.get("seccomp"):
        install_seccomp()


# --- running rules in the child ----------------------------------------------------------------
def _trim_tb(exc: BaseException) -> str:
    """Traceback text with only the rule's own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == RULE_FILENAME]
    lines = ["Traceback (rule frames only):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    text = "".join(lines)
    return text[-MAX_DETAIL:]


def _to_labels(out: object, n: int) -> tuple[bytes | None, str]:
    """Validate one rule output; return (uint8 bytes, "") or (None, reason)."""
    try:
        arr = np.asarray(out)
    except Exception as exc:
        return None, f"output cannot be converted to an array: {type(exc).__name__}"
    if arr.shape != (n,):
        return None, f"output has shape {arr.shape}, expected ({n},)"
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8).tobytes(), ""
    if arr.dtype.kind in "iuf":
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            return None, f"output contains NaN at index {int(np.flatnonzero(np.isnan(arr))[0])}"
        bad = (arr != 0) & (arr != 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            return None, f"output must be boolean or 0/1; index {i} is {arr[i]!r}"
        return arr.astype(np.uint8).tobytes(), ""
    return None, f"output dtype {arr.dtype} is not boolean or 0/1"


def _frame(out_fd: int, header: dict[str, Any], payload: bytes = b"") -> None:
    data = json.dumps(header).encode()
    buf = struct.pack("<I", len(data)) + data + payload
    view = memoryview(buf)
    while view:
        k = os.write(out_fd, view)
        view = view[k:]


def _run_child(
    req: dict[str, Any], inputs: list[tuple[np.ndarray, np.ndarray]], out_fd: int
) -> None:
    code: str = req["code"]
    linecache.cache[RULE_FILENAME] = (len(code), None, code.splitlines(True), RULE_FILENAME)
    namespace: dict[str, Any] = {"__name__": "rule"}
    try:
        compiled = compile(code, RULE_FILENAME, "exec")
        exec(compiled, namespace)
        detect = namespace["detect"]
    except MemoryError as exc:
        _frame(
            out_fd,
            {
                "p": -1,
                "status": "memory_limit",
                "detail": "MemoryError while loading the rule",
                "traceback": _trim_tb(exc),
            },
        )
        return
    except SyntaxError as exc:
        _frame(
            out_fd,
            {
                "p": -1,
                "status": "syntax_error",
                "detail": f"line {exc.lineno}: {exc.msg}",
                "traceback": "",
            },
        )
        return
    except BaseException as exc:
        _frame(
            out_fd,
            {
                "p": -1,
                "status": "runtime_error",
                "detail": f"while loading the rule: {type(exc).__name__}: {exc}"[:MAX_DETAIL],
                "traceback": _trim_tb(exc),
            },
        )
        return
    for p, params in enumerate(req["param_sets"]):
        outs: list[bytes] = []
        status, detail, tb = "ok", "", ""
        t0 = time.perf_counter()
        for i, (values, ts) in enumerate(inputs):
            try:
                out = detect(values.copy(), ts.copy(), dict(params))
            except MemoryError as exc:
                status, detail, tb = "memory_limit", f"series {i}: MemoryError", _trim_tb(exc)
                break
            except RecursionError as exc:
                status, detail, tb = (
                    "runtime_error",
                    f"series {i}: RecursionError: {exc}",
                    _trim_tb(exc),
                )
                break
            except BaseException as exc:
                status, tb = "runtime_error", _trim_tb(exc)
                detail = f"series {i}: {type(exc).__name__}: {exc}"[:MAX_DETAIL]
                break
            try:
                labels, why = _to_labels(out, len(values))
            except MemoryError:
                labels, why = None, "MemoryError while validating the output"
            if labels is None:
                status, detail = "bad_output", f"series {i}: {why}"
                break
            outs.append(labels)
        ms = (time.perf_counter() - t0) * 1000.0
        if status == "ok":
            _frame(out_fd, {"p": p, "status": "ok", "runtime_ms": ms}, b"".join(outs))
        else:
            _frame(
                out_fd,
                {"p": p, "status": status, "detail": detail, "traceback": tb, "runtime_ms": ms},
            )


# --- zygote main loop --------------------------------------------------------------------------
def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            raise EOFError
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def _send(out: Any, header: dict[str, Any], blob: bytes = b"") -> None:
    data = json.dumps(header).encode()
    out.write(struct.pack("<I", len(data)) + data)
    if blob:
        out.write(blob)
    out.flush()


def probe() -> dict[str, Any]:
    """Fork a throw-away child that tries every layer; report what works on this host."""
    info: dict[str, Any] = {
        "root": os.geteuid() == 0,
        "arch": platform.machine(),
        "landlock_abi": landlock_abi(),
    }
    layers = {}
    for name in ("netns", "landlock", "drop_privileges", "seccomp"):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            ok = 0
            try:
                os.close(r)
                if name == "netns":
                    _unshare_net(os.geteuid() == 0)
                elif name == "landlock":
                    install_landlock(_read_paths())
                elif name == "drop_privileges":
                    if os.geteuid() != 0:
                        raise OSError("not root")
                    os.setgroups([])
                    os.setresgid(NOBODY, NOBODY, NOBODY)
                    os.setresuid(NOBODY, NOBODY, NOBODY)
                elif name == "seccomp":
                    if platform.machine() != "x86_64":
                        raise OSError("seccomp filter is x86_64 only")
                    install_seccomp()
                    try:
                        os.execv("/bin/true", ["/bin/true"])
                    except OSError:
                        pass
                    else:
                        raise OSError("exec not blocked")
                ok = 1
            except BaseException:
                ok = 0
            finally:
                os.write(w, bytes([ok]))
                os._exit(0)
        os.close(w)
        got = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
        layers[name] = got == b"\x01"
    info["layers"] = layers
    return info


def _collect(fd: int, deadline: float, cap: int) -> tuple[bytes, bool, bool]:
    """Read the child's result pipe until EOF, the deadline, or the cap; (data, timed_out, over)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), True, False
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks), False, False
        chunks.append(b)
        total += len(b)
        if total > cap:
            return b"".join(chunks)[:cap], False, True


def _run(
    req: dict[str, Any],
    inputs: list[tuple[np.ndarray, np.ndarray]],
    layers: dict[str, bool],
    scratch: str,
) -> tuple[dict[str, Any], bytes, int | None]:
    """Fork a child for one request; return (reply header, child bytes, pid still to reap).

    A child that finishes normally writes a per-run random trailer and closes its pipe before
    exiting; then the reply goes out at once and the child is killed and reaped afterwards
    (:func:`_reap`), so its teardown overlaps with the parent's work. Otherwise (crash, limit,
    timeout) the zygote waits for the exit status the parent needs to classify the run.
    """
    limits = req["limits"]
    trailer = os.urandom(16)
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if w != 3:
                os.dup2(w, 3)
                os.close(w)
            try:
                lock_down(layers, limits, scratch)
            except BaseException as exc:
                _frame(3, {"setup_error": f"{type(exc).__name__}: {exc}"})
                os._exit(70)
            _run_child(req, inputs, 3)
            os.write(3, trailer)
            os.close(3)
        finally:
            os._exit(0)
    os.close(w)
    data, timed_out, over = _collect(
        r, t0 + float(limits["wall_seconds"]), int(limits["max_output_bytes"])
    )
    os.close(r)
    header: dict[str, Any] = {"timed_out": timed_out, "overflow": over}
    if not (timed_out or over) and data.endswith(trailer):
        data = data[: -len(trailer)]
        header.update(signal=0, exit_code=0, cpu_seconds=None, complete=True)
        header.update(wall_ms=(time.monotonic() - t0) * 1000.0, blob_len=len(data))
        return header, data, pid
    if timed_out or over:
        _kill(pid)
    _, status, rusage = os.wait4(pid, 0)
    header.update(
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
        exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        cpu_seconds=rusage.ru_utime + rusage.ru_stime,
        wall_ms=(time.monotonic() - t0) * 1000.0,
        blob_len=len(data),
    )
    return header, data, None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _reap(pid: int) -> None:
    """Kill (in case the rule forged the trailer and lingers) and reap a finished child."""
    _kill(pid)
    os.waitpid(pid, 0)


def main() -> None:
    """Serve requests on stdin/stdout until EOF."""
    # No PR_SET_PDEATHSIG here: it fires when the parent *thread* that spawned us exits, which
    # would kill pools created from worker threads. EOF on stdin ends the loop instead.
    infd = sys.stdin.buffer.fileno()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    _read_paths()  # resolve once, before any fork
    scratch = tempfile.mkdtemp(prefix="argos-scratch-")
    os.chmod(scratch, 0o755)
    cache: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    layers: dict[str, bool] = {}
    try:
        while True:
            try:
                (n,) = struct.unpack("<I", _read_exact(infd, 4))
                req = json.loads(_read_exact(infd, n))
            except EOFError:
                return
            op = req.get("op")
            if op == "probe":
                info = probe()
                layers = {
                    k: v and k in req.get("enable", info["layers"])
                    for k, v in info["layers"].items()
                }
                _send(out, {"ok": True, **info})
            elif op == "load":
                lengths = [int(x) for x in req["lengths"]]
                total = sum(lengths)
                vals = np.frombuffer(_read_exact(infd, 8 * total), dtype="<f8")
                tss = np.frombuffer(_read_exact(infd, 8 * total), dtype="<i8")
                offs = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
                cache[req["key"]] = [(vals[a:b], tss[a:b]) for a, b in itertools.pairwise(offs)]
                _send(out, {"ok": True})
            elif op == "drop":
                cache.pop(req["key"], None)
                _send(out, {"ok": True})
            elif op == "run":
                inputs = cache.get(req["key"])
                if inputs is None:
                    _send(out, {"ok": False, "error": f"unknown input key {req['key']}"})
                    continue
                header, blob, pending = _run(req, inputs, layers, scratch)
                _send(out, {"ok": True, **header}, blob)
                if pending is not None:
                    _reap(pending)
            else:
                _send(out, {"ok": False, "error": f"unknown op {op!r}"})
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(scratch)


if __name__ == "__main__":
    main()
