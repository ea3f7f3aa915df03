"""The default video renderer on one core: speed beside a bare PyAV encode, and memory.

    .venv/bin/python bench/render.py [--quick] [--rounds N]

1. Seconds of video rendered per wall-clock second by `render_mp4` (frame drawing,
   encoding, muxing, the copy into the output file: everything) at 720p24 and 1080p24,
   8 s clips, beside a bare encode of the same number of pre-made frames with the very
   same stream settings (`add_video_stream`, `open_mp4`) in the same run. The pre-made
   frames are a 1 s clip of the same spec rendered and decoded before timing starts,
   cycled (24 distinct frames), so the encoder sees the same kind of picture.
   Targets: >= 2x real time at 720p24, >= 1x at 1080p24.
2. Peak memory (VmHWM of a child process) rendering 1080p24 clips of 4 s and 16 s:
   target < 300 MB and flat in duration (the 16 s peak within 10% of the 4 s one).

The process pins itself to one CPU before anything else (`sched_setaffinity`), and
the memory children inherit it.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from _common import print_table, verdict

from longops.kinds.videos.render import (
    RenderSpec,
    add_video_stream,
    open_mp4,
    render_mp4,
)

PROMPT = (
    "A lone astronaut rides a neon horse across the rings of Saturn at golden hour, "
    "cinematic, 35mm film grain, slow dolly shot"
)
FPS = 24
MEMORY_LIMIT_MB = 300.0
FLAT_TOLERANCE = 0.10


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    width: int
    height: int
    target: float | None  # x real time, None: informational row
    audio: bool = False


CASES = (
    Case("720p24", 1280, 720, 2.0),
    Case("1080p24", 1920, 1080, 1.0),
    Case("720p24 + audio", 1280, 720, None, audio=True),
    Case("9:16 720p24", 720, 1280, None),
)


def spec_for(case: Case, seconds: float) -> RenderSpec:
    return RenderSpec(
        prompt=PROMPT,
        seed=42,
        width=case.width,
        height=case.height,
        fps=FPS,
        duration_seconds=seconds,
        audio=case.audio,
    )


def time_render(spec: RenderSpec, directory: Path) -> float:
    """Wall seconds for render_mp4 into a real file opened "wb"."""
    path = directory / "render.mp4"
    start = time.perf_counter()
    with path.open("wb") as out:
        render_mp4(spec, out)
    return time.perf_counter() - start


def premade_frames(spec: RenderSpec) -> list[av.VideoFrame]:
    """One second of the same scene, rendered and decoded now, as yuv420p VideoFrames."""
    one_second = RenderSpec(
        prompt=spec.prompt,
        seed=spec.seed,
        width=spec.width,
        height=spec.height,
        fps=spec.fps,
        duration_seconds=1.0,
    )
    buffer = io.BytesIO()
    render_mp4(one_second, buffer)
    with av.open(io.BytesIO(buffer.getvalue()), "r") as container:
        decoded = container.decode(video=0)
        arrays = [np.asarray(f.to_ndarray(format="yuv420p"), np.uint8) for f in decoded]
    return [av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="yuv420p") for a in arrays]


def time_bare(spec: RenderSpec, frames: list[av.VideoFrame], directory: Path) -> float:
    """Wall seconds to encode and mux spec.frames pre-made frames, same settings, same file."""
    path = directory / "bare.mp4"
    start = time.perf_counter()
    with open_mp4(str(path)) as container:
        video = add_video_stream(container, spec.width, spec.height, spec.fps)
        for index in range(spec.frames):
            frame = frames[index % len(frames)]
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
    with path.open("rb") as encoded, (directory / "bare-copy.mp4").open("wb") as out:
        while chunk := encoded.read(1 << 20):  # render_mp4 copies its result out too
            out.write(chunk)
    return time.perf_counter() - start


def speed(quick: bool, rounds: int) -> bool:
    seconds = 4.0 if quick else 8.0
    rows: list[list[object]] = []
    met = True
    results: list[tuple[Case, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        directory = Path(tmp)
        for case in CASES:
            spec = spec_for(case, seconds)
            frames = premade_frames(spec)
            time_render(spec_for(case, 0.5), directory)  # warm caches, fonts, codecs
            renders, bares = [], []
            for _ in range(rounds):  # alternate, so both see the same machine state
                bares.append(time_bare(spec, frames, directory))
                renders.append(time_render(spec, directory))
            render_s, bare_s = min(renders), min(bares)
            size = (directory / "render.mp4").stat().st_size
            results.append((case, render_s, bare_s))
            rows.append(
                [
                    case.label,
                    f"{seconds:g} s",
                    spec.frames,
                    render_s,
                    seconds / render_s,
                    bare_s,
                    seconds / bare_s,
                    f"{bare_s / render_s:.2f}",
                    f"{(render_s - bare_s) / spec.frames * 1000:.2f}",
                    f"{size / 1e6:.1f}",
                ]
            )
            del frames
    print_table(
        f"Rendering speed on one core (best of {rounds}; x RT = seconds of video per wall second)",
        [
            "case",
            "clip",
            "frames",
            "render s",
            "render x RT",
            "bare s",
            "bare x RT",
            "render/bare",
            "extra ms/frame",
            "MB",
        ],
        rows,
    )
    print("\nTargets (whole render_mp4, frame drawing included):")
    for case, render_s, _ in results:
        if case.target is not None:
            met &= verdict(f"{case.label} x real time", seconds / render_s, case.target)
    return met


def child_peak_mb(seconds: float | None) -> float:
    """VmHWM of a child that renders 1080p24 for `seconds` (None: only imports)."""
    command = [sys.executable, __file__, "--memory-child", "0" if seconds is None else str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    match = re.search(r"VmHWM_KB=(\d+)", done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"memory child failed:\n{done.stdout}\n{done.stderr}")
    return int(match.group(1)) / 1024


def memory_child(seconds: float) -> None:
    if seconds > 0:
        spec = spec_for(CASES[1], seconds)
        with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
            time_render(spec, Path(tmp))
    status = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    print(f"VmHWM_KB={match.group(1) if match else 0}")


def memory(quick: bool) -> bool:
    short, long = (2.0, 8.0) if quick else (4.0, 16.0)
    floor = child_peak_mb(None)
    peaks = {s: child_peak_mb(s) for s in (short, long)}
    rows: list[list[object]] = [["imports only (python, numpy, av, PIL)", "-", floor]]
    rows += [[f"render 1080p24, {s:g} s clip", round(s * FPS), peaks[s]] for s in (short, long)]
    print_table("Peak memory of a child process (VmHWM)", ["case", "frames", "peak MB"], rows)
    print("\nTargets:")
    met = verdict(f"peak MB, 1080p {long:g} s", peaks[long], MEMORY_LIMIT_MB, at_least=False)
    growth = peaks[long] / peaks[short]
    met &= verdict(
        f"peak {long:g} s / peak {short:g} s (flat)",
        growth,
        1 + FLAT_TOLERANCE,
        at_least=False,
    )
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 s clips, one round")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3)")
    parser.add_argument("--memory-child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    if args.memory_child is not None:
        memory_child(args.memory_child)
        return 0
    rounds = args.rounds or (1 if args.quick else 3)
    print("=== bench/render.py: default video renderer ===")
    print(
        f"pinned to CPU {cpu} of {os.cpu_count()}; PyAV {av.__version__}, "
        f"FFmpeg {av.ffmpeg_version_info}; libx264 preset ultrafast, 1 thread, yuv420p"
    )
    sys.stdout.flush()
    met = speed(args.quick, rounds)
    met &= memory(args.quick)
    print(f"\nAll targets: {'MET' if met else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
