"""Score a depth estimator alone against the exact depth of a synthetic test split.

    python scripts/campaign/depth_eval.py ESTIMATOR [--data data/synth] [--frames 20]

ESTIMATOR: a registry name or a depth checkpoint. On FRAMES test frames spread evenly over the
split it reads the blurred centre frame, as D_b is read at inference, and prints the per-frame
Pearson correlation with the exact depth (mean and worst), the RMSE, and the RMSE of the best
per-frame constant (the bar for carrying any depth signal). `dgn benchmark` reports the same
correlation, but runs the whole DGN as well; this takes seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dgn_cli.benchmark.quality import depth_scores  # noqa: E402
from dgn_cli.checkpoints import load_depth_estimator  # noqa: E402
from dgn_cli.data.datasets import PairedFolderDataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("estimator")
    parser.add_argument("--data", default="data/synth")
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    estimator = load_depth_estimator(args.estimator).eval()
    dataset = PairedFolderDataset(args.data, "test", frames=1, crop=None, augment=False)
    picks = np.linspace(0, len(dataset) - 1, min(args.frames, len(dataset))).round().astype(int)
    scores = []
    with torch.no_grad():
        for i in picks:
            item = dataset[int(i)]
            blurred = ((item["blur"][:3] + 1) / 2).unsqueeze(0)  # [-1, 1] -> [0, 1]
            ref = item["depth"].unsqueeze(0).double()
            got = depth_scores(estimator(blurred), ref)
            scores.append((got["pearson"], got["rmse"], float(ref.std(correction=0))))
    s = np.array(scores)
    print(
        f"{args.estimator}: Pearson {s[:, 0].mean():+.3f} (worst frame {s[:, 0].min():+.2f}), "
        f"RMSE {s[:, 1].mean():.3f}, best constant RMSE {s[:, 2].mean():.3f}, {len(s)} frames"
    )


if __name__ == "__main__":
    main()
