"""`dgn deblur-video`: one video in, one deblurred video out, audio and subtitles kept.

    dgn deblur-video clip.mp4 -o clip_sharp.mp4
    dgn deblur-video clip.mov -o sharp.mov --start 1:05 --duration 10 --compare --save-depth d.mp4
    dgn deblur-video long.mp4 -o sharp.mp4 --resume        # after Ctrl-C or a crash

The library (dgn_cli.video.pipeline) does the work and reports progress through a callback;
this module parses options, shows the progress bar (frames, frames/s, ETA) and prints the summary.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dgn_cli.commands.common import (
    AlignMode,
    AlignOpt,
    Backend,
    BackendOpt,
    EngineOptions,
    JsonOpt,
    OverwriteOpt,
    QuietOpt,
    VideoDepth,
    VideoDepthOpt,
    cli_errors,
    engine_options,
    err_console,
    fail,
    open_engine,
    print_json,
    run_on_local_gpus,
)
from dgn_cli.commands.deblur_options import (
    FeatherOpt,
    KeepBackgroundOpt,
    KeepForegroundOpt,
    ShardOpt,
    StrengthOpt,
    ThresholdOpt,
    make_control,
)
from dgn_cli.commands.progress import progress_bar
from dgn_cli.engine import Engine
from dgn_cli.shard import parse_shard
from dgn_cli.video.codecs import CONTAINERS, choose_encoding
from dgn_cli.video.ffmpeg import finished_segments
from dgn_cli.video.pipeline import (
    DEFAULT_SEGMENT_FRAMES,
    VideoOptions,
    deblur_video,
    expected_frames,
    merge_video,
    open_input,
    prepare_outputs,
    work_dir,
)
from dgn_cli.video.scenes import DEFAULT_SCENE_THRESHOLD


class VideoModel(StrEnum):
    video = "video"
    image = "image"


def parse_time(text: str | None, option: str) -> float | None:
    """Seconds ("12.5") or [HH:]MM:SS[.ms] ("1:05", "00:01:05.5") -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)", text.strip())
    if not m:
        raise typer.BadParameter(
            f"{text!r} is not a time; use seconds or HH:MM:SS.ms", param_hint=option
        )
    parts = [float(p) for p in m.groups() if p is not None]
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


def _engine(
    model: VideoModel,
    opts: EngineOptions,
    quiet: bool,
    backend: Backend,
    align: AlignMode,
    video_depth: VideoDepth,
):
    cfg = opts.config(kind=model.value, align=str(align), video_depth=str(video_depth))
    engine = open_engine(cfg, quiet=quiet, backend=backend)
    if model is VideoModel.video and engine.dgn.config.frames == 1 and not quiet:
        name = engine.config.weights
        err_console.print(f"[yellow]note[/] {name} is an image model: one frame at a time")
    return engine


def _default_name(src: Path) -> str:
    suffix = src.suffix if src.suffix.lower() in CONTAINERS else ".mp4"
    return f"{src.stem}_sharp{suffix}"


def _output_path(src: Path, output: str | None) -> Path:
    """-o FILE as given; -o FOLDER (existing, or written with a trailing slash) -> the
    default name inside it; no -o -> the default name beside the input."""
    if output is None:
        return src.with_name(_default_name(src))
    if Path(output).is_dir() or output.endswith(("/", os.sep)):
        Path(output).mkdir(parents=True, exist_ok=True)
        return Path(output) / _default_name(src)
    return Path(output)


