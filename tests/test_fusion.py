"""Windowing, channel order, the 256 model frame and shard round trips."""

import numpy as np
import pytest

from hnseg.errors import InputError
from hnseg.fusion import (
    FrameGeometry,
    area_weights,
    blend_mri,
    compose,
    fuse_volume,
    read_shard,
    to_model_frame,
    window_ct,
    window_mri,
    window_pet,
    write_shard,
)


def test_ct_window_at_known_hu():
    hu = np.array([-1000, -160, -159, 40, 239, 240, 3000], dtype=np.float32)
    out = window_ct(hu, level=40, width=400)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, round(255 / 400), 128, round(399 * 255 / 400), 255, 255]


def test_pet_window_at_known_suv():
    suv = np.array([-0.5, 0.0, 1.5, 3.0, 6.0, 25.0])
    assert window_pet(suv, (0.0, 6.0)).tolist() == [0, 0, 64, 128, 255, 255]


def test_mri_window_uses_its_own_percentiles_inside_the_field_of_view():
    rng = np.random.default_rng(0)
    mr = np.zeros((4, 20, 20))
    mr[:, 5:15, 5:15] = rng.uniform(100, 1100, size=(4, 10, 10))
    out = window_mri(mr, (0.0, 99.5))
    inside = mr > 0
    assert out[~inside].max() == 0  # outside the MR field of view stays 0
    hi = np.percentile(mr[inside], 99.5)
    assert out[mr >= hi].min() == 255
    assert out[inside].min() == 0  # the 0th percentile maps to 0
    lo = mr[inside].min()
    k = np.argmin(np.abs(mr - (lo + hi) / 2) + (~inside) * 1e9)
    assert abs(int(out.ravel()[k]) - 128) <= 1


def test_t1_and_t2_are_brought_to_one_range_then_averaged():
    t1 = np.full((2, 4, 4), 10.0)
    t2 = np.full((2, 4, 4), 5000.0)
    t1[0, 0, 0], t2[0, 0, 0] = 20.0, 9000.0  # each bright in one voxel
    blend = blend_mri(t1, t2, (0.0, 100.0))
    assert blend[0, 0, 0] == 255 and blend[1, 1, 1] == 0
    t1[1, 1, 1] = 20.0  # bright in T1 only: half way
    assert blend_mri(t1, t2, (0.0, 100.0))[1, 1, 1] == 128


def test_channel_order_of_both_fusions():
    ct = np.full((1, 2, 2), 40.0)  # -> 128
    pet = np.full((1, 2, 2), 6.0)  # -> 255
    t1 = np.ones((1, 2, 2))
    t1[0, 0, 0] = 2.0  # brightest voxel of T1 and T2 -> 255; the others sit at the 0th percentile -> 0
    t2 = t1 * 300
    rgb = fuse_volume("ct", ct, {"level": 40, "width": 400})
    assert rgb.shape == (1, 2, 2, 3) and (rgb == 128).all()
    mm = fuse_volume(
        "multimodal",
        ct,
        {"level": 40, "width": 400},
        pet_suv=pet,
        suv_range=(0.0, 6.0),
        t1=t1,
        t2=t2,
        mri_percentiles=(0.0, 100.0),
    )
    assert mm[0, 0, 0].tolist() == [128, 255, 255]
    assert mm[0, 1, 1].tolist() == [128, 255, 0]
    with pytest.raises(InputError, match="multimodal fusion needs PET"):
        fuse_volume("multimodal", ct, {"level": 40, "width": 400})
    with pytest.raises(InputError, match="unknown fusion"):
        compose("petonly", ct)


def test_512_slice_becomes_exact_2x2_means():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(512, 512, 3)).astype(np.uint8)
    frame, geometry = to_model_frame(image)
    assert frame.shape == (256, 256, 3) and (geometry.new_height, geometry.new_width) == (256, 256)
    means = image.astype(float).reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))
    assert np.array_equal(frame, np.rint(means).astype(np.uint8))


def test_400x512_slice_pads_at_the_bottom():
    image = np.full((400, 512), 200, dtype=np.uint8)
    frame, geometry = to_model_frame(image)
    assert (geometry.new_height, geometry.new_width) == (200, 256)
    assert (frame[:200] == 200).all() and (frame[200:] == 0).all()


def test_upscaling_copies_pixels_and_area_weights_sum_to_one():
    image = np.arange(128 * 128, dtype=np.int64).reshape(128, 128) % 251
    frame, _ = to_model_frame(image.astype(np.uint8))
    assert np.array_equal(frame, np.repeat(np.repeat(image, 2, 0), 2, 1).astype(np.uint8))
    for n_in, n_out in ((512, 256), (300, 256), (128, 256), (181, 256)):
        assert np.allclose(area_weights(n_in, n_out).sum(axis=1), 1.0)


@pytest.mark.parametrize("shape", [(512, 512), (400, 512), (128, 128), (181, 97), (333, 512)])
def test_boxes_and_masks_map_to_the_frame_and_back_within_one_pixel(shape):
    geometry = FrameGeometry(*shape)
    rng = np.random.default_rng(sum(shape))
    slack = int(np.ceil(1 / geometry.scale)) + 1  # one frame pixel in CT pixels, plus a partly covered CT pixel
    for _ in range(50):
        # frame -> CT -> frame: exact to one pixel
        fx0, fx1 = sorted(rng.integers(0, geometry.new_width, 2))
        fy0, fy1 = sorted(rng.integers(0, geometry.new_height, 2))
        again = geometry.box_to_frame(geometry.box_from_frame((fx0, fy0, fx1, fy1)))
        assert np.all(np.abs(np.subtract(again, (fx0, fy0, fx1, fy1))) <= 1)
        # CT -> frame -> CT: within that slack, and never losing the target
        x0, x1 = sorted(rng.integers(0, shape[1], 2))
        y0, y1 = sorted(rng.integers(0, shape[0], 2))
        back = geometry.box_from_frame(geometry.box_to_frame((x0, y0, x1, y1)))
        assert np.all(np.abs(np.subtract(back, (x0, y0, x1, y1))) <= slack)
        assert back[0] <= x0 and back[1] <= y0 and back[2] >= x1 and back[3] >= y1
    mask = np.zeros(shape, dtype=np.uint8)
    mask[shape[0] // 4 : shape[0] // 2, shape[1] // 3 : shape[1] // 2] = 1
    back = geometry.mask_from_frame(geometry.mask_to_frame(mask))
    # every disagreement lies within one pixel of the mask's border
    from scipy import ndimage

    border = ndimage.binary_dilation(mask, iterations=1) & ~ndimage.binary_erosion(mask, iterations=1)
    assert not np.any((back != mask) & ~border)


def test_shard_round_trip(tmp_path):
    rgb = np.zeros((5, 128, 96, 3), dtype=np.uint8)
    rgb[2, 10:20, 30:40] = 255
    instances = np.zeros((5, 128, 96), dtype=np.uint16)
    instances[2, 10:20, 30:40] = 3
    info = write_shard(tmp_path / "p.npz", rgb, instances, [2], spacing_xyz=(1.0, 1.0, 3.0), meta={"fusion": "ct"})
    images, inst, slices, geometry = read_shard(tmp_path / "p.npz")
    assert images.shape == (1, 256, 256, 3) and inst.shape == (1, 256, 256) and slices.tolist() == [2]
    assert geometry == info and geometry["new_height"] == 256 and geometry["new_width"] == 192
    assert set(np.unique(inst)) == {0, 3}
    assert (images[0][inst[0] == 3] == 255).all()
