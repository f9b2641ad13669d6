"""The offline agent bundle: this project's wheel plus the lean agent's dependency wheels for each
router platform. Routers usually cannot reach a package index, and many are ARM (some with musl), so
the wheels are fetched here, once, for the platforms asked for."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

PACKAGE = "mssp-gateway"
BUNDLE_FILE = "bundle.json"
# Platform names an operator gives, and the wheel tags each stands for (newest glibc/musl last).
PLATFORMS: dict[str, tuple[str, ...]] = {
    "manylinux_x86_64": ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64",
                         "manylinux_2_34_x86_64"),
    "manylinux_aarch64": ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64",
                          "manylinux_2_34_aarch64"),
    "musllinux_x86_64": ("musllinux_1_1_x86_64", "musllinux_1_2_x86_64"),
    "musllinux_aarch64": ("musllinux_1_1_aarch64", "musllinux_1_2_aarch64"),
}
PIP_TIMEOUT = 900.0


class BundleError(Exception):
    """The bundle cannot be built as asked; nothing is left in the output directory."""


@dataclass(frozen=True)
class Bundle:
    directory: Path
    version: str
    python: str
    platforms: tuple[str, ...]
    files: tuple[str, ...]

    def manifest(self) -> dict[str, object]:
        return {"package": PACKAGE, "version": self.version, "python": self.python,
                "platforms": list(self.platforms), "files": list(self.files)}


def agent_requirements() -> list[str]:
    """The lean agent's dependencies: the base requirements, never an extra's (web, DB, Ansible)."""
    try:
        requires = metadata.requires(PACKAGE) or []
    except metadata.PackageNotFoundError as exc:
        raise BundleError(f"{PACKAGE} is not installed: install it (pip install -e .) to build a "
                          "bundle") from exc
    return [r for r in requires if "extra ==" not in r.replace('"', "'").replace("extra==", "extra ==")]


def default_source() -> Path:
    return Path(__file__).resolve().parents[2]


def check_python(python: str) -> str:
    if not re.fullmatch(r"3\.(1[1-9]|[2-9]\d)", python):
        raise BundleError(f"--python {python!r}: give a CPython version such as 3.11 (3.11 or newer)")
    return python


def check_platforms(platforms: list[str]) -> tuple[str, ...]:
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown:
        raise BundleError(f"unknown platform {unknown[0]!r}; choose from: {', '.join(PLATFORMS)}")
    return tuple(dict.fromkeys(platforms)) or ("manylinux_x86_64",)


def load(directory: Path) -> Bundle:
    """A bundle made by `build`: its manifest checked against the files it names."""
    path = directory / BUNDLE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{directory} is not an agent bundle (no {BUNDLE_FILE}): build one with "
                          "`msspctl agent bundle --out DIR`") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    if (not isinstance(data, dict) or data.get("package") != PACKAGE
            or not isinstance(data.get("files"), list)):
        raise BundleError(f"{path} is not an agent bundle manifest")
    missing = [f for f in data["files"] if not (directory / str(f)).is_file()]
    if missing:
        raise BundleError(f"bundle {directory} is incomplete: {missing[0]} is missing")
    return Bundle(directory.resolve(), str(data["version"]), str(data["python"]),
                  tuple(data.get("platforms", ())), tuple(str(f) for f in data["files"]))


def _pip(args: list[str]) -> None:
    try:
        done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                              capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise BundleError(f"pip {args[0]} took longer than {PIP_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if line.strip() and "is ignored" not in line][-3:]
        raise BundleError(f"pip {args[0]} failed: " + " | ".join(tail))


def _pure_wheels(work: Path, requirements: list[str]) -> None:
    """Wheels for dependencies published only as source (nkeys): pure Python, so a wheel built here
    fits every router. Platform wheels built along the way are dropped: they are fetched per platform."""
    scratch = work / ".local"
    _pip(["wheel", "--quiet", "-w", str(scratch), *requirements])
    for wheel in scratch.glob("*.whl"):
        if wheel.name.endswith("-none-any.whl"):
            wheel.rename(work / wheel.name)
    shutil.rmtree(scratch)


def build(out: Path, *, python: str = "3.11", platforms: list[str] | None = None,
          source: Path | None = None) -> Bundle:
    """Build the bundle into `out` (made; must be empty or absent). Built in a temporary directory
    beside it and moved into place, so a failed build leaves nothing half made."""
    python = check_python(python)
    chosen = check_platforms(platforms or [])
    source = (source or default_source()).resolve()
    if not (source / "pyproject.toml").is_file():
        raise BundleError(f"{source} is not the project's source tree (no pyproject.toml): give --source DIR")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BundleError(f"--out {out} exists and is not an empty directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    try:
        _pip(["wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(work), str(source)])
        wheels = list(work.glob("mssp_gateway-*.whl"))
        if len(wheels) != 1:
            raise BundleError(f"building the agent wheel from {source} gave {len(wheels)} wheels")
        version = wheels[0].name.split("-")[1]
        _pure_wheels(work, agent_requirements())
        for platform in chosen:
            tags = [arg for tag in PLATFORMS[platform] for arg in ("--platform", tag)]
            _pip(["download", "--quiet", "--only-binary=:all:", "--python-version", python,
                  "--implementation", "cp", *tags, "--find-links", str(work), "-d", str(work),
                  *agent_requirements()])
        files = tuple(sorted(p.name for p in work.iterdir() if p.suffix == ".whl"))
        bundle = Bundle(out.resolve(), version, python, chosen, files)
        (work / BUNDLE_FILE).write_text(json.dumps(bundle.manifest(), indent=2) + "\n")
        if out.exists():
            out.rmdir()
        work.rename(out)
        return bundle
    finally:
        shutil.rmtree(work, ignore_errors=True)
