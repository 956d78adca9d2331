"""Tests for visual-token accounting and image loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pyvision_env.media import (
    PYVISION_RL_RULE,
    VisualTokenRule,
    count_visual_tokens,
    load_image,
    smart_resize,
    to_array,
)


# ---------------------------------------------------------------- smart_resize

# Worked by hand with factor 28, min_pixels 3136, max_pixels 12,845,056 unless noted:
# 224x224: already multiples of 28, 50,176 px in range -> unchanged, 8*8 = 64 tokens.
# 1000x1000: round(1000/28) = round(35.71) = 36 -> 1008; 1008^2 in range -> 36*36 = 1296 tokens.
# 100x300: round(3.57) = 4 -> 112, round(10.71) = 11 -> 308 -> 4*11 = 44 tokens.
# 28x28: 784 px < 3136 -> beta = sqrt(3136/784) = 2 -> ceil(56/28)*28 = 56 -> 56x56, 4 tokens.
# 10x10: rounds to 0, floored at 28 -> 784 < 3136 -> beta = sqrt(3136/100) = 5.6,
#        10*5.6 = 56 -> 56x56, 4 tokens.
# 20000x10000: round -> 20020x10004 > max -> beta = sqrt(2e8/12845056) = 3.9459;
#        20000/beta/28 = 181.02 -> 181*28 = 5068; 10000/beta/28 = 90.51 -> 90*28 = 2520;
#        181*90 = 16290 tokens.
# PyVision-RL rule (max 2,000,000), 2000x1500: round -> 1988x1512 = 3,005,856 > max ->
#        beta = sqrt(3e6/2e6) = 1.2247; 2000/beta/28 = 58.32 -> 1624; 1500/beta/28 = 43.74 -> 1204;
#        58*43 = 2494 tokens.
@pytest.mark.parametrize(
    ("height", "width", "rule", "size", "tokens"),
    [
        pytest.param(224, 224, VisualTokenRule(), (224, 224), 64, id="224-unchanged"),
        pytest.param(1000, 1000, VisualTokenRule(), (1008, 1008), 1296, id="1000-rounded-up"),
        pytest.param(100, 300, VisualTokenRule(), (112, 308), 44, id="100x300-rounded"),
        pytest.param(28, 28, VisualTokenRule(), (56, 56), 4, id="28-below-min"),
        pytest.param(10, 10, VisualTokenRule(), (56, 56), 4, id="tiny-10px"),
        pytest.param(20000, 10000, VisualTokenRule(), (5068, 2520), 16290, id="huge-above-max"),
        pytest.param(2000, 1500, PYVISION_RL_RULE, (1624, 1204), 2494, id="pyvision-rl-budget"),
    ],
)
def test_smart_resize_and_token_count(
    height: int, width: int, rule: VisualTokenRule, size: tuple[int, int], tokens: int
) -> None:
    assert smart_resize(height, width, rule) == size
    assert count_visual_tokens(height, width, rule) == tokens


@pytest.mark.parametrize(("height", "width"), [(500, 375), (37, 4000), (4000, 4000), (13, 1111)])
def test_smart_resize_invariants(height: int, width: int) -> None:
    rule = VisualTokenRule()
    h_bar, w_bar = smart_resize(height, width, rule)
    assert h_bar % 28 == 0 and w_bar % 28 == 0
    assert rule.min_pixels <= h_bar * w_bar <= rule.max_pixels


def test_aspect_ratio_limit() -> None:
    assert smart_resize(10, 2000) == (28, 1988)  # ratio exactly 200 is allowed
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2010)
    # The count never raises: past the limit the long side is cut to 200 x the short side.
    assert count_visual_tokens(3000, 14) == count_visual_tokens(2800, 14)


def test_non_positive_sides_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 100)


def test_rule_defaults_match_qwen_vl_utils() -> None:
    rule = VisualTokenRule()
    assert (rule.factor, rule.min_pixels, rule.max_pixels) == (28, 3136, 12_845_056)
    assert (PYVISION_RL_RULE.min_pixels, PYVISION_RL_RULE.max_pixels) == (3136, 2_000_000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"factor": 0}, "factor", id="zero-factor"),
        pytest.param({"min_pixels": 0}, "min_pixels", id="zero-min"),
        pytest.param({"min_pixels": 5000, "max_pixels": 4000}, "raise max_pixels", id="max-below-min"),
    ],
)
def test_rule_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VisualTokenRule(**kwargs)


# ---------------------------------------------------------------- images


def save(tmp_path: Path, name: str, image: Image.Image) -> Path:
    path = tmp_path / name
    image.save(path)
    return path


def test_load_rgb_png(tmp_path: Path) -> None:
    path = save(tmp_path, "rgb.png", Image.new("RGB", (4, 3), (10, 20, 30)))
    image = load_image(path)
    assert (image.mode, image.size, image.getpixel((0, 0))) == ("RGB", (4, 3), (10, 20, 30))
    assert load_image(str(path)).size == (4, 3)


def test_load_drops_alpha(tmp_path: Path) -> None:
    path = save(tmp_path, "rgba.png", Image.new("RGBA", (2, 2), (200, 100, 50, 0)))
    image = load_image(path)
    assert (image.mode, image.getpixel((1, 1))) == ("RGB", (200, 100, 50))


def test_load_grayscale_and_la(tmp_path: Path) -> None:
    gray = load_image(save(tmp_path, "l.png", Image.new("L", (2, 2), 77)))
    la = load_image(save(tmp_path, "la.png", Image.new("LA", (2, 2), (90, 10))))
    assert gray.getpixel((0, 0)) == (77, 77, 77)
    assert la.getpixel((0, 0)) == (90, 90, 90)


def test_load_palette_with_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (3, 3), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    image = load_image(save(tmp_path, "p.png", palette))
    assert (image.mode, image.getpixel((2, 2))) == ("RGB", (255, 0, 0))


def test_load_sixteen_bit_grayscale_scales_not_clips(tmp_path: Path) -> None:
    values = np.array([[0, 65535], [257 * 100, 257 * 200]], dtype=np.uint16)
    path = save(tmp_path, "g16.png", Image.fromarray(values))
    array = to_array(path)
    assert array[:, :, 0].tolist() == [[0, 255], [100, 200]]


def test_load_float_image_in_unit_range() -> None:
    image = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32))
    assert to_array(image)[:, :, 1].tolist() == [[0, 128], [255, 64]]


def test_load_one_bit_and_cmyk(tmp_path: Path) -> None:
    assert load_image(Image.new("1", (2, 2), 1)).getpixel((0, 0)) == (255, 255, 255)
    cmyk = load_image(save(tmp_path, "c.jpg", Image.new("CMYK", (8, 8), (0, 0, 0, 0))))
    assert cmyk.mode == "RGB"


def test_load_pil_image_returns_a_copy() -> None:
    original = Image.new("RGB", (2, 2), (1, 2, 3))
    loaded = load_image(original)
    loaded.putpixel((0, 0), (9, 9, 9))
    assert original.getpixel((0, 0)) == (1, 2, 3)


def test_missing_image_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "gone.png"
    with pytest.raises(FileNotFoundError, match="gone.png"):
        load_image(missing)


def test_unreadable_image_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(b"definitely not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*fake\.png"):
        load_image(path)


def test_to_array_is_fresh_contiguous_uint8(tmp_path: Path) -> None:
    image = Image.new("RGB", (5, 3), (4, 5, 6))
    array = to_array(image)
    assert (array.shape, array.dtype, array.flags["C_CONTIGUOUS"]) == ((3, 5, 3), np.uint8, True)
    assert array.flags["WRITEABLE"]
    array[0, 0] = 0
    assert to_array(image)[0, 0].tolist() == [4, 5, 6]


def test_to_array_converts_other_modes() -> None:
    array = to_array(Image.new("L", (2, 1), 9))
    assert array.shape == (1, 2, 3)
    assert array[0, 0].tolist() == [9, 9, 9]
