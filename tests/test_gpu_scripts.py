"""scripts/gpu/{smoke,main}.sh, dry-run on the CPU (DGN_DRY_RUN=1): tiny models and frames,
1-second budgets. Checks what a GPU machine would send back: at most 8 files of at most
16 MiB in OUT, weights that load and are listed with their sha256 in the manifest, the
benchmark JSON, and that each script's device command line fits in 2,000 characters."""

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from tiny import write_smooth_photos

from dgn_cli.checkpoints import load_dgn

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "gpu"
MAX_FILES, MAX_BYTES = 8, 16 * 2**20


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    photos = write_smooth_photos(tmp_path_factory.mktemp("photos"), size=(120, 160), seed=3)
    return {
        **os.environ,
        "DGN_DRY_RUN": "1",
        "DGN_BUDGET": "1",
        "DGN_PHOTOS": str(photos),
        "OMP_NUM_THREADS": "1",
        "PYTHON": shutil.which("python") or "python3",
    }


def check_out(out):
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert 0 < len(files) <= MAX_FILES
    assert all(p.stat().st_size <= MAX_BYTES for p in files)
    return {p.name: p for p in files}


@pytest.mark.slow
def test_dry_runs_of_both_scripts(env, tmp_path):
    """Both scripts at once (as separate processes): the main run trains, exports and
    benchmarks the four models; the smoke run times fp32/bf16 and trains every task."""
    procs = {
        name: subprocess.Popen(
            ["bash", str(SCRIPTS / f"{name}.sh"), str(tmp_path / f"out-{name}")],
            env={**env, "DGN_WORK": str(tmp_path / f"work-{name}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("main", "smoke")
    }
    outputs = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: " + stdout[-3000:] + stderr[-3000:]
        outputs[name] = stdout

    files = check_out(tmp_path / "out-main")
    names = ["dgn-depth-small", "dgn-baseline", "dgn-image", "dgn-video"]
    assert set(files) == {*(f"{n}.safetensors" for n in names), "manifest.json",
                          "benchmark.json", "logs.tgz"}  # fmt: skip
    entries = {e["name"]: e for e in json.loads(files["manifest.json"].read_text())["entries"]}
    assert set(entries) == set(names)
    for name in names:
        entry, path = entries[name], files[f"{name}.safetensors"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        training = entry["training"]
        assert training["dtype"] == "fp16" and training["time_budget_s"] == 1.0
        assert training["hardware"].startswith("cpu") and training["steps"] >= 1
    assert load_dgn(files["dgn-video.safetensors"]).config.frames == 5
    # The DGNs continue the shipped weights, grown to wider channels (the depth net starts anew).
    for name in ("dgn-baseline", "dgn-image", "dgn-video"):
        recipe = entries[name]["training"]["recipe"]
        assert recipe["init"] == f"weights/{name}.safetensors" and recipe["widen"]
        assert load_dgn(files[f"{name}.safetensors"]).config.widths == (20, 40, 80)
    assert entries["dgn-baseline"]["training"]["recipe"]["lr"] == 3e-4
    bench = json.loads(files["benchmark.json"].read_text())
    rows = {r["name"] for r in bench["gpu"]["quality"]}
    assert "blurry input" in rows and "no depth (baseline)" in rows
    assert bench["shipped"]["quality"]
    with tarfile.open(files["logs.tgz"]) as tar:
        logs = tar.getnames()
    assert any(n.endswith("run-dgn-image/log.jsonl") for n in logs)
    assert "main run:" in outputs["main"]

    files = check_out(tmp_path / "out-smoke")
    assert set(files) == {"bench-fp32.json", "bench-bf16.json", "smoke.tgz", "status.txt"}
    assert files["status.txt"].read_text().strip() == "failed: none"
    timing = json.loads(files["bench-fp32.json"].read_text())
    assert timing["timing_ms"] and timing["params"]
    for task in ("image", "video", "baseline", "depth"):
        assert f"smoke-{task}.json steps" in outputs["smoke"]


@pytest.mark.parametrize("name", ["smoke", "main"])
def test_the_device_command_lines_fit(name):
    """The README's device commands (run from the repository root) stay under 2,000
    characters, and each script is valid bash."""
    readme = (SCRIPTS / "README.md").read_text()
    lines = [x for x in readme.splitlines() if f"scripts/gpu/{name}.sh" in x and "$OUT" in x]
    assert lines and all(len(x.strip()) < 2000 for x in lines)
    subprocess.run(["bash", "-n", str(SCRIPTS / f"{name}.sh")], check=True)


def test_install_copies_checked_weights_and_keeps_the_model_card(tmp_path):
    from dgn_cli.train import train
    from tests.test_train import cfg, data, run

    gpu = tmp_path / "gpu"
    c = cfg(steps=2)
    train(c, run(tmp_path, export="dgn-image", export_dir=gpu, export_dtype="fp16"),
          datasets=data(c))  # fmt: skip
    weights = tmp_path / "weights"
    weights.mkdir()
    shipped = {"name": "dgn-image", "kind": "dgn", "architecture": "DGN", "licence": "MIT",
               "source": {"file": "dgn-image.safetensors"}, "notes": "the shipped card",
               "training": {"steps": 5000, "device": "cpu"}}  # fmt: skip
    (weights / "manifest.json").write_text(json.dumps({"entries": [shipped]}))
    script = str(SCRIPTS / "install.py")
    proc = subprocess.run(
        [shutil.which("python") or "python3", script, str(gpu), "--weights-dir", str(weights)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entry = json.loads((weights / "manifest.json").read_text())["entries"][0]
    assert entry["notes"] == "the shipped card" and entry["training"]["steps"] == 2
    assert entry["training"]["history"] == [{"steps": 5000, "device": "cpu"}]
    installed = (weights / "dgn-image.safetensors").read_bytes()
    assert entry["sha256"] == hashlib.sha256(installed).hexdigest()

    # a campaign stretch continues the shipped weights: their lineage stays on the new entry
    first = entry["training"]
    lineage = {"stretch": 1, "stages": ["stretch 1"]}
    entry["training"] = {**first, "campaign": lineage}
    (weights / "manifest.json").write_text(json.dumps({"entries": [entry]}))
    proc = subprocess.run([shutil.which("python") or "python3", script, str(gpu), "--continues",
                           "--weights-dir", str(weights)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    training = json.loads((weights / "manifest.json").read_text())["entries"][0]["training"]
    assert training["campaign"] == lineage and "campaign" not in training["history"][0]
    assert training["recipe"]["init"] == "weights/dgn-image.safetensors"
    # the history stays one flat list, newest first, however many stretches it holds
    assert training["history"][0]["steps"] == 2 and "history" not in training["history"][0]
    assert training["history"][1:] == [{"steps": 5000, "device": "cpu"}]

    (gpu / "dgn-image.safetensors").write_bytes(b"corrupt")
    proc = subprocess.run([shutil.which("python") or "python3", script, str(gpu),
                           "--weights-dir", str(weights)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert proc.returncode != 0 and "sha256" in proc.stderr


def test_the_older_nested_training_records_read_as_one_flat_history():
    """Manifests written before the history list nested each replaced record inside the next;
    installing over one lists them all, newest first, none nested."""
    spec = importlib.util.spec_from_file_location("install", SCRIPTS / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    history_of = install.history_of
    nested = {"steps": 3, "replaced": {"steps": 2, "replaced": {"steps": 1}}}
    assert history_of(nested) == [{"steps": 3}, {"steps": 2}, {"steps": 1}]
    listed = {"steps": 4, "history": [{"steps": 3}, {"steps": 2}]}
    assert history_of(listed) == [{"steps": 4}, {"steps": 3}, {"steps": 2}]
