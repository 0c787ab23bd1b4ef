"""Check the wheel and the sdist that ``python -m build`` wrote (stdlib, plus ``packaging`` if present).

Usage: ``python .ci/check_dist.py DIST_DIR``, where DIST_DIR holds exactly one ``.whl`` and one
``.tar.gz``. Plain ``python -m build`` builds the sdist first and then the wheel *from the sdist*,
so a wheel here also shows that the sdist builds one again.

Checked: the metadata parses and is valid (name, version = ``jax_dfl.__version__``, licence
expression, the runtime dependencies and nothing more, the extras, the project URLs, the README as
description); the wheel holds the package's modules, ``py.typed`` and the licence and nothing else
(no tests, results, experiments or docs), each file matching its RECORD hash; the sdist holds the
package, its metadata, README, LICENSE and CHANGELOG, and no tests, results, experiments or docs.
"""

from __future__ import annotations

import ast
import base64
import csv
import email.parser
import hashlib
import io
import pathlib
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "jax_dfl"
RUNTIME = {"jax", "jaxlib", "chex", "numpy"}
EXTRAS = {"nn", "eval", "experiments", "test", "dev", "docs"}
FORBIDDEN_TOPS = {"tests", "experiments", "results", "docs", "runs", ".ci", "build", "dist"}

errors: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        errors.append(message)


def source_version() -> str:
    """``__version__`` as written in jax_dfl/__init__.py, read without importing jax."""
    tree = ast.parse((ROOT / PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise SystemExit("jax_dfl/__init__.py defines no __version__")


def package_files() -> set[str]:
    """The files the installed package should hold: every module, and py.typed."""
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / PACKAGE).glob("*.py")}
    return files | {f"{PACKAGE}/py.typed"}


def requirement_name(requirement: str) -> str:
    name = requirement.split(";")[0]
    for stop in "<>=!~[ (@":
        name = name.split(stop)[0]
    return name.strip().lower().replace("_", "-")


def check_metadata(raw: str, where: str, version: str) -> None:
    message = email.parser.Parser().parsestr(raw)
    check(message["Name"] == PACKAGE, f"{where}: Name is {message['Name']!r}")
    check(message["Version"] == version, f"{where}: Version {message['Version']!r}, source says {version!r}")
    check(message["License-Expression"] == "Apache-2.0", f"{where}: License-Expression missing or wrong")
    requires_python = message["Requires-Python"]
    check(requires_python == ">=3.11", f"{where}: Requires-Python is {requires_python!r}")
    requires = message.get_all("Requires-Dist") or []
    runtime = {requirement_name(r) for r in requires if "extra ==" not in r}
    check(runtime == RUNTIME, f"{where}: runtime dependencies {sorted(runtime)}, expected {sorted(RUNTIME)}")
    extras = set(message.get_all("Provides-Extra") or [])
    check(extras == EXTRAS, f"{where}: extras {sorted(extras)}, expected {sorted(EXTRAS)}")
    urls = {u.split(",")[0].strip() for u in message.get_all("Project-URL") or []}
    check({"Documentation", "Source"} <= urls, f"{where}: Project-URL lacks Documentation or Source: {urls}")
    check(
        message["Description-Content-Type"] == "text/markdown"
        and "# jax_dfl" in (message.get_payload() or ""),
        f"{where}: the README is not the long description",
    )
    try:  # the strict validator, where packaging (a dependency of pytest and build) is installed
        from packaging.metadata import Metadata
    except ImportError:
        print(f"{where}: packaging not installed, metadata checked by the email parser only")
        return
    try:
        Metadata.from_email(raw, validate=True)
    except Exception as error:  # ExceptionGroup of InvalidMetadata
        check(False, f"{where}: invalid metadata: {error!r} {getattr(error, 'exceptions', '')}")


def check_wheel(path: pathlib.Path, version: str) -> None:
    dist_info = f"{PACKAGE}-{version}.dist-info"
    with zipfile.ZipFile(path) as wheel:
        names = set(wheel.namelist())
        expected_meta = {f"{dist_info}/{n}" for n in ("METADATA", "WHEEL", "RECORD", "top_level.txt")}
        expected = package_files() | expected_meta | {f"{dist_info}/licenses/LICENSE"}
        check(not names - expected, f"wheel: unexpected files {sorted(names - expected)}")
        check(not expected - names, f"wheel: missing files {sorted(expected - names)}")
        check(
            not {n.split("/")[0] for n in names} & FORBIDDEN_TOPS, "wheel: holds tests, experiments or docs"
        )
        if f"{dist_info}/licenses/LICENSE" in names:
            check(
                wheel.read(f"{dist_info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes(),
                "wheel: LICENSE differs from the checkout's",
            )
        for name in package_files() & names:
            same = wheel.read(name) == (ROOT / name).read_bytes()
            check(same, f"wheel: {name} differs from the checkout's")
        record = wheel.read(f"{dist_info}/RECORD").decode()
        for row in csv.reader(io.StringIO(record)):
            if not row or not row[1]:
                continue  # RECORD lists itself without a hash
            algorithm, digest = row[1].split("=", 1)
            actual = base64.urlsafe_b64encode(hashlib.new(algorithm, wheel.read(row[0])).digest())
            check(actual.rstrip(b"=").decode() == digest, f"wheel: RECORD hash of {row[0]} does not match")
        check_metadata(wheel.read(f"{dist_info}/METADATA").decode(), "wheel METADATA", version)
        print(f"wheel {path.name}: {len(names)} files")


def check_sdist(path: pathlib.Path, version: str) -> None:
    top = f"{PACKAGE}-{version}"
    with tarfile.open(path) as sdist:
        members = [m.name for m in sdist.getmembers() if m.isfile()]
        check(all(m.startswith(top + "/") for m in members), f"sdist: files outside {top}/")
        inner = {m[len(top) + 1 :] for m in members}
        needed = package_files() | {"pyproject.toml", "PKG-INFO", "README.md", "LICENSE", "CHANGELOG.md"}
        check(not needed - inner, f"sdist: missing {sorted(needed - inner)}")
        tops = {m.split("/")[0] for m in inner}
        check(not tops & FORBIDDEN_TOPS, f"sdist: holds {sorted(tops & FORBIDDEN_TOPS)}")
        extra = {m for m in inner if m.startswith(PACKAGE + "/")} - package_files()
        check(not extra, f"sdist: unexpected files in the package {sorted(extra)}")
        pkg_info = sdist.extractfile(f"{top}/PKG-INFO")
        assert pkg_info is not None
        check_metadata(pkg_info.read().decode(), "sdist PKG-INFO", version)
        print(f"sdist {path.name}: {len(inner)} files")


def main() -> None:
    dist = pathlib.Path(sys.argv[1])
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise SystemExit(f"{dist}: expected one wheel and one sdist, found {wheels + sdists}")
    version = source_version()
    check(wheels[0].name == f"{PACKAGE}-{version}-py3-none-any.whl", f"wheel name {wheels[0].name}")
    check(sdists[0].name == f"{PACKAGE}-{version}.tar.gz", f"sdist name {sdists[0].name}")
    check_wheel(wheels[0], version)
    check_sdist(sdists[0], version)
    if errors:
        raise SystemExit("dist check failed:\n  " + "\n  ".join(errors))
    print("dist check passed")


if __name__ == "__main__":
    main()
