"""Images for `make compose-check`: the official ones when a registry answers, else locally built ones.

Local images (docs/adr/0009-container-deployment.md): a Debian root file system made with debootstrap from
the mirror the host's apt uses, imported as ``localhost/gardien-debian-minbase``; Debian's Python 3.11,
PostgreSQL 15 and Redis on top (``localhost/gardien-debian``); stand-ins for the official postgres, redis and
apache/airflow images (deploy/images). Then the project's Dockerfile on the chosen Airflow base. Every step
is cached: the root file system is made once, podman's layer cache does the rest (the dependency layer is
rebuilt only when requirements.lock changes).

The package index of the image builds comes from the builder's pip settings (environment, then
``pip config``): nothing about this site is written into the project.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

OFFICIAL = {
    "AIRFLOW_IMAGE": "docker.io/apache/airflow:3.3.2-python3.11",
    "POSTGRES_IMAGE": "docker.io/library/postgres:15",
    "REDIS_IMAGE": "docker.io/library/redis:7.2-bookworm",
}
MINBASE = "localhost/gardien-debian-minbase:bookworm"
RUNTIME = "localhost/gardien-debian:bookworm"
LOCAL = {
    "AIRFLOW_IMAGE": "localhost/gardien-airflow-base:3.3.2",
    "POSTGRES_IMAGE": "localhost/gardien-postgres:15",
    "REDIS_IMAGE": "localhost/gardien-redis:7",
}
GARDIEN_IMAGE = "localhost/gardien-airflow:latest"
SUITE = "bookworm"
BUILD_CA = "/run/gardien-build/ca.crt"  # where the builder's CA bundle is mounted during RUN steps


class ImageError(RuntimeError):
    """An image could not be obtained or built (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Limits:
    nofile: int
    nproc: int

    def podman_args(self) -> list[str]:
        return [
            "--ulimit",
            f"nofile={self.nofile}:{self.nofile}",
            "--ulimit",
            f"nproc={self.nproc}:{self.nproc}",
        ]


def host_limits(*, nofile: int = 16384, nproc: int = 8192) -> Limits:
    """Container limits no higher than this host's hard limits (higher ones make runc fail to start)."""

    def cap(kind: int, wanted: int) -> int:
        hard = resource.getrlimit(kind)[1]
        return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)

    return Limits(nofile=cap(resource.RLIMIT_NOFILE, nofile), nproc=cap(resource.RLIMIT_NPROC, nproc))


def _pip_config() -> dict[str, str]:
    """``pip config list`` as {key: value} (keys without their section), empty if pip is unavailable."""
    try:
        res = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, str] = {}
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1].strip()
        found.setdefault(name, value.strip().strip("'\""))
    return found


