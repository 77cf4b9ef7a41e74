"""Build artefacts the deploy tier shares, cached outside the checkout.

* Debian bookworm root filesystems (``debootstrap``): one with systemd and Python, booted
  with ``systemd-nspawn``; a slim one with Python and pip only which, imported with
  ``docker import``, is the base image of the Dockerfile (as ``python:3.11-slim`` would be).
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
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("RECEIPTD_DEPLOY_CACHE", "/var/cache/receiptd-deploy"))
SUITE = "bookworm"
MIRROR = os.environ.get("RECEIPTD_DEPLOY_MIRROR", "http://deb.debian.org/debian")
# The image's base: Python and pip (the Dockerfile runs `pip wheel` and `pip install`);
# ca-certificates is replaced by the host's bundle (the package index is reached through a
# proxy whose CA only the host trusts).
IMAGE_PACKAGES = ("python3", "python3-pip", "ca-certificates")
# The booted machine's: systemd-sysv provides /sbin/init for `systemd-nspawn -b`. No dbus:
# systemctl and systemd-run reach PID 1 over its private socket as root.
PACKAGES = ("systemd", "systemd-sysv", *IMAGE_PACKAGES)
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


def run(argv: list[str], timeout: float = 900, **kwargs: Any) -> str:
    """Run a build step; on failure raise with the tail of its output (quiet when it works)."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-4000:]
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}:\n{output}")
    return proc.stdout


def _unmount_below(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4] for line in mountinfo if line.split()[4].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "--lazy", point], check=False)


def _build_rootfs(tmp: Path, packages: tuple[str, ...]) -> None:
    try:
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(packages)}",
                SUITE,
                str(tmp),
                MIRROR,
            ]
        )
    finally:
        _unmount_below(tmp)  # a killed debootstrap leaves proc/sys mounted in the target
    for rel in PRUNE:
        shutil.rmtree(tmp / rel, ignore_errors=True)
    (tmp / "var/cache/apt").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp / "var/lib/apt/lists", ignore_errors=True)
    # Like the official python images, pip installs into /usr/local as root (PEP 668's marker
    # would refuse; this root filesystem has no Debian-managed Python packages to protect).
    for marker in (tmp / "usr/lib").glob("python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    shutil.copyfile(HOST_CA_BUNDLE, tmp / "etc/ssl/certs/ca-certificates.crt")
    tmp.chmod(0o755)  # mkdtemp made it 0700: "/" must be searchable for non-root users


def rootfs(packages: tuple[str, ...] = PACKAGES) -> Path:
    """The cached root filesystem with ``packages`` (read-only by convention: copy it before
    booting)."""
    host_ca = hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest()[:8]
    key = _digest(packages, PRUNE, MIRROR, host_ca)
    return cached(f"rootfs-{SUITE}-{key}", lambda tmp: _build_rootfs(tmp, packages))


def _dependencies() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return sorted([*project["dependencies"], *project["optional-dependencies"]["huawei"]])


def dependency_wheels() -> Path:
    """Wheels of every runtime dependency (with the huawei extra), for an offline install."""
    deps = _dependencies()

    def build(tmp: Path) -> None:
        run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(tmp), *deps])

    return cached(f"wheels-py{sys.version_info[0]}{sys.version_info[1]}-{_digest(deps)}", build)


def source_copy(directory: Path) -> Path:
    """The checkout's files as git sees them (tracked and untracked, not ignored, uncommitted
    edits included) copied to ``directory/receiptd-src``, to build from.

    A build never runs in the checkout itself: setuptools' sdist assembles its tree in
    ``./receiptd-<version>`` and removes it afterwards, so two builds in one directory (a
    developer's or another session's beside the suite's) delete each other's files mid-way —
    "No such file or directory: 'receiptd-0.1.0/receiptd/db/prune.py'", reproduced with three
    concurrent ``python -m build --sdist`` in one clone. A copy has no neighbour.
    """
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout
    target = directory / "receiptd-src"
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the work tree is not shipped
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def receiptd_wheel(directory: Path) -> Path:
    """A wheel of the checkout (never cached: it is what the tests are about), built from a
    copy of it (:func:`source_copy`)."""
    source = source_copy(directory)
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
            str(source),
        ],
        check=True,
    )
    shutil.rmtree(source)
    (wheel,) = directory.glob("receiptd-*.whl")
    return wheel
