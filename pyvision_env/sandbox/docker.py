"""`DockerSandbox`: the same zygote and worker, inside containers taken from a warm pool."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import stat
import tempfile
import threading
import time
from typing import Any

from pyvision_env.sandbox.base import SandboxConfig
from pyvision_env.sandbox.forked import ForkedSandbox, SandboxStartError, ZygoteClient
from pyvision_env.sandbox.zygote import BOOTSTRAP, PACKAGE_ROOT, ZYGOTE_ENV_SET

DEFAULT_IMAGE = os.environ.get("PYVISION_SANDBOX_IMAGE", "pyvision-sandbox:bookworm-2")
_CODE_DIR = "/opt/pyvision"
_SOCKET_DIR = "/run/pyvision"
_SOCKET_NAME = "zygote.sock"
_CAPABILITIES = ["CHOWN", "SETUID", "SETGID", "KILL", "DAC_OVERRIDE", "FOWNER"]
# What the zygote in a container imports from this package (nothing of tasks or rewards).
_CODE_FILES = ("pyvision_env/sandbox", "pyvision_env/media/video.py")
HOST_LABEL = "pyvision-sandbox-host"  # the pid of the process that started the container
_INSTALL_HINT = "pip install 'pyvision-env[docker]'"


def docker_client() -> Any:
    """A docker SDK client for the local daemon.

    Raises:
        SandboxStartError: the SDK is not installed or no daemon answers.
    """
    try:
        import docker
    except ImportError:
        raise SandboxStartError(
            f"the Docker backend needs the docker SDK: {_INSTALL_HINT}") from None
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        raise SandboxStartError(f"no Docker daemon could be reached ({exc}); start dockerd, "
                                "e.g. `bash scripts/ci_docker.sh`") from None
    return client


def docker_unavailable(image: str = DEFAULT_IMAGE) -> str | None:
    """Why the Docker backend cannot run here, or None when it can."""
    try:
        client = docker_client()
    except SandboxStartError as exc:
        return str(exc)
    try:
        client.images.get(image)
    except Exception:
        return f"the sandbox image {image!r} is missing: build it with `bash docker/build_image.sh`"
    return None


class _Container:
    """One running container and the client of the zygote inside it."""

    def __init__(self, container: Any, socket_dir: str, zygote: ZygoteClient) -> None:
        self.container = container
        self.socket_dir = socket_dir
        self.zygote = zygote

    def remove(self) -> None:
        self.zygote.close()
        try:
            self.container.remove(force=True)
        except Exception:  # already gone (auto-remove) or the daemon stopped
            pass
        shutil.rmtree(self.socket_dir, ignore_errors=True)


class ContainerPool:
    """Warm containers for one image and one set of limits; shared by every `DockerSandbox`."""

    def __init__(self, image: str, config: SandboxConfig, max_idle: int = 8) -> None:
        self.image = image
        self.config = config
        self.max_idle = max_idle
        self._idle: list[_Container] = []
        self._busy: dict[int, _Container] = {}
        self._lock = threading.Lock()

    def take(self) -> ZygoteClient:
        """A zygote in a warm container (a new container when none is idle)."""
        with self._lock:
            while self._idle:
                box = self._idle.pop()
                if box.zygote.alive:
                    self._busy[id(box.zygote)] = box
                    return box.zygote
                box.remove()
        box = self._start()
        with self._lock:
            self._busy[id(box.zygote)] = box
        return box.zygote

    def give(self, zygote: ZygoteClient) -> None:
        """Return a container after its episode ended."""
        with self._lock:
            box = self._busy.pop(id(zygote), None)
            if box is not None and zygote.alive and len(self._idle) < self.max_idle:
                self._idle.append(box)
                return
        if box is not None:
            box.remove()

    def prewarm(self, count: int) -> None:
        """Start containers until `count` are idle."""
        while len(self._idle) < count:
            box = self._start()
            with self._lock:
                self._idle.append(box)

    def shutdown(self) -> None:
        """Remove every container of this pool."""
        with self._lock:
            boxes, self._idle = self._idle + list(self._busy.values()), []
            self._busy.clear()
        for box in boxes:
            box.remove()

    def _start(self) -> _Container:
        client = docker_client()
        socket_dir = tempfile.mkdtemp(prefix="pyvision-docker-")
        code_dir = _stage_code(socket_dir)
        os.mkdir(os.path.join(socket_dir, "run"))
        config = self.config
        try:
            container = client.containers.run(
                self.image,
                ["python3", "-c", BOOTSTRAP, _CODE_DIR, "--listen",
                 f"{_SOCKET_DIR}/{_SOCKET_NAME}", "--tmp", "/tmp", "--uid-base", str(_uid_base())],
                detach=True, auto_remove=True, network_mode="none", read_only=True,
                tmpfs={"/tmp": "size=1g,mode=1777", "/var/tmp": "size=16m,mode=1777",
                       "/dev/shm": "size=64m,mode=1777"},
                mem_limit=config.memory_bytes + 256 * 1024 * 1024, memswap_limit=-1,
                pids_limit=config.max_processes + 16, cap_drop=["ALL"], cap_add=_CAPABILITIES,
                security_opt=["no-new-privileges"], environment=ZYGOTE_ENV_SET,
                labels={"pyvision-sandbox": "1", HOST_LABEL: str(os.getpid())}, working_dir="/",
                volumes={code_dir: {"bind": _CODE_DIR, "mode": "ro"},
                         os.path.join(socket_dir, "run"): {"bind": _SOCKET_DIR, "mode": "rw"}})
        except Exception as exc:
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise SandboxStartError(f"could not start a sandbox container from {self.image!r}: "
                                    f"{exc}") from None
        try:
            zygote = self._connect(os.path.join(socket_dir, "run", _SOCKET_NAME), container)
        except BaseException:
            _Container(container, socket_dir, _Closed()).remove()  # type: ignore[arg-type]
            raise
        return _Container(container, socket_dir, zygote)

    def _connect(self, path: str, container: Any) -> ZygoteClient:
        deadline = time.monotonic() + self.config.start_timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                try:
                    sock.connect(path)
                except OSError:
                    sock.close()
                else:
                    return ZygoteClient(sock, max(1.0, deadline - time.monotonic()))
            time.sleep(0.02)
        try:
            logs = container.logs(tail=5).decode(errors="replace")
        except Exception:
            logs = "(no logs)"
        raise SandboxStartError(f"the zygote in the sandbox container did not come up within "
                                f"{self.config.start_timeout:g} s; container log: {logs}")


def _stage_code(directory: str) -> str:
    """Copy the zygote's modules into `directory`/code, readable by root only.

    The zygote (root in the container) imports them before any worker exists; a worker, with a
    uid of its own, cannot read them, and the project's other code (task generators, graders) is
    not in the container at all.
    """
    code_dir = os.path.join(directory, "code")
    for relative in _CODE_FILES:
        source = os.path.join(PACKAGE_ROOT, relative)
        target = os.path.join(code_dir, relative)
        if os.path.isdir(source):
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(source, target)
    os.chmod(code_dir, stat.S_IRWXU)
    return code_dir


def _uid_base() -> int:
    """Worker uids for a new container: a random block, so containers never share a uid."""
    return 10_000_000 + random.randrange(20_000) * 100_000


class _Closed:
    """Stands in for a zygote client that never connected."""

    def close(self) -> None:
        pass


_pools: dict[tuple[str, SandboxConfig], ContainerPool] = {}
_pools_lock = threading.Lock()


def container_pool(image: str, config: SandboxConfig) -> ContainerPool:
    """The process-wide pool for this image and these limits."""
    with _pools_lock:
        if not _pools:
            atexit.register(shutdown_pools)
        key = (image, config)
        if key not in _pools:
            _pools[key] = ContainerPool(image, config)
        return _pools[key]


def shutdown_pools() -> None:
    """Remove every sandbox container this process started."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown()


