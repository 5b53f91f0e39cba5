"""A warm interpreter for the paper smokes' ``python -m soften`` jobs (test machinery only).

Each of the ~550 jobs of the two paper smokes is a fresh ``python -m soften STAGE``
process that spends ~2.5 CPU-seconds importing torch, AutoAttack and torchattacks before
its few milliseconds of smoke-scale work: on 2 cores that was half of the smokes' time.
Here one server imports them once and forks a child per job; a ``python`` shim first on
the jobs' PATH sends ``python -m soften ...`` to it (argv, working directory,
environment, umask and the job's stdin/stdout/stderr, passed as file descriptors) and
exits with the child's status. Anything else the shim execs the real interpreter with.

So the smokes still run the real Snakemake, the real shell commands and soften's real
command line (``soften.__main__`` run as ``__main__`` in the child, exactly as ``-m``
does); what they no longer repeat is the import. Process-level behaviour (a job killed,
resumed, timed out; a job ending with the Snakemake that started it, soften.pipeline.lifetime,
which finds no Snakemake among a forked child's ancestors) is tested by the other workflow
tests, which start real processes. tests/test_warm_python.py checks the shim itself.

``python tests/_warm_python.py SOCKET`` serves until terminated; tests use :func:`serve_warm`
(conftest's ``warm_python`` fixture: one server per test module) and :func:`warm_env`.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: What the smoke jobs import; nothing here may start threads or touch CUDA, so that each
#: forked child initialises both itself. Not soften.__main__: the child runs it as __main__.
#: torch._dynamo: torch.optim imports it on the first optimizer built (~2 CPU-s per train job).
PRELOAD = ("torch", "torch._dynamo", "numpy", "autoattack", "torchattacks", "soften.pipeline.stages",
           "soften.training.loop", "soften.evaluation.evaluate", "soften.evaluation.autoattack",
           "soften.evaluation.torchattacks_aa", "soften.evaluation.sanity", "soften.evaluation.transfer",
           "soften.evaluation.calibration", "soften.reporting.tables", "soften.reporting.plots")

#: The shim: ``python -m soften ...`` goes to the server when it listens, anything else to the real python.
SHIM = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "soften" ] && [ -S "${{SOFTEN_WARM_SOCKET:-}}" ]; then
    exec {python} -S -E {client} "$@"
fi
exec {python} "$@"
"""

_MAX_HEADER = 1 << 20


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _child(header: dict, fds: list[int], server: socket.socket) -> None:
    """Runs in the forked child: become the job, run ``python -m soften``, exit with its status."""
    code = 1
    try:
        server.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(header["cwd"])
        os.umask(header["umask"])
        os.environ.clear()
        os.environ.update(header["env"])
        sys.argv = [header["argv0"], *header["argv"]]
        try:
            runpy.run_module("soften", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_:
            if exit_.code is None or isinstance(exit_.code, int):
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
        except BaseException:  # noqa: BLE001 - reported as a fresh interpreter would
            traceback.print_exc()
            code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _serve_one(conn: socket.socket, server: socket.socket) -> None:
    size = struct.unpack("!I", _recv_exact(conn, 4))[0]
    if size > _MAX_HEADER:
        raise ConnectionError("header too large")
    msg, fds, _flags, _addr = socket.recv_fds(conn, size, 3)
    msg += _recv_exact(conn, size - len(msg))
    header = json.loads(msg)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        conn.close()
        _child(header, fds, server)
    for fd in fds:
        os.close(fd)
    conn.sendall(struct.pack("!i", pid))

    def reap():
        _pid, status = os.waitpid(pid, 0)
        try:
            conn.sendall(struct.pack("!i", os.waitstatus_to_exitcode(status)))
        finally:
            conn.close()

    threading.Thread(target=reap, daemon=True).start()


def serve(path: str) -> None:
    """Import :data:`PRELOAD`, then fork one child per request on the unix socket ``path``."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    os.chmod(path + ".tmp", stat.S_IRUSR | stat.S_IWUSR)
    server.listen(64)
    os.replace(path + ".tmp", path)  # the socket appears only once the imports are done
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        conn, _ = server.accept()
        try:
            _serve_one(conn, server)
        except (ConnectionError, OSError, ValueError):
            conn.close()


def install(bin_dir: Path, python: str) -> Path:
    """Write the ``python`` shim and its client into ``bin_dir``; returns the shim."""
    client = bin_dir / "warm_client.py"
    client.write_text(CLIENT)
    shim = bin_dir / "python"
    shim.write_text(SHIM.format(python=python, client=client))
    shim.chmod(0o755)
    return shim


#: The client, run with ``python -S -E``: the standard library only, no site-packages.
CLIENT = r'''
import json, os, signal, socket, struct, sys

def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            sys.stderr.write("warm python: the server went away\n")
            sys.exit(1)
        data += chunk
    return data

conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(os.environ["SOFTEN_WARM_SOCKET"])
umask = os.umask(0o022)
os.umask(umask)
header = json.dumps({"argv0": "-m", "argv": sys.argv[3:], "cwd": os.getcwd(), "umask": umask,
                     "env": dict(os.environ)}).encode()
conn.sendall(struct.pack("!I", len(header)))
socket.send_fds(conn, [header], [0, 1, 2])
pid = struct.unpack("!i", recv_exact(conn, 4))[0]
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
code = struct.unpack("!i", recv_exact(conn, 4))[0]
sys.exit(code if code >= 0 else 128 - code)
'''


# ------------------------------------------------------------------ for the tests

@contextlib.contextmanager
def serve_warm(src: Path = REPO / "src"):
    """A warm interpreter (tests/_warm_python.py) importing soften from ``src``, for as long
    as the block runs: yields the environment entries that send jobs' ``python -m soften``
    to it (see :func:`warm_env`)."""
    folder = Path(tempfile.mkdtemp(prefix="soften-warm-"))
    sock = folder / "sock"
    install(folder, sys.executable)
    env = dict(os.environ, PYTHONPATH=str(src) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(folder / "server.log", "wb") as log:
        server = subprocess.Popen([sys.executable, __file__, str(sock)], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while not sock.exists():
            assert server.poll() is None and time.monotonic() < deadline, (folder / "server.log").read_text()[-2000:]
            time.sleep(0.1)
        yield {"PATH": str(folder) + os.pathsep, "SOFTEN_WARM_SOCKET": str(sock)}
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def warm_env(env: dict, warm: dict | None) -> dict:
    """``env`` with :func:`serve_warm`'s entries (its PATH first), if any."""
    return dict(env, SOFTEN_WARM_SOCKET=warm["SOFTEN_WARM_SOCKET"], PATH=warm["PATH"] + env["PATH"]) if warm else env


if __name__ == "__main__":
    serve(sys.argv[1])
