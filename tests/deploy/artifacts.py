"""Build artefacts the deploy tier shares, cached outside the checkout.

* A Debian bookworm root filesystem (``debootstrap``) with systemd and Python: booted with
  ``systemd-nspawn`` and, imported with ``docker import``, the base image of the Dockerfile.
* receiptd's dependency wheels (keyed by the dependency list) and a wheel of the checkout.

The cache lives under ``RECEIPTD_DEPLOY_CACHE`` (default ``/var/cache/receiptd-deploy``), so a
fresh clone on the same machine (CI) reuses it. Every entry is built in a temporary directory
next to it and renamed into place, so a killed build never leaves a half entry; a lock file
serialises concurrent sessions.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("RECEIPTD_DEPLOY_CACHE", "/var/cache/receiptd-deploy"))
SUITE = "bookworm"
MIRROR = os.environ.get("RECEIPTD_DEPLOY_MIRROR", "http://deb.debian.org/debian")
# systemd-sysv provides /sbin/init for `systemd-nspawn -b`; python3-pip is the base image's
# pip (the Dockerfile runs `pip wheel` and `pip install`); ca-certificates is replaced by the
# host's bundle (the package index is reached through a proxy whose CA only the host trusts).
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-pip", "ca-certificates")
# Not needed at run time; dropped to keep the image small.
PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _digest(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def cached(name: str, build: Callable[[Path], None]) -> Path:
    """CACHE/name, built by ``build(tmpdir)`` then renamed into place if missing."""
    target = CACHE / name
    with _locked():
        if target.exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=CACHE))
        try:
            build(tmp)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _build_rootfs(tmp: Path) -> None:
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(tmp),
            MIRROR,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    for rel in PRUNE:
        shutil.rmtree(tmp / rel, ignore_errors=True)
    (tmp / rel).mkdir(parents=True, exist_ok=True)  # apt expects var/cache/apt
    shutil.rmtree(tmp / "var/lib/apt/lists", ignore_errors=True)
    # Like the official python images, pip installs into /usr/local as root (PEP 668's marker
    # would refuse; this root filesystem has no Debian-managed Python packages to protect).
    for marker in (tmp / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    shutil.copyfile(HOST_CA_BUNDLE, tmp / "etc/ssl/certs/ca-certificates.crt")


def rootfs() -> Path:
    """The cached root filesystem (read-only by convention: copy it before booting)."""
    host_ca = hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest()[:8]
    return cached(f"rootfs-{SUITE}-{_digest(PACKAGES, PRUNE, MIRROR, host_ca)}", _build_rootfs)


def _dependencies() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return sorted([*project["dependencies"], *project["optional-dependencies"]["huawei"]])


def dependency_wheels() -> Path:
    """Wheels of every runtime dependency (with the huawei extra), for an offline install."""
    deps = _dependencies()

    def build(tmp: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(tmp), *deps],
            check=True,
        )

    return cached(f"wheels-py{sys.version_info[0]}{sys.version_info[1]}-{_digest(deps)}", build)


def receiptd_wheel(directory: Path) -> Path:
    """A wheel of the checkout (never cached: it is what the tests are about)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(directory),
            str(REPO),
        ],
        check=True,
    )
    (wheel,) = directory.glob("receiptd-*.whl")
    return wheel
