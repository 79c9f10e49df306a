"""Real processes for outage tests: a gunicorn server as deployed, a TCP proxy in front of
PostgreSQL that can be cut, and a private redis-server that can be stopped and restarted.
All bind 127.0.0.1 on ports the OS picks, so nothing shared is ever disturbed."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tvtrader.devservices import redis_answers, redis_server_binary

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_post(url: str, body: bytes, content_type: str = "text/plain", timeout: float = 10) -> tuple[int, dict, float]:
    """POST and return (status, JSON body, seconds taken)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), time.monotonic() - started


def http_get(url: str, timeout: float = 10) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target, and fails the ways a network does:

    - `cut()`: drops every open connection and hangs up on new ones at once (a crashed or
      restarting database, a refused connect);
    - `reset()`: the same with a TCP RST on every connection (a firewall, a failover);
    - `blackhole()`: connections stay open but nothing gets through either way, new ones
      included, until `restore()` (packets dropped: the peer neither answers nor hangs up;
      what was sent meanwhile arrives afterwards, as TCP retransmits it).

    `restore()` forwards again."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = False
        self.flowing = threading.Event()
        self.flowing.set()
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.flowing.wait()
        if self.cut_off:
            self._hang_up(client)
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self.lock:
            self.sockets.update((client, upstream))
        threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        # Each socket is the source of exactly one pipe, which alone closes it: closing a socket
        # another thread still reads would free its descriptor for reuse under that reader.
        src.close()

    def _hang_up(self, sock: socket.socket, rst: bool = False) -> None:
        """Wake the pipes reading `sock` (they close it); with `rst`, closing sends a RST."""
        try:
            if rst:  # linger 0: the close sends RST instead of finishing the stream
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _drop_all(self, rst: bool) -> None:
        with self.lock:
            for sock in self.sockets:
                self._hang_up(sock, rst)
            self.sockets.clear()
        self.flowing.set()  # waiting connects now see cut_off and hang up

    def cut(self) -> None:
        self.cut_off = True
        self._drop_all(rst=False)

    def reset(self) -> None:
        self.cut_off = True
        self._drop_all(rst=True)

    def blackhole(self) -> None:
        self.flowing.clear()

    def restore(self) -> None:
        self.cut_off = False
        self.flowing.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


class PrivateRedis:
    """A redis-server of our own on a free port; stop() and start() keep the port."""

    def __init__(self, data_dir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = redis_server_binary(install=True)
        assert binary, "no redis-server binary (install redis-server)"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not redis_answers(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# Exec gunicorn with a listening socket at fd 3 and LISTEN_FDS/LISTEN_PID set for its own
# pid: what systemd's socket activation does (deploy/templates/tvtrader-web.socket).
_SOCKET_ACTIVATED = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_FDS'] = '1';"
    " os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


class GunicornProcess:
    """The web server as deployed (deploy/gunicorn.conf.py, sync workers) on a free port.

    With `held_socket=True` the listening socket belongs to this object, as it belongs to
    systemd with the socket unit: gunicorn takes it over at every start, and `kill()` leaves
    it listening, so connections made while no gunicorn runs wait for the next `start()`."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int | None = 1, held_socket: bool = False):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=2048) if held_socket else None
        self.port = self.listener.getsockname()[1] if self.listener else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **env,
            "GUNICORN_BIND": f"127.0.0.1:{self.port}",
            "DJANGO_SETTINGS_MODULE": "tvtrader.settings",
        }
        if workers:  # otherwise deploy/gunicorn.conf.py decides (one per core, at least 2)
            self.env["GUNICORN_WORKERS"] = str(workers)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        args = ["-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "tvtrader.wsgi"]
        if self.listener is not None:
            fd = self.listener.fileno()
            args = ["-c", _SOCKET_ACTIVATED, str(fd), *args]
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(self.listener.fileno(),) if self.listener is not None else (),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log()[-3000:]}")
            if self._answers():
                return
            time.sleep(0.1)
        raise RuntimeError("gunicorn did not start answering in 30 s")

    def _answers(self) -> bool:
        if self.listener is None:  # its own socket: listening means serving
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False
        # A held socket always accepts; serving is a gunicorn worker answering.
        try:
            with urllib.request.urlopen(self.url + "/tv-webhook", timeout=0.5):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the master and its workers (a crash, an OOM kill)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def app_env(**overrides: str) -> dict[str, str]:
    """The environment of a web or worker process on the test database and broker."""
    from django.conf import settings

    from tests.conftest import test_database_url

    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        REDIS_NAMESPACE=settings.REDIS_NAMESPACE,
        TVTRADER_VAR_DIR=str(settings.VAR_DIR),
        WEBHOOK_PASSPHRASE=settings.WEBHOOK_PASSPHRASE,
        CREDENTIALS_ENCRYPTION_KEYS=",".join(settings.CREDENTIALS_ENCRYPTION_KEYS),
        LOG_LEVEL="INFO",
    )
    env.update(overrides)
    return env
