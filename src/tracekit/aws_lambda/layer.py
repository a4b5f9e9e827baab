"""``tracekit layer build``: a Lambda layer zip with tracekit, its runtime dependencies and the wrapper.

Layout (unpacked under /opt): ``python/`` (on the runtime's ``sys.path``) and the exec wrapper
``tracekit-instrument``. Dependencies are resolved for the target runtime (``--python-version``,
manylinux2014 wheels for the architecture). boto3/botocore and what only they need are left out:
the Python runtime ships them. Tests, caches and console scripts are stripped, and bytecode is
precompiled (unchecked-hash ``.pyc``: /opt is read-only, so Lambda could not cache it itself).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tracekit._shared.settings import DISTRIBUTION, VERSION

PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
ARCHITECTURES = {
    "x86_64": ("x86_64-manylinux2014", "manylinux2014_x86_64"),
    "arm64": ("aarch64-manylinux2014", "manylinux2014_aarch64"),
}
"""Lambda architecture -> (uv ``--python-platform``, pip ``--platform``)."""
EXCLUDED = ("boto3", "botocore", "s3transfer", "jmespath")
"""Provided by the Lambda Python runtime; nothing tracekit imports on the Lambda path needs them."""
LAYER_EXTRAS = ("instrument-aws",)
"""Extras the layer carries: its exec wrapper traces AWS SDK calls by default (the botocore
instrumentation; botocore itself comes with the runtime)."""
SLIM_OMITS = ("opentelemetry-exporter-otlp", "prometheus-client")
"""Left out of ``--slim`` layers: OTLP export and Prometheus serving, rarely wanted in a function."""
_STRIP_DIRS = ("__pycache__", "tests", "test")
_STRIP_SUFFIXES = (".pyc", ".pyi")
"""Stale bytecode and type stubs (no use at run time)."""
_STRIP_FILES = (".lock",)
"""The installer's lock file."""
WRAPPER_NAME = "tracekit-instrument"
WRAPPER_SCRIPT = """#!/bin/sh
# tracekit zero-code instrumentation for AWS Lambda.
# Set AWS_LAMBDA_EXEC_WRAPPER=/opt/tracekit-instrument on a function that has the tracekit layer:
# the configured handler is kept in TRACEKIT_ORIGINAL_HANDLER and tracekit's entry point, which
# imports and instruments it, takes its place (in _HANDLER and on the command line).
entry=tracekit.aws_lambda.entry.handler
if [ -n "${_HANDLER:-}" ] && [ "$_HANDLER" != "$entry" ]; then
  export TRACEKIT_ORIGINAL_HANDLER="$_HANDLER"
  for arg do
    shift
    if [ "$arg" = "$TRACEKIT_ORIGINAL_HANDLER" ]; then arg=$entry; fi
    set -- "$@" "$arg"
  done
  export _HANDLER="$entry"
fi
exec "$@"
"""


@dataclass(frozen=True)
class Layer:
    """A built layer: where it is, its sizes, and whether bytecode is inside."""

    path: Path
    zip_bytes: int
    unzipped_bytes: int
    files: int
    bytecode: bool
    note: str = ""


def build(
    python: str = "3.11", arch: str = "x86_64", output: Path | None = None, *, slim: bool = False
) -> Layer:
    """Build the tracekit layer zip for Lambda's ``python`` runtime on ``arch``.

    ``slim`` leaves out the OTLP exporter and the Prometheus client with everything only they need
    (protobuf, requests...): X-Ray, EMF and logs only, for functions that do not export OTLP.
    """
    output = output or Path(f"tracekit-layer-python{python}-{arch}{'-slim' if slim else ''}.zip")
    requirements = [r for r in runtime_requirements() if not (slim and r.startswith(SLIM_OMITS))]
    return package(requirements, python, arch, output, with_tracekit=True)


