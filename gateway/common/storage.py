"""SAX_ROOT access: a local directory or a ``gs://bucket/prefix`` URL behind one small API.

Paths are relative to the root and "/"-separated (``"sax/test/location.proto"``); build them
with ``storage.join``. Every method is a coroutine: the blocking work (file system or the GCS
JSON API) runs in a worker thread so an event loop never stalls on it::

    storage = open_storage("gs://bucket/root", gcs_endpoint="http://127.0.0.1:9023")
    data = await storage.read(storage.join("sax", "test", "location.proto"))
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import glob
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.common.closing import completing
from gateway.common.failurelog import FailureLog

_log = logging.getLogger(__name__)

_GS = "gs://"
# The most of an error's own text that a failure's message quotes.
_DETAIL_CHARS = 400
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
#: The variable that points google-cloud-storage (and Go's client) at an emulator.
EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"

#: Seconds one GCS operation may take, its retries of transient errors included. The
#: library's own budget is 120 s: a bucket that was down held every caller (and the admin's
#: state lock) for two minutes before anyone heard of it.
GCS_RETRY_S = 10.0
#: Seconds to connect, and to wait for an answer, per HTTP request to GCS.
GCS_REQUEST_TIMEOUT_S = (3.0, 10.0)
#: Seconds the read may take that tells whether a write whose answers were lost landed.
GCS_CHECK_TIMEOUT_S = 3.0


class StorageSetupError(ValueError):
    """A root that cannot be opened at all (no bucket, no credentials): a one-line message
    for whoever started the process, not a traceback."""


class StorageError(OSError):
    """A file or directory of a root that cannot be read or written: the message names it
    (path or URL) and the cause, for the log; callers tell their own callers less (see
    ``gateway.common.errors.storage_failure``). An ``OSError``, as a local file system's
    failures are.

    ``transient``: the storage did not answer, or answered with a failure that may pass by
    itself (a timeout, GCS's 5xx or 429, a bucket or volume that is not there yet), so a
    retry may succeed. Otherwise it refused this server (permissions, a read-only or full
    file system, a file where a directory should be): nothing changes until someone fixes it.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


# Local errors that a retry may not meet again: a network file system or disk that is slow
# or away, a resource the process or system is short of for now. Any other OSError (EACCES,
# EROFS, ENOSPC, ENOTDIR, ELOOP, ...) stays until someone changes the file system.
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.EAGAIN,
        errno.EINTR,
        errno.EBUSY,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.ENOLCK,
        errno.ENOMEM,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOTCONN,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.ENETUNREACH,
    }
)


#: What marks a directory of a gs:// root as there for upstream Sax, which writes it (empty)
#: into each it makes: its tools and servers take a cell without one not to exist.
DIR_MARKER = "METADATA"

# Modes of what a local root holds, as upstream Sax writes them (whatever the umask).
FILE_MODE = 0o644
DIR_MODE = 0o755