def pip_build_settings(environ: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(build arguments, notes) carrying the builder's package index into the image builds.

    Indexes on this machine's disk (file://) are not reachable from a build and are left out (said in the
    notes); a CA bundle (PIP_CERT / pip's ``cert``) is mounted read-only for the build's RUN steps only.
    """
    env = os.environ if environ is None else environ
    config = _pip_config()
    args: list[str] = []
    notes: list[str] = []
    for var, key in (
        ("PIP_INDEX_URL", "index-url"),
        ("PIP_EXTRA_INDEX_URL", "extra-index-url"),
        ("PIP_TRUSTED_HOST", "trusted-host"),
    ):
        value = env.get(var) or config.get(key, "")
        urls = value.split()
        kept = [u for u in urls if not u.startswith("file:")]
        if len(kept) < len(urls):
            notes.append(f"{var}: local (file:) indexes are not reachable from a build and are left out")
        if kept:
            args += ["--build-arg", f"{var}={' '.join(kept)}"]
    cert = env.get("PIP_CERT") or config.get("cert", "")
    if cert and Path(cert).is_file():
        args += ["--volume", f"{cert}:{BUILD_CA}:ro", "--build-arg", f"PIP_CERT={BUILD_CA}"]
        notes.append("the builder's CA bundle (PIP_CERT) is mounted for the build steps")
    return args, notes


def debian_mirror(sources: Sequence[Path] = ()) -> str | None:
    """The Debian mirror this host's apt uses (None: debootstrap's own default)."""
    files = list(sources) or [
        Path("/etc/apt/sources.list"),
        *sorted(Path("/etc/apt/sources.list.d").glob("*")),
    ]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "deb" and len(words) > 2 and SUITE in words[2:] and "security" not in line:
                return next(w for w in words[1:] if not w.startswith("["))
            if words[0] == "URIs:" and len(words) > 1 and "security" not in words[1]:
                suites = next((ln for ln in text.splitlines() if ln.startswith("Suites:")), "")
                if SUITE in suites.split():
                    return words[1]
    return None


def podman(
    *args: str, check: bool = True, capture: bool = True, timeout: float = 3600
) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(  # noqa: S603
            ["podman", *args], capture_output=capture, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        res = subprocess.CompletedProcess(["podman", *args], 124, "", f"timed out after {timeout:.0f} s")
    if check and res.returncode != 0:
        tail = (res.stderr or res.stdout or "")[-2500:] if capture else ""
        raise ImageError(f"podman {' '.join(args[:3])} ... failed (exit {res.returncode}):\n{tail}")
    return res


def exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def registry_answers(say: Callable[[str], None]) -> bool:
    """True when the official images are here or can be pulled (then they are used unchanged)."""
    missing = [img for img in OFFICIAL.values() if not exists(img)]
    for image in missing:
        res = podman("pull", "--quiet", image, check=False, timeout=1800)
        if res.returncode != 0:
            last = ((res.stderr or "").strip().splitlines() or ["?"])[-1]
            say(f"  {image}: not available ({last[:120]})")
            return False
    return True


def _debootstrap(root: Path, say: Callable[[str], None]) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageError(
            "debootstrap is not installed: apt-get install debootstrap (needed for local images)"
        )
    mirror = debian_mirror()
    root.mkdir(parents=True, exist_ok=True)  # a fresh clone has no .gardien/compose yet
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=root))
    try:
        say(f"  debootstrap --variant=minbase {SUITE} (mirror: {mirror or 'debootstrap default'})")
        cmd = ["debootstrap", "--variant=minbase", SUITE, str(work / "fs"), *([mirror] if mirror else [])]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)  # noqa: S603
        if res.returncode != 0:
            raise ImageError(
                f"debootstrap failed (exit {res.returncode}):\n{(res.stdout + res.stderr)[-2000:]}"
            )
        tar = subprocess.Popen(["tar", "-C", str(work / "fs"), "-c", "."], stdout=subprocess.PIPE)  # noqa: S607
        imp = subprocess.run(  # noqa: S603
            ["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", MINBASE],  # noqa: S607
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            check=False,
        )
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise ImageError(f"podman import of the root file system failed:\n{imp.stderr[-1500:]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build(
    tag: str, context: Path, containerfile: Path, extra: Sequence[str], say: Callable[[str], None]
) -> None:
    started = time.monotonic()
    podman(
        "build", "--network", "host", "-f", str(containerfile), "-t", tag, *extra, str(context), timeout=3600
    )
    say(f"  {tag:<44} built in {time.monotonic() - started:5.0f} s (unchanged layers reused)")


def ensure_images(root: Path, state: Path, *, limits: Limits, say: Callable[[str], None]) -> dict[str, str]:
    """Obtain every image; return the compose variables naming them (AIRFLOW_IMAGE, ..., GARDIEN_IMAGE)."""
    pip_args, notes = pip_build_settings()
    for note in notes:
        say(f"  package index: {note}")
    common = ["--ulimit", f"nofile={limits.nofile}:{limits.nofile}"]
    if os.environ.get("GARDIEN_LOCAL_IMAGES") != "1" and registry_answers(say):
        say("  official images available: using them unchanged")
        images = dict(OFFICIAL)
    else:
        say("  no public registry: building local images from Debian's packages")
        here = root / "deploy" / "images"
        if not exists(MINBASE):
            _debootstrap(state, say)
        build(RUNTIME, here, here / "runtime.Containerfile", common, say)
        for var, name in (
            ("POSTGRES_IMAGE", "postgres"),
            ("REDIS_IMAGE", "redis"),
            ("AIRFLOW_IMAGE", "airflow-base"),
        ):
            build(LOCAL[var], here, here / f"{name}.Containerfile", [*common, *pip_args], say)
        images = dict(LOCAL)
    build(
        GARDIEN_IMAGE,
        root,
        root / "Dockerfile",
        [*common, *pip_args, "--build-arg", f"AIRFLOW_BASE_IMAGE={images['AIRFLOW_IMAGE']}"],
        say,
    )
    return {**images, "GARDIEN_IMAGE": GARDIEN_IMAGE}