def register(app: typer.Typer) -> None:
    @app.command("deblur-video")
    @cli_errors
    @engine_options
    def deblur_video_cmd(
        input: Annotated[Path, typer.Argument(help="the video to deblur", show_default=False)],
        output: Annotated[
            str | None,  # a str: Path() would drop the trailing slash of "-o outdir/"
            typer.Option(
                "--output",
                "-o",
                help="output video, or a folder for <input>_sharp.<ext> in it "
                "(default: beside the input)",
            ),
        ] = None,
        model: Annotated[
            VideoModel,
            typer.Option(
                "--model", help="video: frames t-2..t+2 restore frame t; image: frame by frame"
            ),
        ] = VideoModel.video,
        engine_opts: EngineOptions = None,  # --weights, --device, --tile, ... (common.py)
        codec: Annotated[
            str | None,
            typer.Option(
                "--codec",
                help="ffmpeg video encoder (default from the output's container: "
                "mp4/mov/mkv libx264, webm libvpx-vp9, avi mpeg4; or libx265, ...)",
                show_default=False,
            ),
        ] = None,
        crf: Annotated[
            int | None,
            typer.Option(
                "--crf",
                min=0,
                max=63,
                help="quality, lower = better (x264 18, x265 20, VP9 30; mpeg4: -q:v 3)",
                show_default=False,
            ),
        ] = None,
        preset: Annotated[
            str | None, typer.Option("--preset", help="encoder preset (x264/x265: medium)")
        ] = None,
        pix_fmt: Annotated[
            str | None,
            typer.Option("--pix-fmt", help="yuv420p (default), or e.g. yuv420p10le for 10-bit"),
        ] = None,
        start: Annotated[
            str | None, typer.Option("--start", help="start at this time (s or HH:MM:SS.ms)")
        ] = None,
        duration: Annotated[
            str | None, typer.Option("--duration", help="process only this long (s or MM:SS)")
        ] = None,
        compare: Annotated[
            bool,
            typer.Option(
                "--compare",
                help="also write <output>.compare.<ext>: input | output (input | mask | output "
                "when a depth mask is used)",
            ),
        ] = False,
        strength: StrengthOpt = 1.0,
        keep_background: KeepBackgroundOpt = False,
        keep_foreground: KeepForegroundOpt = False,
        threshold: ThresholdOpt = None,
        feather: FeatherOpt = None,
        save_depth: Annotated[
            Path | None,
            typer.Option("--save-depth", help="also write the depth the DGN used as a video"),
        ] = None,
        resume: Annotated[
            bool, typer.Option("--resume", help="continue an interrupted run of this command")
        ] = False,
        segment_frames: Annotated[
            int,
            typer.Option(
                "--segment-frames", min=1, help="frames per finished segment (--resume unit)"
            ),
        ] = DEFAULT_SEGMENT_FRAMES,
        scene_threshold: Annotated[
            float,
            typer.Option(
                "--scene-threshold",
                min=0.0,
                max=1.0,
                help="scene-cut sensitivity: a frame this different from the previous one "
                "(0-1, adaptive) starts a new shot and the five-frame window stays inside "
                "each shot; 0 = no cut detection",
            ),
        ] = DEFAULT_SCENE_THRESHOLD,
        align: AlignOpt = AlignMode.auto,
        video_depth: VideoDepthOpt = VideoDepth.auto,
        backend: BackendOpt = Backend.torch,
        shard: ShardOpt = None,
        merge: Annotated[
            bool,
            typer.Option(
                "--merge",
                help="join the segments the --shard runs left into the output (no model runs)",
            ),
        ] = False,
        overwrite: OverwriteOpt = False,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Deblur a video with the five-frame sliding window; same frames, rate and duration,
        audio copied, subtitles kept where the container allows."""
        t_start, t_len = parse_time(start, "--start"), parse_time(duration, "--duration")
        if t_len is not None and t_len <= 0:
            raise typer.BadParameter("must be more than 0", param_hint="--duration")
        control = make_control(strength, keep_background, keep_foreground, threshold, feather)
        part = parse_shard(shard)
        if merge and part is not None:
            raise typer.BadParameter("--merge joins all shards; drop --shard", param_hint="--merge")
        if not merge:
            run_on_local_gpus(engine_opts.device, part)  # --device cuda:all: a worker per GPU
        output = _output_path(input, output)
        opts = VideoOptions(
            control=control,
            encode=choose_encoding(output, codec, crf, preset, pix_fmt),
            start=t_start,
            duration=t_len,
            compare=output.with_name(f"{output.stem}.compare{output.suffix}") if compare else None,
            depth=save_depth,
            segment_frames=segment_frames,
            resume=resume,
            overwrite=overwrite,
            scene_threshold=scene_threshold,
            shard=part,
        )
        if merge:
            info, _ = open_input(input, opts)
            result = merge_video(input, output, opts, info=info)
            if as_json:
                print_json({"command": "deblur-video", "merge": True, **result.as_dict()})
            if not quiet:
                err_console.print(f"merged {result.output}: {result.frames} frames", soft_wrap=True)
            return
        info, notes = open_input(input, opts)  # a bad input fails before any model loads
        prepare_outputs(input, output, opts, info, [])  # so does a bad output or option
        engine: Engine = _engine(model, engine_opts, quiet, backend, align, video_depth)
        with progress_bar(quiet=quiet, fps=True) as bar:
            task = bar.add_task(f"[bold]{escape(input.name)}", total=expected_frames(info, opts))

            def on_frame(done: int, total: int | None) -> None:
                bar.update(task, completed=done, total=max(total or 0, done) or None)

            previous = _on_sigterm(_terminate)  # `kill` cleans up like Ctrl-C
            try:
                result = deblur_video(engine, input, output, opts, on_frame, info=info, notes=notes)
            except KeyboardInterrupt:
                bar.stop()
                raise fail(_interrupted(output, opts), code=130) from None
            finally:
                _on_sigterm(previous)
        if as_json:
            print_json({"command": "deblur-video", **engine.info(), **result.as_dict()})
        if result.status == "shard-done":
            if not quiet:
                k, n = part
                err_console.print(
                    f"shard {k}/{n} done; {len(result.missing_segments)} segment(s) of other "
                    f"shards still missing: the last shard to finish, or dgn deblur-video "
                    f"{escape(str(input))} -o {escape(str(output))} --merge, writes the output",
                    soft_wrap=True,
                )
            return
        if not quiet:
            for note in result.notes:
                err_console.print(f"[yellow]note[/] {escape(note)}", soft_wrap=True)
            a = result.audio
            n_audio = len(a.get("audio_streams", []))
            audio = (
                "no audio"
                if not n_audio
                else f"{n_audio} audio stream(s) "
                + ("copied" if a["audio"] == "copy" else f"transcoded to {a['audio']}")
            )
            al = result.alignment or {}
            if al.get("frames_aligned") or al.get("neighbours_replaced"):
                err_console.print(
                    f"fast motion (up to {al['largest_motion_px']:.0f} px between frames): "
                    f"neighbours warped onto {al['frames_aligned']} frame(s) "
                    f"({al['trusted_fraction']:.0%} of their pixels used), "
                    f"{al['neighbours_replaced']} with no match replaced by the frame itself"
                )
            if result.depth_sources is not None:
                src = result.depth_sources
                err_console.print(
                    f"initial depth from motion parallax on {src['parallax']} frame(s), from "
                    f"the depth model on {src['estimator']} (no camera translation there)"
                )
            if result.scene_cuts:
                cuts = ", ".join(str(c["frame"]) for c in result.scene_cuts)
                err_console.print(f"scene cuts before frame(s) {cuts}: each shot deblurred apart")
            err_console.print(
                f"wrote {result.output}: {result.frames} frames at {result.fps:.3f} fps "
                f"({result.duration:.2f} s), {audio}; {result.frames_per_second:.2f} frames/s, "
                f"{result.seconds:.1f} s",
                soft_wrap=True,
            )


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def _on_sigterm(handler):
    """Install a SIGTERM handler (main thread only; elsewhere Python cannot) -> the old one."""
    if threading.current_thread() is not threading.main_thread() or handler is None:
        return None
    return signal.signal(signal.SIGTERM, handler)


def _interrupted(output: Path, opts: VideoOptions) -> str:
    work = work_dir(output)
    tracks = ["main", *(["compare"] if opts.compare else []), *(["depth"] if opts.depth else [])]
    done = min(finished_segments(work, t) for t in tracks) if work.exists() else 0
    text = f"interrupted; nothing was written to {output}"
    if done:
        text += (
            f"; {done * opts.segment_frames} finished frames are kept in {work}: "
            "rerun with --resume to continue"
        )
    return text
