"""Fetch the book's browser assets once, so the built site reads with no network.

``python -m blender_lib.book_assets`` puts MathJax 3 (``tex-chtml.js`` with its CHTML fonts and the
TeX extensions it loads on demand), RequireJS and the ipywidgets embed script
(``@jupyter-widgets/html-manager``'s ``embed-amd.js`` with its icon fonts) into ``book/_static/vendor/``,
which ``_config.yml`` points Sphinx and myst-nb at instead of a CDN. It is a no-op when the pinned
versions are already there.

Source: the npm registry through the ``npm pack`` client, at pinned versions whose tarballs are checked
against pinned sha512 integrity strings. No PyPI package ships all three: ``jupyter-server-mathjax``
carries MathJax 2, not 3, and none ships the widgets embed bundle or RequireJS as plain files.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .paths import PROJECT_ROOT

VENDOR_DIR = PROJECT_ROOT / "book" / "_static" / "vendor"
STAMP_NAME = ".npm-package.json"


class AssetError(RuntimeError):
    """The assets could not be fetched (no npm, no registry, a bad tarball)."""


@dataclass(frozen=True)
class NpmAsset:
    """One pinned npm package and the parts of it that the book serves."""

    name: str
    version: str
    integrity: str  # the registry's sha512 of the tarball, as `npm pack --json` reports it
    folder: str  # sub-folder of VENDOR_DIR
    keep: tuple[str, ...]  # paths inside the package (folders end with "/")
    entry: str  # the file the book loads; its presence marks the asset as installed

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


ASSETS: tuple[NpmAsset, ...] = (
    NpmAsset(
        name="mathjax",
        version="3.2.2",
        integrity="sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        folder="mathjax",
        keep=(
            "es5/tex-chtml.js",
            "es5/output/chtml/",
            "es5/input/tex/extensions/",
            "es5/a11y/",
            "es5/ui/",
            "es5/sre/",
            "es5/adaptors/",
            "LICENSE",
            "package.json",
        ),
        entry="tex-chtml.js",
    ),
    NpmAsset(
        name="requirejs",
        version="2.3.7",
        integrity="sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
        folder="requirejs",
        keep=("require.js", "package.json"),
        entry="require.js",
    ),
    NpmAsset(
        name="@jupyter-widgets/html-manager",
        version="1.0.15",
        integrity="sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        folder="html-manager",
        keep=(
            "dist/embed-amd.js",
            "dist/embed.js.LICENSE.txt",
            "dist/*.woff",
            "dist/*.woff2",
            "dist/*.ttf",
            "dist/*.eot",
            "dist/*.svg",
            "package.json",
        ),
        entry="embed-amd.js",
    ),
)

# Inside the tarball everything sits under "package/"; these prefixes are dropped when copying.
STRIP_PREFIXES = ("package/es5/", "package/dist/", "package/")


def is_installed(asset: NpmAsset, vendor_dir: Path = VENDOR_DIR) -> bool:
    """True when the asset's entry file and a stamp naming the pinned version are present."""
    folder = vendor_dir / asset.folder
    stamp = folder / STAMP_NAME
    if not (folder / asset.entry).is_file() or not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()).get("spec") == asset.spec
    except (OSError, json.JSONDecodeError):
        return False


def find_npm() -> str:
    """Path of the npm client, or a clear error saying how to get it."""
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError(
            "npm was not found on PATH. The book serves MathJax, RequireJS and the ipywidgets embed "
            "script locally and fetches them once with `npm pack`. Install Node.js and npm "
            "(Debian/Ubuntu: `apt-get install npm`), or copy a book/_static/vendor/ folder from a "
            "machine that has it, then run `python -m blender_lib.book_assets` again."
        )
    return npm


