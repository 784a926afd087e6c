"""Options `dgn deblur-image` and `dgn deblur-video` share: depth-aware control and shards."""

from __future__ import annotations

from typing import Annotated

import typer

from dgn_cli import blend

StrengthOpt = Annotated[
    float,
    typer.Option(
        "--strength",
        min=0.0,
        max=1.0,
        help="how much of the deblurred result to use, mixed with the input in linear light "
        "(0 = the input, 1 = the full result)",
    ),
]
KeepBackgroundOpt = Annotated[
    bool,
    typer.Option(
        "--keep-background",
        "--only-near",
        help="keep the input where the depth says far (bokeh, haze stay as shot); only what "
        "is nearer than --threshold is deblurred, with a soft feathered edge",
    ),
]
KeepForegroundOpt = Annotated[
    bool,
    typer.Option(
        "--keep-foreground",
        "--only-far",
        help="the other way round: keep the input where the depth says near (an out-of-focus "
        "foreground stays as shot)",
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        min=0.0,
        max=1.0,
        help="depth (0 = far, 1 = nearest) splitting near from far for --keep-background / "
        "--keep-foreground (default: automatic, Otsu's split of the depth histogram)",
        show_default=False,
    ),
]
FeatherOpt = Annotated[
    float | None,
    typer.Option(
        "--feather",
        min=0.0,
        help="blur of the mask's edge in px (default 0.3 % of the long side)",
        show_default=False,
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="K/N: do only shard K (0..N-1) of the work, so N machines (a SLURM array, a "
        "Kubernetes Indexed Job, GNU parallel) share it; photos by a hash of their path",
        show_default=False,
    ),
]


def make_control(
    strength: float,
    keep_background: bool,
    keep_foreground: bool,
    threshold: float | None,
    feather: float | None,
) -> blend.Control:
    """The blend.Control of the command-line options (BadParameter on bad combinations)."""
    if keep_background and keep_foreground:
        raise typer.BadParameter(
            "--keep-background and --keep-foreground exclude each other",
            param_hint="--keep-foreground",
        )
    keep = "background" if keep_background else "foreground" if keep_foreground else None
    if keep is None and (threshold is not None or feather is not None):
        raise typer.BadParameter(
            "--threshold and --feather shape the depth mask: add --keep-background or "
            "--keep-foreground",
            param_hint="--threshold",
        )
    return blend.Control(strength=strength, keep=keep, threshold=threshold, feather=feather)
