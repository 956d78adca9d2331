"""Loading an episode's media: image arrays, one `VideoMeta` per video, uniform initial frames."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pyvision_env.media.encode import write_video
from pyvision_env.media.episode import EpisodeMedia, load_media
from pyvision_env.media.video import VideoError, VideoMeta


@pytest.fixture(scope="module")
def ramp(tmp_path_factory):
    """A 40-frame 10 fps clip whose frame i has red level 5*i."""
    path = tmp_path_factory.mktemp("media") / "ramp.mp4"
    write_video(path, [np.full((48, 64, 3), (5 * i, 0, 0), dtype=np.uint8) for i in range(40)],
                fps=10)
    return path


def test_images_become_fresh_rgb_arrays_in_clue_order(tmp_path):
    Image.new("L", (8, 6), 200).save(tmp_path / "gray.png")
    picture = Image.new("RGB", (4, 2), (1, 2, 3))
    media = load_media([tmp_path / "gray.png", picture], [])
    assert [a.shape for a in media.images] == [(6, 8, 3), (2, 4, 3)]
    assert media.images[1][0, 0].tolist() == [1, 2, 3] and media.videos == () == media.frames


def test_video_gives_its_metadata_and_no_frames_by_default(ramp):
    media = load_media([], [ramp])
    assert media == EpisodeMedia(videos=(VideoMeta(64, 48, 40, pytest.approx(10.0),
                                                   pytest.approx(4.0)),))


def test_initial_frames_are_segment_centres_with_their_times(ramp):
    frames = load_media([], [ramp], initial_frames=4).frames
    assert [f.index for f in frames] == [5, 15, 25, 35]
    assert [f.seconds for f in frames] == pytest.approx([0.5, 1.5, 2.5, 3.5])
    reds = [int(f.image[..., 0].mean()) for f in frames]
    assert reds == sorted(reds) and abs(reds[0] - 25) <= 3
    assert len(load_media([], [ramp], initial_frames=100).frames) == 40  # never more than exist


def test_missing_or_broken_files_name_the_file(tmp_path, ramp):
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        load_media([tmp_path / "nothing.png"], [])
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(ramp.read_bytes()[:200])
    with pytest.raises(VideoError, match="cut.mp4"):
        load_media([], [cut])
