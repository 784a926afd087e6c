"""`dgn benchmark`: sizes, timing JSON, metrics on known fixtures, depth thirds, the ablation
rows on a tiny GOPRO-layout tree."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dgn_cli.benchmark import quality as bq
from dgn_cli.benchmark import speed as bench
from dgn_cli.cli import app
from dgn_cli.commands.common import parse_size
from dgn_cli.engine import Engine, EngineConfig
from dgn_cli.models import DGN, parameter_counts

runner = CliRunner()
W, H = 48, 40  # three 16-px column bands: far | middle | near
BAND_DEPTH = (0.1, 0.5, 0.9)  # far, middle, near
BAND_NOISE = (2, 4, 8)  # +- noise of the blurred frame per band -> MSE 4, 16, 64


def psnr_db(mse: float) -> float:
    return 10 * math.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def models(tiny_checkpoints):
    """Tiny DGN, baseline (both fresh: output = input) and depth checkpoints."""
    names = {"dgn": "identity", "baseline": "baseline", "depth": "depth"}
    return {k: str(tiny_checkpoints[name]) for k, name in names.items()}


def _sign_pattern(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.where((x + y) % 2 == 0, 1, -1)[..., None].repeat(3, axis=2)


@pytest.fixture(scope="module")
def gopro(tmp_path_factory):
    """ROOT/test/SEQ/{blur,sharp,depth}/*.png, 2 sequences x 2 frames; the blurred frame is
    the sharp one plus +-2 / +-4 / +-8 in the far / middle / near band (no clipping)."""
    root = tmp_path_factory.mktemp("gopro")
    rng = np.random.default_rng(3)
    depth = np.zeros((H, W), np.float64)
    noise = np.zeros((H, W, 3), np.int16)
    sign = _sign_pattern(H, W)
    for b in range(3):
        depth[:, 16 * b : 16 * (b + 1)] = BAND_DEPTH[b]
        noise[:, 16 * b : 16 * (b + 1)] = BAND_NOISE[b] * sign[:, 16 * b : 16 * (b + 1)]
    for s in range(2):
        for k in range(2):
            sharp = rng.integers(20, 236, (H, W, 3)).astype(np.int16)
            blur = (sharp + noise).astype(np.uint8)
            for sub, img in (("blur", blur), ("sharp", sharp.astype(np.uint8))):
                path = root / "test" / f"seq{s}" / sub / f"{k:06d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), img[..., ::-1])
            dpath = root / "test" / f"seq{s}" / "depth" / f"{k:06d}.png"
            dpath.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(dpath), np.rint(depth * 65535).astype(np.uint16))
    return root


def invoke(*args):
    result = runner.invoke(app, ["benchmark", "--device", "cpu", "--precision", "fp32", *args])
    assert result.exit_code == 0, result.output
    return result


# --------------------------------------------------------------------------- metrics, thirds
def test_known_noise_gives_known_psnr_and_identical_gives_ssim_1():
    rng = np.random.default_rng(0)
    sharp = torch.from_numpy(rng.integers(20, 236, (1, 3, 32, 40)).astype(np.float64))
    noisy = sharp + 5 * torch.from_numpy(_sign_pattern(32, 40).transpose(2, 0, 1)[None])
    depth = torch.full((1, 1, 32, 40), 0.9)
    score = bq._score(noisy / 255.0, sharp, depth)
    assert score["psnr"] == pytest.approx(psnr_db(25.0), abs=1e-9)
    assert score["psnr_near"] == pytest.approx(psnr_db(25.0), abs=1e-9)
    assert score["psnr_middle"] is None and score["psnr_far"] is None  # empty thirds
    same = bq._score(sharp / 255.0, sharp, depth)
    assert same["ssim"] == pytest.approx(1.0, abs=1e-12) and math.isinf(same["psnr"])


def test_ssim_agrees_with_an_independent_scipy_computation():
    from scipy import ndimage  # in the test extra: a missing scipy fails here, never skips

    rng = np.random.default_rng(1)
    a = cv2.GaussianBlur(rng.random((40, 48, 3)), (0, 0), 2) * 255
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255)
    a, b = np.round(a), np.round(b)

    def ssim_channel(x, y):  # 11x11 Gaussian (sigma 1.5, truncate 3.5 -> radius 5), valid region
        f = lambda z: ndimage.gaussian_filter(z, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        m = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        return m.mean()

    expected = np.mean([ssim_channel(a[..., c], b[..., c]) for c in range(3)])
    to_t = lambda z: torch.from_numpy(z.transpose(2, 0, 1)[None].copy())  # noqa: E731
    got = bq._score(to_t(b) / 255.0, to_t(a), None)["ssim"]
    assert got == pytest.approx(expected, abs=1e-6)


def test_psnr_by_thirds_on_a_constructed_example():
    sign = torch.from_numpy(_sign_pattern(H, W).transpose(2, 0, 1)[None]).double()
    target = torch.full((1, 3, H, W), 100.0, dtype=torch.float64)
    depth = torch.zeros(1, 1, H, W)
    err = torch.zeros(1, 3, H, W, dtype=torch.float64)
    for b in range(3):
        depth[..., 16 * b : 16 * (b + 1)] = BAND_DEPTH[b]
        err[..., 16 * b : 16 * (b + 1)] = BAND_NOISE[b]
    got = bq.psnr_by_thirds(target + err * sign, target, depth)
    assert got["far"] == pytest.approx(psnr_db(4.0))
    assert got["middle"] == pytest.approx(psnr_db(16.0))
    assert got["near"] == pytest.approx(psnr_db(64.0))
    masks = bq.depth_thirds(torch.tensor([[0.0, 1 / 3, 0.5, 2 / 3, 1.0]]))
    assert masks["far"].tolist() == [[True, False, False, False, False]]
    assert masks["middle"].tolist() == [[False, True, True, False, False]]
    assert masks["near"].tolist() == [[False, False, False, True, True]]


def test_select_indices_spreads_evenly():
    assert bq.select_indices(5, None) == [0, 1, 2, 3, 4]
    assert bq.select_indices(5, 9) == [0, 1, 2, 3, 4]
    assert bq.select_indices(101, 3) == [0, 50, 100]
    assert bq.select_indices(10, 1) == [0]


def test_refine_false_is_the_deblurring_branch_on_the_given_depth(tiny_config):
    torch.manual_seed(0)
    dgn = DGN(tiny_config()).eval()
    with torch.no_grad():  # the SFT layers start as the identity: make the guidance matter
        for p in dgn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    frames = torch.rand(1, 3, 20, 24) * 2 - 1
    depth = torch.rand(1, 1, 20, 24)
    with torch.no_grad():
        out = dgn(frames, depth, refine=False)
        direct = dgn.deblur(frames, depth)
        normal = dgn(frames, depth)
    torch.testing.assert_close(out.image, direct)
    torch.testing.assert_close(out.depth, depth)
    # the normal DGN refines the depth first, so its D_r and output differ
    assert not torch.equal(normal.depth, depth) and not torch.equal(normal.image, direct)
    # the ablation engine shares the DGN's weights and bypasses G_D the same way
    bypass = bq.bypass_engine(Engine(EngineConfig(device="cpu", precision="fp32"), dgn=dgn))
    assert bypass.dgn is dgn and bypass.config.refine_depth is False


def test_summarize_and_parse_size():
    s = bench.summarize([10.0, 20.0, 30.0, 40.0, 50.0])
    assert s["median"] == 30.0 and s["p90"] == pytest.approx(46.0) and s["min"] == 10.0
    assert parse_size("1280x720") == (1280, 720)
    with pytest.raises(Exception, match="WIDTHxHEIGHT"):
        parse_size("720p")


# --------------------------------------------------------------------------- CLI: sizes, timing
def test_params_only_totals_are_the_sum_of_the_components(models, tiny_depth_net):
    result = invoke(
        "--weights", models["dgn"], "--depth-model", models["depth"], "--params-only",
        "--size", "64x48", "--json",
    )  # fmt: skip
    doc = json.loads(result.stdout)
    counts, millions = doc["params"], doc["params_m"]
    assert counts["total"] == sum(counts[c] for c in bench.COMPONENTS)
    assert millions["total"] == pytest.approx(sum(millions[c] for c in bench.COMPONENTS))
    assert counts["total"] == pytest.approx(millions["total"] * 1e6)
    dgn_counts = parameter_counts(DGN(_config_of(models["dgn"])))
    assert counts["refinement"] == dgn_counts["refinement"] > 0
    assert counts["deblurring"] == dgn_counts["deblurring"] > 0
    assert counts["depth_estimator"] == sum(p.numel() for p in tiny_depth_net().parameters())
    assert doc["gmacs"]["total"] == pytest.approx(sum(doc["gmacs"][c] for c in bench.COMPONENTS))
    assert doc["timing_ms"] is None


def test_self_ensemble_counts_its_passes_in_the_gmacs(models):
    args = ["--weights", models["dgn"], "--depth-model", models["depth"], "--params-only"]
    one = json.loads(invoke(*args, "--size", "64x48", "--json").stdout)
    four = json.loads(invoke(*args, "--size", "64x48", "--self-ensemble", "4", "--json").stdout)
    assert one["self_ensemble"] == 1 and four["self_ensemble"] == 4
    for part in ("refinement", "deblurring"):
        assert four["gmacs"][part] == pytest.approx(4 * one["gmacs"][part])
    assert four["gmacs"]["depth_estimator"] == one["gmacs"]["depth_estimator"]  # runs once


def _config_of(path):
    from dgn_cli.checkpoints import read_metadata
    from dgn_cli.models import DGNConfig

    return DGNConfig.from_json(read_metadata(path)["dgn_config"])


def test_timing_json_has_every_field(models):
    result = invoke(
        "--weights", models["dgn"], "--depth-model", models["depth"], "--size", "64x48",
        "--runs", "3", "--warmup", "1", "--seed", "7", "--json",
    )  # fmt: skip
    doc = json.loads(result.stdout)
    for key in ("device", "precision", "torch", "commit", "seed", "params_m", "timing_ms",
                "peak_memory_mb", "gmacs"):  # fmt: skip
        assert key in doc, key
    assert doc["device"] == "cpu" and doc["precision"] == "fp32" and doc["seed"] == 7
    assert doc["torch"] == torch.__version__
    assert doc["commit"] is None or len(doc["commit"]) == 40
    assert set(doc["params_m"]) == {*bench.COMPONENTS, "total"}
    for name in (*bench.COMPONENTS, "end_to_end"):
        t = doc["timing_ms"][name]
        assert 0 < t["median"] <= t["p90"], name
    e2e = doc["timing_ms"]["end_to_end"]["median"]
    # the parts fit in the whole (medians of separate runs: noisy on a loaded machine, hence 1.5)
    assert sum(doc["timing_ms"][c]["median"] for c in bench.COMPONENTS) <= e2e * 1.5
    assert doc["peak_memory_mb"] > 0 and doc["gmacs"]["total"] > 0
    assert doc["runs"] == 3 and doc["size"] == [64, 48] and doc["tile_used"] == 0


def test_random_weights_are_flagged_and_missing_default_weights_say_what_to_do(
    monkeypatch, tmp_path, untrained_weights
):
    monkeypatch.setenv("DGN_WEIGHTS_DIR", str(tmp_path))
    missing = runner.invoke(app, ["benchmark", "--device", "cpu", "--params-only"])
    assert missing.exit_code == 1
    assert "dgn-image" in missing.output and "--weights random" in missing.output
    result = invoke("--weights", "random", "--params-only", "--size", "32x32", "--json")
    doc = json.loads(result.stdout)
    assert doc["random_weights"] is True and any("RANDOM" in n for n in doc["notes"])
    # The default DGN: about 2.6 M parameters per branch (paper: fewer than DeepDeblur's 11.7 M)
    assert 2.0 < doc["params_m"]["refinement"] < 3.2
    assert 2.0 < doc["params_m"]["deblurring"] < 3.2


# --------------------------------------------------------------------------- CLI: quality
def test_dataset_run_gives_blurry_first_and_every_ablation_row(models, gopro):
    result = invoke(
        "--weights", models["dgn"], "--depth-model", models["depth"],
        "--baseline-weights", models["baseline"], "--dataset", "gopro", "--data", str(gopro),
        "--no-timing", "--size", "32x32", "--json",
    )  # fmt: skip
    doc = json.loads(result.stdout)
    names = [q["name"] for q in doc["quality"]]
    assert names == [
        "blurry input",
        "no depth (baseline)",
        "initial depth",
        "refined depth",
        "reference depth",
    ]
    blurry = doc["quality"][0]
    mse = np.mean([n**2 for n in BAND_NOISE])  # equal bands
    assert blurry["psnr"] == pytest.approx(psnr_db(mse), abs=1e-6)
    assert blurry["psnr_far"] == pytest.approx(psnr_db(4.0), abs=1e-6)
    assert blurry["psnr_middle"] == pytest.approx(psnr_db(16.0), abs=1e-6)
    assert blurry["psnr_near"] == pytest.approx(psnr_db(64.0), abs=1e-6)
    assert 0 < blurry["ssim"] < 1 and blurry["images"] == 4
    for row in doc["quality"]:
        assert {"name", "psnr", "ssim", "psnr_near", "psnr_middle", "psnr_far"} <= set(row)
        assert row["psnr"] is not None and row["images"] == 4
    assert len(doc["per_image"]) == 4 and doc["per_image"][0]["name"] == "seq0/000000"
    err = doc["depth_error"]
    assert set(err) == {
        "initial_mae", "refined_mae", "initial_rmse", "refined_rmse", "constant_rmse",
        "initial_pearson", "refined_pearson",
    }  # fmt: skip
    assert all(-1 <= err[f"{k}_pearson"] <= 1 for k in ("initial", "refined"))
    # the bar an estimator must clear: the reference's own spread (equal bands of BAND_DEPTH)
    assert err["constant_rmse"] == pytest.approx(np.std(BAND_DEPTH), abs=1e-4)
    assert doc["dataset"]["reference_depth"] == "the dataset's depth/ maps"
    assert doc["skipped"] == []


def test_benchmark_scores_compressed_inputs_when_asked(models, gopro):
    common = (
        "--weights", models["dgn"], "--depth-model", models["depth"], "--baseline-weights",
        "none", "--dataset", "gopro", "--data", str(gopro), "--no-timing",
    )  # fmt: skip
    plain = json.loads(invoke(*common, "--json").stdout)
    packed = json.loads(invoke(*common, "--json", "--jpeg", "30").stdout)
    assert plain["dataset"]["input_jpeg_quality"] is None
    assert packed["dataset"]["input_jpeg_quality"] == 30
    # The blurry row itself is scored on what the models saw: the compressed frames.
    assert packed["quality"][0]["psnr"] != pytest.approx(plain["quality"][0]["psnr"], abs=0.01)
    markdown = invoke(*common, "--jpeg", "30", "--markdown").stdout
    assert "inputs JPEG q30" in markdown


def test_dataset_without_depth_or_baseline_estimates_reference_and_notes_the_skip(
    models, gopro, tmp_path
):
    import shutil

    root = tmp_path / "nodepth"
    shutil.copytree(gopro, root)
    for d in root.glob("test/*/depth"):
        shutil.rmtree(d)
    result = invoke(
        "--weights", models["dgn"], "--depth-model", models["depth"],
        "--baseline-weights", str(tmp_path / "absent.safetensors"), "--dataset", "gopro",
        "--data", str(root), "--limit", "2", "--no-timing", "--size", "32x32", "--json",
    )  # fmt: skip
    doc = json.loads(result.stdout)
    assert [q["name"] for q in doc["quality"]] == [
        "blurry input",
        "initial depth",
        "refined depth",
        "reference depth",
    ]
    assert doc["quality"][0]["images"] == 2 and doc["dataset"]["indices"] == [0, 3]
    assert doc["skipped"][0]["name"] == "no depth (baseline)"
    assert "estimated from the sharp frame" in doc["dataset"]["reference_depth"]