class DockerSandbox(ForkedSandbox):
    """Runs cells in a confined worker inside a warm Docker container.

    Args:
        config: the limits (the container's memory and pids limits follow them).
        image: the sandbox image (see docker/build_image.sh).

    Each container runs one zygote (started with `zygote.BOOTSTRAP` from this package's source,
    bind-mounted read-only, so the image holds no project code) and serves one episode at a time.
    The host talks to it over a Unix socket in a bind-mounted directory, so episodes start and cells
    run exactly as with `LocalSandbox` (file descriptors pass into the container), with no Docker
    API call on the reset or step path. Containers are returned to a process-wide pool when an
    episode ends and reused; the pool removes them when the host process exits.

    What the container adds: no network at all (`network_mode="none"`), a read-only root with
    size-capped tmpfs scratch space, a memory cgroup limit, a pids limit, every capability dropped
    but the few the zygote needs to set up workers, and no-new-privileges. Build the image with
    `bash docker/build_image.sh` (offline; see docs/sandbox.md).
    """

    def __init__(self, config: SandboxConfig | None = None, image: str = DEFAULT_IMAGE) -> None:
        super().__init__(config)
        self.image = image
        # network_mode="none"; the container's root is the view (the image and the zygote's code)
        self.granted_isolation = ("network", "filesystem")

    def _acquire_zygote(self) -> ZygoteClient:
        return container_pool(self.image, self.config).take()

    def _release_zygote(self, zygote: ZygoteClient) -> None:
        container_pool(self.image, self.config).give(zygote)

    def _video_payload(self) -> tuple[list[str], list[str], list[bytes]]:
        """Videos are sent by value: host paths mean nothing inside the container."""
        blobs = []
        for path in self._videos:
            try:
                with open(path, "rb") as file:
                    blobs.append(file.read())
            except OSError as exc:
                raise SandboxStartError(f"the sandbox worker could not load the episode's media: "
                                        f"cannot read video {path!r}: {exc}") from None
        return [], [f"video_{index}{os.path.splitext(path)[1]}" for index, path in
                    enumerate(self._videos)], blobs


__all__ = ["ContainerPool", "DEFAULT_IMAGE", "DockerSandbox", "container_pool",
           "docker_unavailable", "shutdown_pools"]
