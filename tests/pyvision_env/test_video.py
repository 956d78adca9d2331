"""Tests for `pyvision_env.media.video` and `pyvision_env.media.encode`: both backends, same expectations."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

pytest.importorskip("av", reason="writing test clips needs PyAV (pip install av)")

from pyvision_env.media.encode import write_video  # noqa: E402
from pyvision_env.media.video import (  # noqa: E402
    VideoError,
    VideoMeta,
    VideoReader,
    _make_backend,
    _PyAVBackend,
    open_video,
    probe_video,
)

N_FRAMES, FPS, WIDTH, HEIGHT, GOP = 40, 10.0, 64, 48, 8
TOLERANCE = 6  # per channel, after an H.264 round trip at crf 10


def index_colour(i: int) -> np.ndarray:
    """A colour that tells frame i apart from every other frame by at least 12 in some channel."""
    return np.array([10 + 6 * i, 250 - 6 * i, (37 * i) % 200 + 20], dtype=np.int16)


def colour_frames(n: int = N_FRAMES):
    for i in range(n):
        yield np.broadcast_to(index_colour(i).astype(np.uint8), (HEIGHT, WIDTH, 3)).copy()


def assert_is_frame(frame: np.ndarray, i: int) -> None:
    mean = frame.reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - index_colour(i)).max() <= TOLERANCE, f"frame {i}: mean colour {mean}, want {index_colour(i)}"


def backend_available(name: str) -> bool:
    return importlib.util.find_spec({"decord": "decord", "pyav": "av"}[name]) is not None


BACKEND_PARAMS = [
    pytest.param(
        name,
        id=name,
        marks=pytest.mark.skipif(not backend_available(name), reason=f"{name} is not importable"),
    )
    for name in ("decord", "pyav")
]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("video") / "colours.mp4"
    return write_video(path, colour_frames(), FPS, gop=GOP, crf=10)


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def reader(clip, backend) -> VideoReader:
    with open_video(clip, backend=backend) as vr:
        yield vr


class CountingBackend:
    """A real backend that records each `read` call."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.reads: list[list[int]] = []
        self.num_frames, self.fps = inner.num_frames, inner.fps
        self.width, self.height = inner.width, inner.height

    def read(self, indices):
        self.reads.append(list(indices))
        return self.inner.read(indices)

    def timestamps(self):
        return self.inner.timestamps()

    def close(self):
        self.inner.close()


# ---------------------------------------------------------------- metadata and content


def test_length_fps_and_shape(reader):
    assert len(reader) == N_FRAMES
    assert reader.get_avg_fps() == pytest.approx(FPS)
    assert (reader.width, reader.height) == (WIDTH, HEIGHT)
    assert reader.shape == (N_FRAMES, HEIGHT, WIDTH, 3)
    assert reader.duration == pytest.approx(N_FRAMES / FPS)


def test_frames_decode_to_their_own_colour_in_random_order(clip, backend):
    with open_video(clip, backend=backend, cache_bytes=0) as vr:
        for i in np.random.default_rng(0).permutation(N_FRAMES):
            frame = vr[int(i)].asnumpy()
            assert frame.dtype == np.uint8 and frame.shape == (HEIGHT, WIDTH, 3)
            assert_is_frame(frame, int(i))


def test_negative_indices_count_from_the_end(reader):
    assert np.array_equal(reader[-1].asnumpy(), reader[N_FRAMES - 1].asnumpy())
    assert np.array_equal(reader[-N_FRAMES].asnumpy(), reader[0].asnumpy())
    assert_is_frame(reader[-3].asnumpy(), N_FRAMES - 3)


@pytest.mark.parametrize("index", [N_FRAMES, N_FRAMES + 5, -N_FRAMES - 1])
def test_out_of_range_index_names_the_valid_range(reader, index):
    with pytest.raises(IndexError, match=f"valid: {-N_FRAMES} to {N_FRAMES - 1}"):
        reader[index]
    with pytest.raises(IndexError, match="out of range"):
        reader.get_batch([0, index])


def test_non_integer_index_is_a_type_error(reader):
    with pytest.raises(TypeError, match="get_batch"):
        reader[1.5]


def test_slices_are_batches(reader):
    batch = reader[2:12:3].asnumpy()
    assert batch.shape == (4, HEIGHT, WIDTH, 3)
    for frame, i in zip(batch, range(2, 12, 3)):
        assert_is_frame(frame, i)
    assert reader[-2:].asnumpy().shape[0] == 2


def test_get_batch_keeps_order_duplicates_and_negatives(reader):
    indices = [30, 3, -1, 3, 17, 0]
    batch = reader.get_batch(indices).asnumpy()
    assert batch.shape == (len(indices), HEIGHT, WIDTH, 3)
    for frame, i in zip(batch, indices):
        assert_is_frame(frame, i % N_FRAMES)
    assert np.array_equal(reader.get_batch(np.array(indices)).asnumpy(), batch)
    assert reader.get_batch([]).asnumpy().shape == (0, HEIGHT, WIDTH, 3)


def test_returned_frames_are_private_copies(reader):
    frame = reader[5].asnumpy()
    frame[:] = 0
    assert_is_frame(reader[5].asnumpy(), 5)