def test_markdown_and_rich_output(models, gopro):
    md = invoke(
        "--weights", models["dgn"], "--depth-model", models["depth"], "--size", "32x32",
        "--runs", "1", "--warmup", "0", "--dataset", "gopro", "--data", str(gopro),
        "--limit", "1", "--baseline-weights", "none", "--markdown",
    )  # fmt: skip
    assert "| component | params (M) | GMACs/frame | median (ms) | p90 (ms) |" in md.stdout
    assert "| blurry input |" in md.stdout and "11x11 Gaussian" in md.stdout
    assert "the best per-frame constant: RMSE 0.3266" in md.stdout  # std of BAND_DEPTH
    human = invoke(
        "--weights", models["dgn"], "--depth-model", models["depth"], "--params-only",
        "--size", "32x32",
    )  # fmt: skip
    # tables are results: stdout (`dgn benchmark > f` keeps them), one line per row
    assert "refinement branch" in human.stdout and "refinement branch" not in human.stderr
    assert any(ln.startswith("│ refinement branch") for ln in human.stdout.splitlines())


def test_synth_without_the_split_names_the_command(models, tmp_path):
    result = runner.invoke(
        app,
        ["benchmark", "--device", "cpu", "--weights", models["dgn"], "--depth-model",
         models["depth"], "--dataset", "synth", "--data", str(tmp_path / "nosynth"),
         "--no-timing", "--size", "32x32"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert f"dgn data synth {tmp_path / 'nosynth'} --photos" in " ".join(result.output.split())


def test_tiled_timing_of_a_video_model(tiny_checkpoints, models):
    result = invoke(
        "--weights", str(tiny_checkpoints["identity-video"]), "--depth-model", models["depth"],
        "--size", "128x96",
        "--runs", "1", "--warmup", "0", "--tile", "64", "--tile-overlap", "8", "--json",
    )  # fmt: skip
    doc = json.loads(result.stdout)
    assert doc["frames"] == 5 and doc["tile"] == 64 and doc["tile_used"] == 64
    assert doc["tiles"] > 1 and doc["timing_ms"]["end_to_end"]["median"] > 0


@pytest.mark.cuda
def test_cuda_timing_uses_events_and_max_allocated(models):
    result = runner.invoke(
        app,
        ["benchmark", "--device", "cuda", "--weights", models["dgn"], "--depth-model",
         models["depth"], "--size", "128x96", "--runs", "3", "--warmup", "1", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["device"].startswith("cuda") and doc["gpu"]
    assert doc["peak_memory_kind"] == "cuda_max_allocated" and doc["peak_memory_mb"] > 0
    for name in (*bench.COMPONENTS, "end_to_end"):
        assert doc["timing_ms"][name]["median"] > 0, name


def test_gopro_without_data_times_at_720p_and_says_what_quality_needs(models):
    result = invoke(
        "--weights", models["dgn"], "--depth-model", models["depth"], "--dataset", "gopro",
        "--runs", "1", "--warmup", "0",
    )  # fmt: skip
    assert "1280x720" in result.stdout and "end to end (total)" in result.stdout
    lines = [ln for ln in result.stderr.splitlines() if "GOPRO_Large" in ln]
    assert len(lines) == 1 and "--dataset synth" in lines[0] and "blur,sharp" in lines[0]
    doc = json.loads(
        invoke(
            "--weights",
            models["dgn"],
            "--depth-model",
            models["depth"],
            "--dataset",
            "gopro",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--size",
            "32x32",
            "--json",
        ).stdout  # fmt: skip
    )
    assert doc["quality"] is None and any("GOPRO_Large" in n for n in doc["notes"])


def test_a_bad_dataset_fails_before_any_timing(models, tmp_path, monkeypatch):
    from dgn_cli.benchmark import speed as bench

    def no_timing(*a, **k):
        raise AssertionError("timing ran before the dataset was checked")

    monkeypatch.setattr(bench, "time_pipeline", no_timing)
    result = runner.invoke(
        app,
        ["benchmark", "--device", "cpu", "--weights", models["dgn"], "--depth-model",
         models["depth"], "--dataset", "gopro", "--data", str(tmp_path / "missing")],
    )  # fmt: skip
    assert result.exit_code == 1 and "missing: dataset folder not found" in result.stderr


def test_depth_correlation_sees_shape_not_level_and_calls_a_flat_map_zero():
    from dgn_cli.benchmark.quality import pearson

    ref = torch.linspace(0, 1, 64).view(1, 1, 8, 8)
    assert pearson(0.2 * ref + 0.5, ref) == pytest.approx(1.0)
    assert pearson(1 - ref, ref) == pytest.approx(-1.0)
    assert pearson(torch.full_like(ref, 0.4), ref) == 0.0


def test_depth_eval_script_scores_an_estimator_alone(models, gopro):
    import re
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "campaign" / "depth_eval.py"
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": ""}
    done = subprocess.run(
        [sys.executable, str(script), models["depth"], "--data", str(gopro), "--frames", "9"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    m = re.search(
        r"Pearson ([-+]\d\.\d+) \(worst frame ([-+]\d\.\d+)\), RMSE (\d\.\d+), "
        r"best constant RMSE (\d\.\d+), (\d+) frames",
        done.stdout,
    )
    assert m, done.stdout
    pearson, worst, rmse, constant, frames = map(float, m.groups())
    assert frames == 4  # all the split has
    assert -1 <= worst <= pearson <= 1 and 0 <= rmse <= 1
    assert constant == pytest.approx(np.std(BAND_DEPTH), abs=1e-3)
