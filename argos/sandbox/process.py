"""The process layer shared by everything that runs untrusted rule code.

Two kinds of processes run rule code: the sandbox's zygotes (:mod:`argos.sandbox.pool` starts
``argos/sandbox/_zygote.py``, which forks one locked-down child per run) and the online
detector's long-lived rule workers (:mod:`argos.sandbox.workers` starts
:mod:`argos.sandbox.worker_main`). Both are built from this module, so they cannot drift apart:

* :func:`scrubbed_env`: the one environment builder (no secrets, one thread for every BLAS and
  OpenMP runtime, a fixed locale);
* the one wire format: :func:`send_frame` / :func:`recv_frame` on a file descriptor and
  :func:`unpack_frame` on a buffer (``u32 header length, u32 payload length``, a JSON header, then
  the raw payload; all little-endian, never pickle), and :func:`pack_points` /
  :func:`unpack_points` for ``(timestamps, values)`` arrays in a payload;
* the kernel lock-down: :func:`probe_layers` (which layers work on this host) and
  :func:`lock_down` (session, fds, scratch cwd, rlimits, network namespace, Landlock read-only
  access to the Python installation, ``nobody`` when root, parent-death signal, no_new_privs +
  seccomp). Any layer the probe reported as available that then fails raises (fail closed).

The zygote loads this file by path (it never imports the ``argos`` package), so it imports only
the standard library and numpy. Rule source itself is executed in one place,
:func:`argos.rules.contract.exec_rule_source`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import json
import math
import os
import platform
import resource
import select
import signal
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

NOBODY = 65534
KERNEL_LAYERS = ("seccomp", "netns", "landlock", "drop_privileges")
"""The kernel-enforced isolation layers, in the order hosts are described."""

MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_PAYLOAD_BYTES = 1 << 31

BLAS_THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


RULE_MODULES = (
    "math",
    "statistics",
    "numpy.fft",
    "numpy.lib.stride_tricks",
    "numpy.linalg",
    "numpy.ma",
    "numpy.polynomial",
    "numpy.random",
)
"""What rules may import, preloaded before lock-down (a locked-down process imports nothing)."""


def preload_rule_modules() -> None:
    """Import :data:`RULE_MODULES` into the current process (before :func:`lock_down`)."""
    for name in RULE_MODULES:
        importlib.import_module(name)


class ProtocolError(RuntimeError):
    """A peer broke the wire format (oversized or malformed frame)."""


# --- environment -------------------------------------------------------------------------------
def scrubbed_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a process that runs rule code: no secrets, one thread per
    numeric runtime, a fixed locale; ``extra`` adds the caller's own variables."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": "/nonexistent",
        "TMPDIR": "/tmp",
    }
    for var in BLAS_THREAD_VARIABLES:
        env[var] = "1"
    env.update(extra or {})
    return env


# --- wire format -------------------------------------------------------------------------------
FRAME = struct.Struct("<II")
"""Frame prefix: header length, payload length (bytes)."""

Payload = bytes | bytearray | Sequence[npt.NDArray[Any]]
"""A frame's payload: bytes, or arrays sent one after the other without joining them."""


def _views(payload: Payload) -> list[memoryview]:
    if isinstance(payload, bytes | bytearray):
        return [memoryview(payload)] if payload else []
    return [np.ascontiguousarray(p).data.cast("B") for p in payload if p.nbytes]


def send_frame(fd: int, header: Mapping[str, Any], payload: Payload = b"") -> None:
    """Write one frame: lengths, JSON header, raw payload."""
    views = _views(payload)
    head = json.dumps(header, separators=(",", ":")).encode()
    total = sum(v.nbytes for v in views)
    views.insert(0, memoryview(FRAME.pack(len(head), total) + head))
    while views:
        k = os.writev(fd, views)
        while views and k >= views[0].nbytes:
            k -= views[0].nbytes
            views.pop(0)
        if views and k:
            views[0] = views[0][k:]