def test_timestamps_and_frames_at(reader):
    assert reader.get_frame_timestamp(1) == pytest.approx([0.1, 0.2], abs=1e-4)
    assert reader.get_frame_timestamp([0, -1]).shape == (2, 2)
    assert [reader.index_at(s) for s in (0.0, 0.15, 0.2, 3.95, 4.0)] == [0, 1, 2, 39, 39]
    frames = reader.frames_at([0.0, 1.05, 3.99])
    for frame, i in zip(frames, (0, 10, 39)):
        assert_is_frame(frame, i)
    assert_is_frame(reader.frame_at(2.0), 20)
    with pytest.raises(IndexError, match="valid: 0 to 4.000 s"):
        reader.frame_at(4.5)
    with pytest.raises(IndexError):
        reader.frames_at([-0.1])


def test_contact_sheet_and_show(reader, monkeypatch):
    sheet = reader.contact_sheet([0, 10, 20, 30, -1], cols=3)
    assert isinstance(sheet, Image.Image) and sheet.mode == "RGB"
    assert sheet.width >= 3 * WIDTH and sheet.height >= 2 * HEIGHT
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(plt.gcf()))
    reader.show([0, 1])
    assert len(shown) == 1
    plt.close("all")


def test_probe_video(clip, backend):
    meta = probe_video(clip, backend=backend)
    assert meta == VideoMeta(WIDTH, HEIGHT, N_FRAMES, pytest.approx(FPS), pytest.approx(N_FRAMES / FPS))


def test_default_backend_prefers_decord(clip):
    expected = "_DecordBackend" if backend_available("decord") else "_PyAVBackend"
    assert type(_make_backend(clip, None)).__name__ == expected
    with pytest.raises(ValueError, match="backend must be one of"):
        open_video(clip, backend="opencv")


# ---------------------------------------------------------------- cache


def counting_reader(clip: Path, backend: str, cache_bytes: int) -> tuple[VideoReader, CountingBackend]:
    counting = CountingBackend(_make_backend(clip, backend))
    return VideoReader(counting, clip, cache_bytes=cache_bytes), counting


def test_cache_hit_does_not_decode_again(clip, backend):
    vr, counting = counting_reader(clip, backend, cache_bytes=64 * 2**20)
    first = vr.get_batch([7, 3, 25]).asnumpy()
    assert counting.reads == [[3, 7, 25]]  # sorted: one forward pass
    again = vr.get_batch([25, 7, 3]).asnumpy()
    single = vr[-15].asnumpy()
    assert counting.reads == [[3, 7, 25]]
    assert np.array_equal(again, first[[2, 0, 1]]) and np.array_equal(single, first[2])
    vr.get_batch([3, 4])
    assert counting.reads[-1] == [4]
    info = vr.cache_info()
    assert (info.frames, info.misses) == (4, 4)


def test_cache_stays_within_its_byte_bound(clip, backend):
    frame_bytes = WIDTH * HEIGHT * 3
    vr, counting = counting_reader(clip, backend, cache_bytes=3 * frame_bytes + 10)
    for i in range(10):
        vr[i]
    info = vr.cache_info()
    assert info.frames == 3 and info.bytes == 3 * frame_bytes <= info.max_bytes
    reads = len(counting.reads)
    vr.get_batch([7, 8, 9])  # the three most recent: still cached
    assert len(counting.reads) == reads
    vr[0]  # evicted long ago
    assert len(counting.reads) == reads + 1


def test_zero_cache_bytes_disables_the_cache(clip, backend):
    vr, counting = counting_reader(clip, backend, cache_bytes=0)
    vr[1]
    vr[1]
    assert counting.reads == [[1], [1]] and vr.cache_info().frames == 0


# ---------------------------------------------------------------- broken files


def make_broken(kind: str, clip: Path, folder: Path) -> Path:
    path = folder / f"broken_{kind}.mp4"
    if kind == "zero_length":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = clip.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, size=20_000, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("kind", ["missing", "zero_length", "truncated", "random_bytes"])
def test_broken_files_raise_video_error_naming_the_file(clip, backend, kind, tmp_path):
    path = make_broken(kind, clip, tmp_path)
    with pytest.raises(VideoError, match=f"broken_{kind}.mp4"):
        open_video(path, backend=backend)
    with pytest.raises(VideoError, match=f"broken_{kind}.mp4"):
        probe_video(path, backend=backend)


def test_video_error_is_a_value_error():
    assert issubclass(VideoError, ValueError)


# ---------------------------------------------------------------- encoding


def test_write_video_rejects_bad_frames_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [], 10)
    with pytest.raises(ValueError, match="even width and height"):
        write_video(tmp_path / "odd.mp4", [np.zeros((11, 10, 3), np.uint8)], 10)
    with pytest.raises(ValueError, match="shape"):
        write_video(tmp_path / "mixed.mp4", [np.zeros((10, 10, 3), np.uint8), np.zeros((12, 10, 3), np.uint8)], 10)
    assert os.listdir(tmp_path) == []


def test_write_video_is_deterministic_and_uses_short_gops(tmp_path):
    a = write_video(tmp_path / "a.mp4", colour_frames(20), 10, gop=5)
    b = write_video(tmp_path / "b.mp4", colour_frames(20), 10, gop=5)
    assert a.read_bytes() == b.read_bytes()
    assert _PyAVBackend(a)._keys == [0, 5, 10, 15]