def npm_pack(asset: NpmAsset, workdir: Path, npm: str) -> Path:
    """Download the pinned tarball with `npm pack` into workdir and return its path."""
    cmd = [npm, "pack", asset.spec, "--json", "--silent"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssetError(f"`npm pack {asset.spec}` failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    try:
        filename = json.loads(proc.stdout)[0]["filename"]
    except (json.JSONDecodeError, LookupError, TypeError) as err:
        raise AssetError(f"unexpected output from `npm pack {asset.spec}`: {proc.stdout[:300]!r}") from err
    tarball = workdir / filename
    if not tarball.is_file():
        raise AssetError(f"`npm pack {asset.spec}` reported {filename} but wrote no such file")
    return tarball


def sha512_integrity(path: Path) -> str:
    """The Subresource-Integrity style sha512 of a file (what npm calls `integrity`)."""
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode("ascii")


def verify(asset: NpmAsset, tarball: Path) -> None:
    """Refuse a tarball whose sha512 differs from the pinned one."""
    actual = sha512_integrity(tarball)
    if actual != asset.integrity:
        raise AssetError(f"{asset.spec}: tarball integrity {actual} does not match the pinned {asset.integrity}")


def wanted(member: str, keep: tuple[str, ...]) -> bool:
    """Whether a tarball member path (under "package/") is one of the kept files or folders."""
    inner = member.removeprefix("package/")
    for pattern in keep:
        if pattern.endswith("/") and inner.startswith(pattern):
            return True
        if "*" in pattern and Path(inner).match(pattern):
            return True
        if inner == pattern:
            return True
    return False


def destination(member: str) -> str:
    """Where a kept member goes inside the asset's folder (package/, es5/ and dist/ dropped)."""
    for prefix in STRIP_PREFIXES:
        if member.startswith(prefix):
            return member[len(prefix) :]
    return member


def extract(asset: NpmAsset, tarball: Path, target: Path) -> int:
    """Copy the kept files of the tarball into target; return how many were copied."""
    count = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or not wanted(member.name, asset.keep):
                continue
            out = target / destination(member.name)
            if target.resolve() not in out.resolve().parents:
                raise AssetError(f"{asset.spec}: refusing to write outside {target}: {member.name}")
            out.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # a regular file always has content
            with source, out.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            count += 1
    if not (target / asset.entry).is_file():
        raise AssetError(f"{asset.spec}: the tarball has no {asset.entry}")
    return count


def install(asset: NpmAsset, vendor_dir: Path, npm: str) -> int:
    """Fetch, verify and place one asset atomically (a temp folder renamed into place)."""
    vendor_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=vendor_dir, prefix=".fetch-") as tmp:
        work = Path(tmp)
        tarball = npm_pack(asset, work, npm)
        verify(asset, tarball)
        staged = work / "staged"
        staged.mkdir()
        count = extract(asset, tarball, staged)
        stamp = {"spec": asset.spec, "integrity": asset.integrity, "files": count}
        (staged / STAMP_NAME).write_text(json.dumps(stamp, indent=1) + "\n")
        final = vendor_dir / asset.folder
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
    return count


def ensure_assets(vendor_dir: Path = VENDOR_DIR, force: bool = False) -> list[str]:
    """Install every missing (or, with force, every) asset; return the specs that were fetched."""
    missing = [a for a in ASSETS if force or not is_installed(a, vendor_dir)]
    if not missing:
        return []
    npm = find_npm()
    for asset in missing:
        count = install(asset, vendor_dir, npm)
        print(f"book_assets: {asset.spec} -> {vendor_dir / asset.folder} ({count} files)")
    return [a.spec for a in missing]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blender_lib.book_assets", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch again even if the pinned versions are present")
    parser.add_argument("--vendor-dir", type=Path, default=VENDOR_DIR, help="target folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        fetched = ensure_assets(args.vendor_dir, force=args.force)
    except AssetError as err:
        print(f"book_assets: error: {err}", file=sys.stderr)
        return 1
    if not fetched:
        print(f"book_assets: up to date in {args.vendor_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
