"""Fetch the NEON tree-crown images shipped inside deepforest's wheel, once, into a cache directory.

    python -m experiments.detection_study.fetch_data [--cache DIR]

deepforest (MIT licence) pulls torch, so it is never installed: ``pip download
--no-deps`` fetches its wheel (a zip) into a temporary directory and only the
annotated images are extracted. Run once; nothing imports this at import time.
The cache is ``$JAX_DFL_DATA`` if set, else ``~/.cache/jax_dfl/neon``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

VERSION = "2.1.0"
# The four hand-annotated NEON RGB images (Pascal VOC XML next to each PNG). OSBS_029 also ships a
# .tif and a .csv with the same boxes; the PNG is the one Pillow reads without extra codecs.
IMAGES = (
    "2019_YELL_2_528000_4978000_image_crop2",
    "2019_YELL_2_541000_4977000_image_crop",
    "OSBS_029",
    "SOAP_061",
)
LICENCE_FILES = ("LICENSE", "AUTHORS.md")
# SHA-256 of every file extracted from deepforest 2.1.0's wheel: a fetch refuses a mismatch, and the
# study records the digests of the files it read, so a rerun can show it used the same data.
PINNED_SHA256 = {
    "2019_YELL_2_528000_4978000_image_crop2.png": "a9bdb0f4447fdd899d22f567e0e20ba8320c5413b2ad0cd0ac8d9f3b6e0f9767",  # noqa: E501
    "2019_YELL_2_528000_4978000_image_crop2.xml": "bd431af6a5086d721eb731b22f5ea28cd8a8eab06883efc1c665391acbc68e11",  # noqa: E501
    "2019_YELL_2_541000_4977000_image_crop.png": "178e58a23cc2642226a364a30f71bd9258ddc1b012c826f12250914a90c7a131",  # noqa: E501
    "2019_YELL_2_541000_4977000_image_crop.xml": "cefe4b96888bacbf8af1674f000082e549aa707aa6590d545effb23e43f26631",  # noqa: E501
    "OSBS_029.png": "d9477c6a00e4902c7bee487d4c5582c3b8b9a2f77f3908a29628b816b291e6ee",
    "OSBS_029.xml": "1f68c4011d7b351c29ca755072e77f3d16e6fd1f995bd05a9dd4eb952b55373c",
    "SOAP_061.png": "256508f1a62149bec4a80879077a865caf50e8cace095e6564c76befa480d424",
    "SOAP_061.xml": "4833280af75fd9c47965a93e38945282835e9e725cac412bdb9469d63480947c",
    "deepforest_LICENSE": "5487293ab54d4861d41b5f51622b236f610def978abf6d88091f74559232ab14",
    "deepforest_AUTHORS.md": "a33f04e37d88c853e20bfc95e9ece9c08473c4da95a4b6323172f2f39b3b8a5c",
}


def default_cache() -> pathlib.Path:
    env = os.environ.get("JAX_DFL_DATA")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "jax_dfl" / "neon"


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_checksums(cache: pathlib.Path) -> dict:
    """``{"files": {name: sha256}, "mismatched": [names]}`` of the image and annotation files in
    ``cache`` against :data:`PINNED_SHA256` (a missing file counts as mismatched)."""
    files, mismatched = {}, []
    for name, pinned in PINNED_SHA256.items():
        if name.startswith("deepforest_"):
            continue  # the licence texts are not data
        path = cache / name
        files[name] = sha256(path) if path.exists() else None
        if files[name] != pinned:
            mismatched.append(name)
    return {"files": files, "mismatched": mismatched}


def download_wheel(directory: pathlib.Path) -> pathlib.Path:
    """deepforest's wheel via pip (no dependencies: nothing is installed)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            f"deepforest=={VERSION}",
            "-d",
            str(directory),
        ],
        check=True,
    )
    (wheel,) = directory.glob(f"deepforest-{VERSION}-*.whl")
    return wheel


def extract(wheel: pathlib.Path, cache: pathlib.Path) -> dict[str, str]:
    """Copy the images, their XML and the licence into ``cache``; returns ``{file: sha256}``."""
    cache.mkdir(parents=True, exist_ok=True)
    checksums = {}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        wanted = {
            f"deepforest/data/{stem}{ext}": f"{stem}{ext}" for stem in IMAGES for ext in (".png", ".xml")
        }
        dist = f"deepforest-{VERSION}.dist-info/licenses/"
        wanted |= {dist + name: f"deepforest_{name}" for name in LICENCE_FILES}
        missing = sorted(k for k in wanted if k not in names)
        if missing:
            print("not in this wheel (skipped):", *missing, sep="\n  ")
        for member, target in sorted(wanted.items()):
            if member in names:
                data = archive.read(member)
                digest = hashlib.sha256(data).hexdigest()
                if digest != PINNED_SHA256[target]:
                    raise ValueError(
                        f"{member} in {wheel.name} has SHA-256 {digest}, not the pinned "
                        f"{PINNED_SHA256[target]}: refusing to use it"
                    )
                (cache / target).write_bytes(data)
                checksums[target] = digest
    return checksums


def main(argv=None) -> dict[str, str]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=pathlib.Path, default=default_cache())
    parser.add_argument("--wheel", type=pathlib.Path, help="an already downloaded deepforest wheel")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(pathlib.Path(tmp))
        checksums = extract(wheel, args.cache)
    for name, digest in checksums.items():
        print(f"{digest}  {args.cache / name}")
    licence = args.cache / "deepforest_LICENSE"
    if licence.exists():
        print("\nLicence of the deepforest package (data shipped inside it):\n")
        print(licence.read_text())
    return checksums


if __name__ == "__main__":
    main()