def package(
    requirements: list[str], python: str, arch: str, output: Path, *, with_tracekit: bool = False
) -> Layer:
    """Any requirements as a layer built the same way (the benchmark sizes other tools' layers so)."""
    if python not in PYTHON_VERSIONS:
        raise ValueError(f"--python {python!r} is not supported: expected {', '.join(PYTHON_VERSIONS)}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"--arch {arch!r} is not supported: expected {', '.join(ARCHITECTURES)}")
    with tempfile.TemporaryDirectory(prefix="tracekit-layer-") as tmp:
        root = Path(tmp)
        site = root / "python"
        _install(site, requirements, python, arch)
        if with_tracekit:
            _copy_tracekit(site)
            (root / WRAPPER_NAME).write_text(WRAPPER_SCRIPT)
        _remove_distributions(site, EXCLUDED)
        _strip(site)
        bytecode, note = _compile(site, python)
        files, unzipped = _zip(root, output)
    return Layer(output, output.stat().st_size, unzipped, files, bytecode, note)


def runtime_requirements() -> list[str]:
    """tracekit's own dependencies and those of ``LAYER_EXTRAS``, as installed."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        found = requires(DISTRIBUTION) or []
    except PackageNotFoundError as exc:
        raise RuntimeError(f"{DISTRIBUTION} is not installed: build from an environment that has it") from exc
    wanted = tuple(f'extra == "{extra}"' for extra in LAYER_EXTRAS)
    return [req.split(";")[0].strip() for req in found if "extra ==" not in req or req.endswith(wanted)]


def _install(site: Path, requirements: list[str], python: str, arch: str) -> None:
    uv = shutil.which("uv") or _beside_interpreter("uv")
    uv_platform, pip_platform = ARCHITECTURES[arch]
    target = ["--target", str(site), "--python-version", python]
    if uv:
        cmd = [uv, "pip", "install", "-q", *target, "--python-platform", uv_platform]
    else:
        cmd = [sys.executable, "-m", "pip", "install", "-q", *target, "--platform", pip_platform]
        cmd += ["--implementation", "cp"]
    cmd += ["--only-binary", ":all:", *requirements]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"installing {' '.join(requirements)} failed:\n{result.stderr.strip()}")


def _beside_interpreter(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


TOOLS = ("sidecar", "dashboards")
"""Packages of tracekit's command-line tools: nothing a function imports needs them."""


def _not_for_lambda(directory: str, names: list[str]) -> set[str]:
    """``copytree``'s ignore: caches, and the tools' packages at the top of the tree."""
    top = Path(directory).name == "tracekit"
    return {n for n in names if n == "__pycache__" or n.endswith(".pyc") or (top and n in TOOLS)}


def _copy_tracekit(site: Path) -> None:
    import tracekit

    source = Path(tracekit.__file__).parent
    shutil.copytree(source, site / "tracekit", ignore=_not_for_lambda)
    info = site / f"{DISTRIBUTION.replace('-', '_')}-{VERSION}.dist-info"
    info.mkdir()
    metadata = f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {VERSION}\n"
    (info / "METADATA").write_text(metadata)


def _remove_distributions(site: Path, names: tuple[str, ...]) -> None:
    """Delete installed distributions by their RECORD (what pip/uv wrote for them)."""
    wanted = {name.lower().replace("-", "_") for name in names}
    for info in site.glob("*.dist-info"):
        name = info.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("-", "_")
        if name not in wanted:
            continue
        record = info / "RECORD"
        for line in record.read_text().splitlines() if record.exists() else ():
            path = site / line.split(",")[0]
            if path.is_file():
                path.unlink()
        shutil.rmtree(info, ignore_errors=True)
    for name in wanted:
        shutil.rmtree(site / name, ignore_errors=True)


def _strip(site: Path) -> None:
    """Remove caches, test suites, console scripts, stubs and stale bytecode."""
    shutil.rmtree(site / "bin", ignore_errors=True)
    for path in sorted(site.rglob("*"), reverse=True):
        if path.is_dir() and path.name in _STRIP_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif (path.suffix in _STRIP_SUFFIXES or path.name in _STRIP_FILES) and path.is_file():
            path.unlink()


def _compile(site: Path, python: str) -> tuple[bool, str]:
    """Precompile with an interpreter of the target version; bytecode of another version is useless."""
    interpreter = _interpreter(python)
    if interpreter is None:
        return False, (
            f"no Python {python} interpreter on this machine (PATH, pyenv): bytecode not precompiled "
            f"(Lambda then compiles on every cold start; build where python{python} exists)"
        )
    cmd = [interpreter, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    # File names inside the bytecode are where Lambda unpacks the layer, not this build's temporary
    # directory: the same layer twice is the same zip.
    cmd += ["-s", str(site), "-p", "/opt/python"]
    result = subprocess.run([*cmd, str(site)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return False, f"compileall failed: {(result.stdout + result.stderr).strip()[-500:]}"
    return True, ""


def _interpreter(python: str) -> str | None:
    """This interpreter, ``pythonX.Y`` on PATH, or a pyenv installation, whichever really is X.Y."""
    if python == f"{sys.version_info.major}.{sys.version_info.minor}":
        return sys.executable
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    installed = sorted(pyenv.glob(f"{python}.*/bin/python{python}"))
    candidates = [shutil.which(f"python{python}"), *map(str, installed)]
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip() == python:
            return candidate
    return None


def _zip(root: Path, output: Path) -> tuple[int, int]:
    """Zip ``root`` deterministically (sorted, fixed timestamps), keeping the wrapper executable."""
    files = unzipped = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if name == WRAPPER_NAME else 0o644
            info.external_attr = (0o100000 | mode) << 16
            data = path.read_bytes()
            archive.writestr(info, data)
            files += 1
            unzipped += len(data)
    return files, unzipped


# -- command line ----------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``tracekit layer build``."""
    layer = subparsers.add_parser("layer", help="AWS Lambda layer tools", description="Lambda layer tools.")
    commands = layer.add_subparsers(dest="layer_command", metavar="COMMAND", required=True)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    build_cmd = commands.add_parser(
        "build",
        help="build the tracekit Lambda layer zip",
        description=(
            "Build a Lambda layer zip: python/ with tracekit and its runtime dependencies (without "
            "boto3/botocore, which the runtime has), precompiled bytecode, and the exec wrapper "
            "/opt/tracekit-instrument (set AWS_LAMBDA_EXEC_WRAPPER to it to trace without code changes)."
        ),
    )
    build_cmd.add_argument(
        "--python", choices=PYTHON_VERSIONS, default=running if running in PYTHON_VERSIONS else "3.11",
        help="the function's Python runtime version (default: this interpreter's)",
    )
    build_cmd.add_argument(
        "--arch", choices=tuple(ARCHITECTURES), default="x86_64", help="the function's architecture"
    )
    build_cmd.add_argument(
        "-o", "--output", type=Path, help="zip to write (default: tracekit-layer-pythonX.Y-ARCH.zip)"
    )
    build_cmd.add_argument(
        "--slim", action="store_true",
        help="leave out the OTLP exporter and Prometheus client (X-Ray, EMF and logs only; ~1/3 the size)",
    )
    build_cmd.set_defaults(handler=_build_command)


def _build_command(args: argparse.Namespace) -> int:
    try:
        layer = build(args.python, args.arch, args.output, slim=args.slim)
    except (RuntimeError, ValueError) as exc:
        print(f"tracekit layer build: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {layer.path} ({layer.files} files)")
    print(f"zip size:      {_mb(layer.zip_bytes)}")
    print(f"unzipped size: {_mb(layer.unzipped_bytes)}")
    print(f"bytecode:      {'precompiled for Python ' + args.python if layer.bytecode else 'not included'}")
    if layer.note:
        print(f"note: {layer.note}")
    return 0


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.2f} MB ({size:,} bytes)"


__all__ = ["EXCLUDED", "WRAPPER_SCRIPT", "Layer", "build", "package", "register", "runtime_requirements"]
