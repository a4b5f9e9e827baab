"""``tracekit layer build``: contents, exclusions, bytecode, the wrapper, and the command line."""

from __future__ import annotations

import marshal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tracekit.aws_lambda import layer


def test_layer_has_tracekit_and_its_dependencies_without_the_aws_sdk(layer_zip: Path) -> None:
    names = zipfile.ZipFile(layer_zip).namelist()
    tops = {name.split("/")[1] for name in names if name.startswith("python/")}
    assert {"tracekit", "opentelemetry", "structlog"} <= tops
    assert not tops & {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "bin"}
    assert "tracekit_aws-0.1.0.dist-info" in tops and "opentelemetry_api-" in " ".join(tops)
    assert not [n for n in names if "/tests/" in n or "/test/" in n or n.endswith((".pyi", ".lock"))]


def test_layer_bytecode_is_precompiled_unchecked(layer_zip: Path) -> None:
    archive = zipfile.ZipFile(layer_zip)
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    pyc = archive.read(f"python/tracekit/aws_lambda/__pycache__/handler.{tag}.pyc")
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, never checked: /opt is read-only
    # named where Lambda unpacks it, not after the build's temporary directory: builds are repeatable
    assert marshal.loads(pyc[16:]).co_filename == "/opt/python/tracekit/aws_lambda/handler.py"
    sources = [n for n in archive.namelist() if n.endswith(".py")]
    compiled = {n for n in archive.namelist() if n.endswith(".pyc")}
    missing = [s for s in sources if _pyc_name(s, tag) not in compiled]
    assert not missing, missing[:5]


def _pyc_name(source: str, tag: str) -> str:
    folder, _, name = source.rpartition("/")
    return f"{folder}/__pycache__/{name[:-3]}.{tag}.pyc"


def test_wrapper_is_executable_at_the_layer_root(layer_zip: Path) -> None:
    info = zipfile.ZipFile(layer_zip).getinfo(layer.WRAPPER_NAME)
    assert (info.external_attr >> 16) & 0o777 == 0o755


def test_runtime_requirements_leave_out_extras() -> None:
    requirements = layer.runtime_requirements()
    assert any(r.startswith("opentelemetry-sdk") for r in requirements)
    assert not any(r.startswith(("boto3", "flask", "pytest")) for r in requirements)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tracekit.cli", "layer", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_builds_a_slim_layer_for_another_python_and_arch(tmp_path: Path) -> None:
    """One build checks --python, --arch and --slim (each build compiles ~300 files)."""
    out = tmp_path / "layer-312-arm.zip"
    done = _cli("build", "--python", "3.12", "--arch", "arm64", "--slim", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "zip size:" in done.stdout and "unzipped size:" in done.stdout
    names = zipfile.ZipFile(out).namelist()
    tops = {name.split("/")[1] for name in names if name.startswith("python/")}
    assert {"tracekit", "opentelemetry", "structlog"} <= tops
    assert not tops & {"google", "requests", "urllib3", "prometheus_client", "certifi"}
    assert out.stat().st_size < 3_000_000
    if layer._interpreter("3.12"):
        assert "bytecode:      precompiled for Python 3.12" in done.stdout
        assert any(n.endswith(".cpython-312.pyc") for n in names)
        assert not any(n.endswith(".cpython-311.pyc") for n in names)
    else:  # no 3.12 here to compile with: said, not faked
        assert "note: no Python 3.12 interpreter" in done.stdout
        assert not any(n.endswith(".pyc") for n in names)


def test_arm64_layers_get_aarch64_wheels(tmp_path: Path) -> None:
    """The default layer's only compiled wheel (charset-normalizer, for requests) is per arch;
    installing without compiling shows the platform was passed to the installer."""
    site = tmp_path / "python"
    layer._install(site, ["charset-normalizer"], "3.12", "arm64")
    binaries = [path.name for path in site.rglob("*.so")]
    assert binaries and all("aarch64" in name for name in binaries)


@pytest.mark.parametrize(("args", "message"), [
    (("build", "--arch", "sparc"), "invalid choice: 'sparc'"),
    (("build", "--python", "2.7"), "invalid choice: '2.7'"),
])
def test_cli_rejects_bad_arguments(args: tuple[str, ...], message: str) -> None:
    done = _cli(*args)
    assert done.returncode == 2 and message in done.stderr


def test_help_explains_the_command() -> None:
    done = _cli("build", "--help")
    assert done.returncode == 0 and "AWS_LAMBDA_EXEC_WRAPPER" in done.stdout


def test_without_a_matching_interpreter_bytecode_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layer, "_interpreter", lambda python: None)
    compiled, note = layer._compile(tmp_path, "3.13")
    assert not compiled and note.startswith("no Python 3.13 interpreter")


def test_the_aws_sdk_is_removed_when_a_dependency_pulls_it_in(tmp_path: Path) -> None:
    """tracekit itself does not need botocore, but a requirement that does must not ship it."""
    site = tmp_path / "python"
    for dist in ("botocore-1.35.0", "jmespath-1.0.1", "keep-1.0"):
        name = dist.split("-")[0]
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text("")
        info = site / f"{dist}.dist-info"
        info.mkdir()
        (info / "RECORD").write_text(f"{name}/__init__.py,,\n{dist}.dist-info/RECORD,,\n")
    layer._remove_distributions(site, layer.EXCLUDED)
    assert sorted(p.name for p in site.iterdir()) == ["keep", "keep-1.0.dist-info"]