def read_exact(fd: int, n: int, deadline: float | None = None) -> bytearray:
    """Read exactly ``n`` bytes into one buffer (no joining of chunks); ``EOFError`` when the
    peer closes first, ``TimeoutError`` past the ``time.monotonic()`` deadline."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError("the peer did not answer in time")
        k = os.readv(fd, [view[got:]])
        if not k:
            raise EOFError("the peer closed the connection")
        got += k
    return buf


def _parse_header(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    try:
        header = json.loads(bytes(data))
    except ValueError as exc:
        raise ProtocolError("frame header is not JSON") from exc
    if not isinstance(header, dict):
        raise ProtocolError("frame header is not a JSON object")
    return header


def recv_frame(
    fd: int,
    deadline: float | None = None,
    max_payload: int = MAX_PAYLOAD_BYTES,
    max_header: int = MAX_HEADER_BYTES,
) -> tuple[dict[str, Any], bytearray]:
    """Read one frame; raises ``EOFError``, ``TimeoutError`` or :class:`ProtocolError`.

    The announced sizes are checked before anything is allocated (a parent passes the exact size
    it expects, so a compromised peer cannot make it allocate more).
    """
    head_len, payload_len = FRAME.unpack(read_exact(fd, FRAME.size, deadline))
    if head_len > max_header or payload_len > max_payload:
        raise ProtocolError(f"frame too large ({head_len} + {payload_len} bytes)")
    header = _parse_header(read_exact(fd, head_len, deadline))
    payload = read_exact(fd, payload_len, deadline) if payload_len else bytearray()
    return header, payload


def unpack_frame(
    buf: bytes | bytearray, pos: int, max_header: int = MAX_HEADER_BYTES
) -> tuple[dict[str, Any], memoryview, int] | None:
    """The frame at ``pos`` of a buffer: (header, payload, position after it); None when the
    buffer ends inside the frame or it announces a header over ``max_header`` bytes. Raises
    :class:`ProtocolError` when the header is not a JSON object."""
    if pos + FRAME.size > len(buf):
        return None
    head_len, payload_len = FRAME.unpack_from(buf, pos)
    start = pos + FRAME.size
    end = start + head_len + payload_len
    if head_len > max_header or end > len(buf):
        return None
    header = _parse_header(memoryview(buf)[start : start + head_len])
    return header, memoryview(buf)[start + head_len : end], end


def pack_points(arrays: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]]) -> list[npt.NDArray[Any]]:
    """Timestamps then values of all ``(timestamps, values)`` items, as two contiguous
    little-endian buffers (``int64``, ``float64``)."""
    if not arrays:
        return []
    if len(arrays) == 1:
        t, v = arrays[0]
        return [np.ascontiguousarray(t, dtype="<i8"), np.ascontiguousarray(v, dtype="<f8")]
    ts = np.concatenate([np.asarray(t, dtype="<i8") for t, _ in arrays])
    vs = np.concatenate([np.asarray(v, dtype="<f8") for _, v in arrays])
    return [ts, vs]


def unpack_points(
    payload: bytes | bytearray, lengths: Sequence[int]
) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
    """The ``(timestamps, values)`` items of a :func:`pack_points` payload (views into it)."""
    total = int(sum(lengths))
    if len(payload) != 16 * total:
        raise ProtocolError(f"payload has {len(payload)} bytes, expected {16 * total}")
    ts = np.frombuffer(payload, dtype="<i8", count=total).astype(np.int64, copy=False)
    vs = np.frombuffer(payload, dtype="<f8", count=total, offset=8 * total).astype(
        np.float64, copy=False
    )
    out: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
    a = 0
    for n in lengths:
        out.append((ts[a : a + n], vs[a : a + n]))
        a += n
    return out


# --- kernel lock-down --------------------------------------------------------------------------
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
CLONE_NEWIPC = 0x08000000
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
    # System V and POSIX IPC: objects that outlive the child and sit outside its RLIMIT_AS
    # (also private to the child's IPC namespace when the namespace layer is on)
    "shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64, "semop": 65, "semctl": 66,
    "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "semtimedop": 220, "mq_open": 240,
    "mq_unlink": 241, "mq_timedsend": 242, "mq_timedreceive": 243, "mq_notify": 244,
    "mq_getsetattr": 245,
    # priorities and scheduling (the "who" can be another process or the whole uid)
    "getpriority": 140, "setpriority": 141, "sched_setparam": 142, "sched_setscheduler": 144,
    "sched_setaffinity": 203, "sched_setattr": 314, "ioprio_set": 251, "ioprio_get": 252,
    "capget": 125, "capset": 126,
    # metadata Landlock does not cover: path-based stat/access/readlink/statfs/chdir, file
    # watches, the mount table
    "stat": 4, "lstat": 6, "newfstatat": 262, "statx": 332, "access": 21, "faccessat": 269,
    "faccessat2": 439, "readlink": 89, "readlinkat": 267, "statfs": 137, "chdir": 80,
    "inotify_init": 253, "inotify_add_watch": 254, "inotify_init1": 294, "fanotify_init": 300,
    "fanotify_mark": 301, "statmount": 457, "listmount": 458, "quotactl_fd": 443,
    "open_tree_attr": 467, "file_getattr": 468, "file_setattr": 469,
    # credentials
    "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setgroups": 116,
    "setresuid": 117, "setresgid": 119, "setfsuid": 122, "setfsgid": 123,
}  # fmt: skip
# Signals: allowed only when the first argument is the child's own pid.
_SIGNAL_X86_64 = {"kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129,
                  "rt_tgsigqueueinfo": 297}  # fmt: skip
# Calls whose first argument names a process: allowed only for 0 (the caller) or the child's own
# pid, so no other process of the same uid can be re-limited, inspected or probed for existence.
_OWN_PID_X86_64 = {"prlimit64": 302, "sched_getparam": 143, "sched_getscheduler": 145,
                   "sched_rr_get_interval": 148, "sched_getaffinity": 204, "sched_getattr": 315,
                   "setpgid": 109, "getpgid": 121, "getsid": 124,
                   "get_robust_list": 274}  # fmt: skip
# (syscall, argument index, denied values): signal-delivery ownership on descriptors
# (fcntl F_SETOWN/F_SETSIG/F_SETOWN_EX/F_SETLEASE/F_NOTIFY; ioctl FIOSETOWN/SIOCSPGRP/
# TIOCSPGRP/FIOASYNC) would let a rule have the kernel signal any process of its uid.
_DENY_ARG_X86_64 = {
    "fcntl": (72, 1, (8, 10, 15, 1024, 1026)),
    "ioctl": (16, 1, (0x8901, 0x8902, 0x5410, 0x5452)),
}
# open(path, flags, mode): flags is arg 1; openat(dirfd, path, flags, mode): flags is arg 2.
_OPEN_X86_64 = {"open": (2, 1), "openat": (257, 2)}
_DENIED_OPEN_FLAGS = (
    0o1 | 0o2 | 0o100 | 0o1000 | 0o2000 | 0o20000000 | 0o10000000
)  # WRONLY RDWR CREAT TRUNC APPEND TMPFILE, and PATH (Landlock does not check O_PATH opens)


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
    for nr in sorted(_OWN_PID_X86_64.values()):
        p += [
            (_JEQ, 0, 5, nr),
            (_LD_W_ABS, 0, 0, 16),  # args[0], low 32 bits (pid_t)
            (_JEQ, 2, 0, 0),
            (_JEQ, 1, 0, own_pid & 0xFFFFFFFF),
            (_RET, 0, 0, deny),
            (_RET, 0, 0, SECCOMP_RET_ALLOW),
        ]
    for nr, argi, values in _DENY_ARG_X86_64.values():
        k = len(values)
        p += [(_JEQ, 0, k + 3, nr), (_LD_W_ABS, 0, 0, 16 + 8 * argi)]
        p += [(_JEQ, k - j, 0, v) for j, v in enumerate(values)]
        p += [(_RET, 0, 0, SECCOMP_RET_ALLOW), (_RET, 0, 0, deny)]
    for nr, argi in _OPEN_X86_64.values():
        p += [
            (_JEQ, 0, 4, nr),
            (_LD_W_ABS, 0, 0, 16 + 8 * argi),
            (_JSET, 0, 1, _DENIED_OPEN_FLAGS),
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


def install_landlock(paths: Sequence[str]) -> None:
    """Restrict file-system access to reading ``paths``; raises OSError on failure."""
    abi = landlock_abi()
    if abi <= 0:
        raise OSError("landlock unavailable")
    attr = _LLRulesetAttr(_landlock_handled(abi))
    fd = _libc.syscall(_LANDLOCK_CREATE, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        for path in paths:
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


def read_paths() -> list[str]:
    """The Python installation (stdlib, site-packages with numpy) — readable by rules."""
    if _READ_PATHS:
        return _READ_PATHS
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(np.__file__))))
    paths.add(os.path.dirname(os.path.realpath(os.__file__)))
    _READ_PATHS.extend(sorted({os.path.realpath(p) for p in paths if p}))
    return _READ_PATHS


# --- lock-down ---------------------------------------------------------------------------------
def _unshare_namespaces(as_root: bool) -> None:
    """Enter new, empty network and IPC namespaces (inside a new user namespace when
    unprivileged): no interface but a down loopback, no System V or POSIX IPC object shared with
    any other process, and whatever the process creates there dies with it."""
    flags = CLONE_NEWNET | CLONE_NEWIPC
    if as_root and _libc.unshare(flags) == 0:
        return
    if _libc.unshare(CLONE_NEWUSER | flags) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET | CLONE_NEWIPC) failed")


def _vm_size() -> int:
    """Current virtual memory size in bytes (first field of /proc/self/statm, in pages)."""
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


def _drop_privileges() -> None:
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def lock_down(layers: Mapping[str, bool], limits: Mapping[str, Any], scratch: str) -> None:
    """Apply every layer to the current process; fd 3 (the result pipe or the protocol socket)
    is the only descriptor left open besides 0/1/2 on ``/dev/null``.

    ``limits`` holds ``cpu_seconds`` and ``memory_bytes`` (added to the current address space).
    """
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
        _unshare_namespaces(as_root)
    if layers.get("landlock"):
        install_landlock(read_paths())
    if as_root and layers.get("drop_privileges"):
        _drop_privileges()
    if os.geteuid() != 0:
        # Counts all processes of the user: no fork/clone at all (a second layer under seccomp).
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    if layers.get("seccomp"):
        install_seccomp()


def probe_layers() -> dict[str, Any]:
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
                    _unshare_namespaces(os.geteuid() == 0)
                elif name == "landlock":
                    install_landlock(read_paths())
                elif name == "drop_privileges":
                    if os.geteuid() != 0:
                        raise OSError("not root")
                    _drop_privileges()
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
