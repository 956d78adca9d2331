"""Frame-fetch benchmark: `VideoReader` (decord backend) against raw `decord.VideoReader`.

Random access of 1, 8 and 32 frames on the same file in the same run (median over repeats,
fresh random indices each repeat, our cache off so both decode), the PyAV backend for
reference, and a repeated fetch served from our cache.

    python benchmarks/frame_fetch.py                 # generates a 640x360, 60 s, 30 fps clip
    python benchmarks/frame_fetch.py --video my.mp4 --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from pyvision_env.media.encode import write_video
from pyvision_env.media.video import open_video

SIZES = (1, 8, 32)


def make_clip(path: Path, seconds: float = 60.0, fps: float = 30.0, width: int = 640, height: int = 360) -> Path:
    """A moving-gradient test clip with a keyframe every 30 frames."""
    ys, xs = np.mgrid[0:height, 0:width]

    def frames():
        for i in range(int(seconds * fps)):
            frame = np.empty((height, width, 3), np.uint8)
            frame[..., 0] = (xs + 3 * i) % 256
            frame[..., 1] = (ys + 2 * i) % 256
            frame[..., 2] = (xs + ys + i) % 256
            yield frame

    return write_video(path, frames(), fps, gop=30)


def median_seconds(fetch: Callable[[list[int]], object], draws: list[list[int]]) -> float:
    times = []
    for indices in draws:
        start = time.perf_counter()
        fetch(indices)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="a video file (default: generate one)")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import decord

    with tempfile.TemporaryDirectory() as tmp:
        path = args.video or make_clip(Path(tmp) / "bench.mp4")
        raw = decord.VideoReader(str(path))
        ours = open_video(path, backend="decord", cache_bytes=0)
        pyav = open_video(path, backend="pyav", cache_bytes=0)
        n = len(raw)
        print(f"video: {path.name}, {n} frames, {ours.width}x{ours.height}, {ours.get_avg_fps():.2f} fps")
        rng = np.random.default_rng(0)
        print(f"\nrandom access, median of {args.repeats} (ms)")
        print(f"{'frames':>6} {'raw decord':>11} {'VideoReader':>12} {'ratio':>6} {'pyav backend':>13}")
        for size in SIZES:
            draws = [sorted(rng.choice(n, size=size, replace=False).tolist()) for _ in range(args.repeats)]
            t_raw = median_seconds(lambda idx: raw.get_batch(idx).asnumpy(), draws)
            t_ours = median_seconds(lambda idx: ours.get_batch(idx).asnumpy(), draws)
            t_pyav = median_seconds(lambda idx: pyav.get_batch(idx).asnumpy(), draws)
            print(f"{size:>6} {t_raw * 1e3:>11.2f} {t_ours * 1e3:>12.2f} {t_ours / t_raw:>6.2f} {t_pyav * 1e3:>13.2f}")

        cached = open_video(path, backend="decord")
        print(f"\nrepeated fetch from the cache, median of {args.repeats} (µs)")
        print(f"{'frames':>6} {'get_batch':>10} {'vr[i]':>8}")
        for size in SIZES:
            indices = sorted(rng.choice(n, size=size, replace=False).tolist())
            cached.get_batch(indices)
            t_batch = median_seconds(lambda idx: cached.get_batch(idx).asnumpy(), [indices] * args.repeats)
            t_item = median_seconds(lambda idx: cached[idx[0]].asnumpy(), [indices] * args.repeats)
            print(f"{size:>6} {t_batch * 1e6:>10.0f} {t_item * 1e6:>8.0f}")
        print(f"\ncache: {cached.cache_info()}")


if __name__ == "__main__":
    main()