def make_dirs(directory: Path) -> None:
    """Creates ``directory`` and its missing parents, each ``DIR_MODE``."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:  # another writer made it meanwhile
            continue
        os.chmod(new, DIR_MODE)


class Storage(abc.ABC):
    """A tree of small files (SAX_ROOT or a cell's fs_root)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._failures_log = FailureLog(_log)

    @staticmethod
    def join(*parts: str) -> str:
        """Joins path parts with "/", ignoring empty parts and stray slashes."""
        return "/".join(p.strip("/") for p in parts if p.strip("/"))

    async def read(self, path: str, *, strict: bool = False) -> bytes | None:
        """The file's contents, or None if it does not exist. ``strict``: a file where a
        folder of ``path`` should be, or a folder where ``path`` should be, is a
        `StorageError`, not a file that is not there (a cell's state that something is in
        the way of is no empty state)."""
        return await asyncio.to_thread(self.read_sync, path, strict=strict)

    async def write(self, path: str, data: bytes) -> None:
        """Replaces the file atomically (readers see the old or the new contents, never a mix).

        Cancelled, it ends only once the write has: a thread cannot be stopped (GCS retries
        for up to ``GCS_RETRY_S``), and a caller that holds a lock around its write must not
        let a later write land first and then be overwritten by this older one."""
        await completing(asyncio.to_thread(self.write_sync, path, data))

    async def make_dir(self, path: str) -> None:
        """Makes the directory ``path`` as upstream Sax makes one, unless it is there."""
        await asyncio.to_thread(self.make_dir_sync, path)

    async def list_dirs(self, path: str) -> list[str]:
        """Sorted names of the subdirectories of ``path``; [] if it does not exist."""
        return await asyncio.to_thread(self.list_dirs_sync, path)

    async def exists(self, path: str) -> bool:
        """Whether ``path`` is a file or a non-empty directory."""
        return await asyncio.to_thread(self.exists_sync, path)

    async def discard_partial_writes(self, path: str, older_than: float = 0.0) -> None:
        """Removes what writes of ``path`` cut short (by a kill) left behind: all of it, for a
        file that one process writes (another writer's write in flight would fail); for a
        file that several write, what is ``older_than`` seconds, which no write in flight is."""
        await asyncio.to_thread(self.discard_partial_writes_sync, path, older_than)

    def url(self, path: str) -> str:
        """``path`` spelled out under the root, for messages."""
        return f"{self.root.rstrip('/')}/{path}"

    def _failed(self, doing: str, path: str, why: str, *, transient: bool) -> StorageError:
        """The error of a failed operation, logged here with the path or URL that no caller
        passes on to its own callers: when it starts, then once a minute while it goes on."""
        message = f"{doing} {self.url(path)} failed: {why}"
        self._failures_log.failed((doing, path), message)
        return StorageError(message, transient=transient)

    def _succeeded(self, doing: str, path: str) -> None:
        """Logs the end of a failure of this operation, if one was going on."""
        self._failures_log.succeeded((doing, path), f"{doing} {self.url(path)}")

    # The blocking implementations; usable directly from synchronous code.
    @abc.abstractmethod
    def read_sync(self, path: str, *, strict: bool = False) -> bytes | None: ...

    @abc.abstractmethod
    def write_sync(self, path: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def make_dir_sync(self, path: str) -> None: ...

    @abc.abstractmethod
    def list_dirs_sync(self, path: str) -> list[str]: ...

    @abc.abstractmethod
    def discard_partial_writes_sync(self, path: str, older_than: float = 0.0) -> None: ...

    @abc.abstractmethod
    def exists_sync(self, path: str) -> bool: ...


class LocalStorage(Storage):
    """A local directory."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._root = Path(root)

    def _path(self, path: str) -> Path:
        return self._root.joinpath(*path.split("/")) if path else self._root

    @contextlib.contextmanager
    def _failures(self, doing: str, path: str) -> Iterator[None]:
        """Turns an ``OSError`` into a logged ``StorageError``."""
        try:
            yield
        except OSError as exc:
            transient = exc.errno in _TRANSIENT_ERRNOS
            raise self._failed(doing, path, str(exc), transient=transient) from exc
        self._succeeded(doing, path)

    def _root_is_a_directory(self) -> None:
        """Raises if the root itself is a file (or anything but a directory): nothing under
        it can ever be found, and no retry mends it. A file further down, where a path of
        this root would be a directory (a stray file named like a cell), is a path that is
        not there."""
        if self._root.exists() and not self._root.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "the root is not a directory", str(self._root))

    def read_sync(self, path: str, *, strict: bool = False) -> bytes | None:
        with self._failures("reading", path):
            try:
                return self._path(path).read_bytes()
            except (NotADirectoryError, IsADirectoryError):
                if strict:
                    raise
                self._root_is_a_directory()
                return None
            except FileNotFoundError:
                return None

    def write_sync(self, path: str, data: bytes) -> None:
        with self._failures("writing", path):
            self._write(self._path(path), data)

    @staticmethod
    def _write(target: Path, data: bytes) -> None:
        make_dirs(target.parent)
        # Write a sibling temp file, flush it to disk, then rename over the target: rename is
        # atomic, and the directory fsync makes the rename itself survive a crash. A failure
        # before the rename leaves the target as it was.
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as exc:
            # The directory refused a new file (read-only, immutable, out of inodes): say so
            # by its name. The temp file's random one made each failure a new cause to the
            # failure log, a WARNING per write for as long as the disk refused.
            raise OSError(exc.errno, exc.strerror, str(target.parent)) from None
        try:
            # mkstemp creates 0600; upstream Sax writes 0644, and its tools (saxutil run by
            # another user) must be able to read what we write.
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def discard_partial_writes_sync(self, path: str, older_than: float = 0.0) -> None:
        # write_sync's temp files: a kill between mkstemp and the rename leaves one for good.
        target = self._path(path)
        wall = time.time()  # as files' times are: no deadline is read here
        with self._failures("discarding partial writes of", path):
            for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
                with contextlib.suppress(FileNotFoundError):  # another writer's, renamed
                    if not older_than or wall - leftover.stat().st_mtime > older_than:
                        leftover.unlink(missing_ok=True)

    def make_dir_sync(self, path: str) -> None:
        with self._failures("making", path):
            make_dirs(self._path(path))

    def list_dirs_sync(self, path: str) -> list[str]:
        with self._failures("listing", path):
            try:
                return sorted(e.name for e in os.scandir(self._path(path)) if e.is_dir())
            except NotADirectoryError:
                self._root_is_a_directory()
                return []
            except FileNotFoundError:
                return []

    def exists_sync(self, path: str) -> bool:
        target = self._path(path)
        with self._failures("looking for", path):
            return target.is_file() or (target.is_dir() and any(target.iterdir()))


class GcsStorage(Storage):
    """A prefix of a Cloud Storage bucket, through google-cloud-storage.

    GCS has no directories: a "directory" is a common prefix of object names, and each object
    upload replaces the object atomically.
    """

    def __init__(
        self, root: str, *, endpoint: str | None = None, retry_timeout: float = GCS_RETRY_S
    ) -> None:
        super().__init__(root)
        # Imported here so local-only users never pay for google-cloud-storage's import, which
        # also warns (ImportWarning) that grpcio-status is missing: google-api-core only uses
        # it for gRPC APIs, and GCS is used over JSON/HTTP here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Please install grpcio-status", ImportWarning)
            from google.cloud import storage

        from google.cloud.storage.retry import DEFAULT_RETRY

        bucket, _, prefix = root.removeprefix(_GS).partition("/")
        if not bucket:
            raise StorageSetupError(f"no bucket in {root!r}; expected gs://BUCKET/PATH")
        self._prefix = prefix.strip("/")
        self._bucket_name = bucket
        self._retry_timeout = retry_timeout
        self._bounded: dict[str, Any] = {
            "timeout": GCS_REQUEST_TIMEOUT_S,
            "retry": DEFAULT_RETRY.with_timeout(retry_timeout),
        }
        # google-cloud-storage's own switch to an emulator, read here so that it gets the
        # same handling as --gcs-endpoint (the library would take it without a scheme too).
        endpoint = endpoint or os.environ.get(EMULATOR_VARIABLE) or None
        if endpoint is None:
            from google.auth.exceptions import DefaultCredentialsError

            try:
                self._client: Any = storage.Client()
            except DefaultCredentialsError:
                raise StorageSetupError(
                    f"no Google Cloud credentials to read {root}: on GKE, bind the pod's "
                    "service account to a Google one (Workload Identity, docs/deploy.md); "
                    "elsewhere set GOOGLE_APPLICATION_CREDENTIALS to a service account key, or "
                    "run `gcloud auth application-default login` (an emulator: --gcs-endpoint)"
                ) from None
        else:
            # An emulator: anonymous, as the library makes a client of STORAGE_EMULATOR_HOST.
            from google.auth.credentials import AnonymousCredentials

            self._client = storage.Client(
                project="sax-gateway",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call,unused-ignore]
                client_options={"api_endpoint": _with_scheme(endpoint)},
            )
        self._bucket: Any = self._client.bucket(bucket)

    def _name(self, path: str) -> str:
        return self.join(self._prefix, path)

    @contextlib.contextmanager
    def _failures(self, doing: str, path: str) -> Iterator[None]:
        """Turns the library's errors into one logged ``StorageError`` that says what to check."""
        from google.api_core.exceptions import (
            GoogleAPICallError,
            GoogleAPIError,
            NotFound,
            RetryError,
        )
        from google.auth.exceptions import GoogleAuthError

        try:
            yield
        except NotFound as exc:  # an object's absence is handled by each caller
            # A bucket that is not there (yet), like a local root not mounted yet: transient.
            why = f"bucket {self._bucket_name} does not exist ({self.root})"
            raise self._failed(doing, path, why, transient=True) from exc
        except RetryError as exc:
            raise self._failed(doing, path, self._gave_up(exc.cause), transient=True) from exc
        except GoogleAPICallError as exc:
            # An HTTP answer that was not retried: 5xx and 429 only pass by themselves; 401,
            # 403 and the rest refuse this server's credentials or request until fixed.
            transient = exc.code is not None and (exc.code >= 500 or exc.code == 429)
            why = f"{self.root} refused: {_cause(exc)}: {exc.message}"
            raise self._failed(doing, path, why, transient=transient) from exc
        except (GoogleAPIError, GoogleAuthError, OSError) as exc:
            # OSError covers requests' own errors (a refused or reset connection); an auth
            # error says whether it is worth retrying (a metadata server that did not answer).
            transient = isinstance(exc, OSError) or bool(getattr(exc, "retryable", False))
            why = f"{self.root} is unreachable: {_described(exc)}"
            raise self._failed(doing, path, why, transient=transient) from exc
        self._succeeded(doing, path)

    def _gave_up(self, last: BaseException | None) -> str:
        """Why the library stopped retrying what may pass (no connection, a timeout, 5xx,
        429): with its last error, and its budget, not the time spent, which the log would
        take for a new cause at each failure. It stops when its next wait would pass the
        budget, often seconds before: "no answer within 10 s" was said after 2 s, and of a
        storage that answered 503 each time."""
        retried = f"retries within {self._retry_timeout:g} s gave up"
        if last is not None and _status(last) is not None:  # it answered, with a failure
            return f"{self.root} kept failing: {retried}; last: {_described(last)}"
        if last is None:
            return f"{self.root} is unreachable: {retried} with no answer"
        return f"{self.root} is unreachable: {retried}; last: {_described(last)}"

    def read_sync(self, path: str, *, strict: bool = False) -> bytes | None:
        # GCS has no folders: nothing can be in the way of an object (``strict``).
        from google.api_core.exceptions import NotFound

        with self._failures("reading", path):
            try:
                data: bytes = self._bucket.blob(self._name(path)).download_as_bytes(**self._bounded)
            except NotFound:  # no such object (or no such bucket: exists() tells)
                return None
        return data

    def write_sync(self, path: str, data: bytes) -> None:
        # One upload replaces the object whole or not at all: a failed one leaves the old.
        blob = self._bucket.blob(self._name(path))
        with self._failures("writing", path):
            try:
                blob.upload_from_string(data, **self._bounded)
            except Exception:
                # An upload that landed may have lost its answer (a reset connection, a proxy
                # that timed out), and so may each retry: then the write succeeded. Told it
                # failed, the admin kept a saved change out of memory, answered its caller
                # UNAVAILABLE, and then wrote its old state back over it.
                if not self._holds(blob, data):
                    raise
                _log.info("writing %s: its answers were lost, but it landed", self.url(path))

    @staticmethod
    def _holds(blob: Any, data: bytes) -> bool:
        """Whether ``blob`` holds ``data`` now: asked once, within `GCS_CHECK_TIMEOUT_S` (the
        write has had its time); no answer is "no"."""
        try:
            held: bytes = blob.download_as_bytes(timeout=GCS_CHECK_TIMEOUT_S, retry=None)
        except Exception:
            return False
        return held == data

    def discard_partial_writes_sync(self, path: str, older_than: float = 0.0) -> None:
        pass  # an upload replaces an object whole or not at all: nothing is left behind

    def make_dir_sync(self, path: str) -> None:
        # GCS has no directories: upstream's stand for one is its marker object.
        marker = self._bucket.blob(self._name(self.join(path, DIR_MARKER)))
        with self._failures("making", path):
            if not marker.exists(**self._bounded):
                marker.upload_from_string(b"", **self._bounded)

    def list_dirs_sync(self, path: str) -> list[str]:
        prefix = self._dir_prefix(path)
        with self._failures("listing", path):
            blobs = self._client.list_blobs(
                self._bucket, prefix=prefix, delimiter="/", **self._bounded
            )
            for _ in blobs:  # prefixes are only known once every page has been read
                pass
        return sorted(p[len(prefix) :].rstrip("/") for p in blobs.prefixes)

    def exists_sync(self, path: str) -> bool:
        with self._failures("looking for", path):
            if self._bucket.blob(self._name(path)).exists(**self._bounded):
                return True
            blobs = self._client.list_blobs(
                self._bucket, prefix=self._dir_prefix(path), max_results=1, **self._bounded
            )
            return any(True for _ in blobs)

    def _dir_prefix(self, path: str) -> str:
        name = self._name(path)
        return f"{name}/" if name else ""


def _with_scheme(endpoint: str) -> str:
    """``endpoint`` as a URL: ``HOST:PORT`` means ``http://HOST:PORT``, as Go's storage client
    (upstream's admin server and saxutil) reads STORAGE_EMULATOR_HOST; google-cloud-storage
    put a bare ``HOST:PORT`` before each path, and every call failed (InvalidSchema)."""
    return endpoint if "://" in endpoint else f"http://{endpoint}"


def _described(exc: BaseException) -> str:
    """`_cause` and what the error says, on one line and cut short: the host and port that did
    not answer, and why. A class name alone did not tell GCS that was down from a token
    endpoint that was (credentials that cannot get a token: the metadata server shut out)."""
    # Without object addresses (urllib3 quotes its connection's repr): each attempt's text
    # would differ, and the failure log would take each for a new cause, logged every time.
    detail = _ADDRESS.sub("", " ".join(str(exc).split()))
    if len(detail) > _DETAIL_CHARS:
        detail = f"{detail[:_DETAIL_CHARS]}..."
    return f"{_cause(exc)}: {detail}" if detail else _cause(exc)


def _cause(exc: BaseException) -> str:
    """An exception's class and, for an HTTP answer, its status: ``Forbidden (403)``."""
    code = _status(exc)
    return f"{type(exc).__name__} ({code})" if code is not None else type(exc).__name__


def _status(exc: BaseException) -> int | None:
    """The HTTP status GCS answered with, if it answered: an API error's code, or an upload's
    (google-resumable-media's InvalidResponse holds the response)."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def absolute_root(root: str) -> str:
    """``root`` as the same place named from any directory: a local path made absolute (a
    relative one means another directory wherever a process starts), a gs:// URL as it is."""
    return root if root.startswith(_GS) else os.path.abspath(root)


def open_storage(root: str, *, gcs_endpoint: str | None = None) -> Storage:
    """Opens a local directory or a ``gs://bucket/prefix`` root.

    ``gcs_endpoint`` overrides the GCS API endpoint (e.g. ``http://127.0.0.1:9023``, or
    ``127.0.0.1:9023``, for an emulator, used with anonymous credentials; else
    STORAGE_EMULATOR_HOST's); it is ignored for local roots.
    """
    if root.startswith(_GS):
        return GcsStorage(root, endpoint=gcs_endpoint)
    return LocalStorage(root)
