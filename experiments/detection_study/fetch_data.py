"""Fetch the NEON tree-crown images shipped inside deepforest's wheel, once, into a cache directory.

    python experiments/detection_study/fetch_data.py [--cache DIR]

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


def default_cache() -> pathlib.Path:
    env = os.environ.get("JAX_DFL_DATA")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "jax_dfl" / "neon"


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
                path = cache / target
                path.write_bytes(archive.read(member))
                checksums[target] = sha256(path)
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
