"""Refuse every network connection that does not stay on this machine.

Used two ways (nothing here imports more than the standard library):

* In the ComfyUI server (a subprocess): `server_env()` gives the environment that puts
  `offline_site/` on PYTHONPATH, whose `sitecustomize.py` calls `install()` before ComfyUI's
  main.py runs, and sets HF_HUB_OFFLINE=1 and friends. Every refused attempt is appended, with
  the Python stack that made it, to the file named by $PORTRAITTALK_OFFLINE_LOG, so a test can
  assert that nothing tried (a library that swallows the OSError would otherwise hide it).
* In the test process: the `no_network()` context manager (or `install()` / `uninstall()`).

What counts as local: AF_UNIX sockets, and AF_INET/AF_INET6 addresses in 127.0.0.0/8, ::1, and
the unspecified address (0.0.0.0, ::, which `bind` uses; binding is never refused). Names are
resolved only when they are local names ("localhost") or IP literals; `getaddrinfo` of any other
host name is refused too, since resolving it is itself a network request.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE_DIR = HERE / "offline_site"  # holds sitecustomize.py
LOG_ENV = "PORTRAITTALK_OFFLINE_LOG"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DIFFUSERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkRefused(ConnectionRefusedError):
    """A connection to a non-loopback address (an OSError, as a real offline machine would give)."""


_lock = threading.Lock()
_saved: dict | None = None
refused: list[str] = []  # in-process record of refused attempts


def is_local_host(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).strip("[]").split("%", 1)[0]  # [::1], fe80::1%eth0
    if host in ("", "<broadcast>"):
        return host == ""
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name other than localhost: resolving it would go out
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_unspecified


def is_ip_literal(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _is_local_address(family, address) -> bool:
    if family in (socket.AF_INET, socket.AF_INET6):
        return isinstance(address, tuple) and bool(address) and is_local_host(address[0])
    return True  # AF_UNIX, AF_NETLINK...: they never leave the machine


def _record(what: str) -> None:
    stack = "".join(traceback.format_stack(limit=25)[:-2])
    entry = f"--- refused {what} at {time.strftime('%H:%M:%S')} (pid {os.getpid()})\n{stack}"
    refused.append(entry)
    path = os.environ.get(LOG_ENV)
    if path:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(entry)
        except OSError:
            pass
    print(f"[offline-guard] refused {what}", file=sys.stderr, flush=True)


def install() -> None:
    """Patch socket.socket.connect/connect_ex/sendto/sendmsg and socket.getaddrinfo (idempotent)."""
    global _saved
    with _lock:
        if _saved is not None:
            return
        cls = socket.socket
        saved = {"connect": cls.connect, "connect_ex": cls.connect_ex, "sendto": cls.sendto,
                 "getaddrinfo": socket.getaddrinfo}
        if hasattr(cls, "sendmsg"):
            saved["sendmsg"] = cls.sendmsg

        def check(sock, address, what):
            if not _is_local_address(sock.family, address):
                _record(f"{what} to {address!r}")
                raise NetworkRefused(f"network access refused in tests: {what} to {address!r} "
                                     "(only loopback is allowed; see tests/comfyui_harness/offline.py)")

        def connect(self, address):
            check(self, address, "connect")
            return saved["connect"](self, address)

        def connect_ex(self, address):
            check(self, address, "connect_ex")
            return saved["connect_ex"](self, address)

        def sendto(self, data, *args):
            address = args[-1] if args else None
            if address is not None:
                check(self, address, "sendto")
            return saved["sendto"](self, data, *args)

        def sendmsg(self, buffers, *args):
            if len(args) >= 3 and args[2] is not None:
                check(self, args[2], "sendmsg")
            return saved["sendmsg"](self, buffers, *args)

        def getaddrinfo(host, *args, **kwargs):
            # An IP literal resolves without asking anyone (connect then decides); a name other than
            # localhost would be a DNS query.
            if not is_local_host(host) and not is_ip_literal(host):
                _record(f"getaddrinfo({host!r})")
                raise socket.gaierror(socket.EAI_NONAME, f"name resolution refused in tests: {host!r}")
            return saved["getaddrinfo"](host, *args, **kwargs)

        cls.connect, cls.connect_ex, cls.sendto = connect, connect_ex, sendto
        if "sendmsg" in saved:
            cls.sendmsg = sendmsg
        socket.getaddrinfo = getaddrinfo
        _saved = saved


def uninstall() -> None:
    global _saved
    with _lock:
        if _saved is None:
            return
        cls = socket.socket
        cls.connect, cls.connect_ex, cls.sendto = _saved["connect"], _saved["connect_ex"], _saved["sendto"]
        if "sendmsg" in _saved:
            cls.sendmsg = _saved["sendmsg"]
        socket.getaddrinfo = _saved["getaddrinfo"]
        _saved = None


def installed() -> bool:
    return _saved is not None


@contextlib.contextmanager
def no_network(env: bool = True):
    """In-process: refuse non-loopback sockets (and set the HF offline variables) inside the block.
    Yields the list that collects refused attempts made inside it."""
    old_env = {k: os.environ.get(k) for k in OFFLINE_ENV}
    if env:
        os.environ.update(OFFLINE_ENV)
    was = installed()
    start = len(refused)
    install()
    seen: list[str] = []
    try:
        yield seen
    finally:
        seen.extend(refused[start:])
        if not was:
            uninstall()
        if env:
            for k, v in old_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def server_env(log_path: str | os.PathLike) -> dict[str, str]:
    """Environment for a ComfyServer (its `env` argument): offline variables, the guard on
    PYTHONPATH (ahead of whatever was there), and the file that records refused attempts."""
    parts = [str(SITE_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**OFFLINE_ENV, "PYTHONPATH": os.pathsep.join(parts), LOG_ENV: str(log_path)}


def read_log(log_path: str | os.PathLike) -> str:
    try:
        return Path(log_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
