"""Targets and box prompts: instances, tight and perturbed boxes, seeding, the nnU-Net box channel."""

import numpy as np
import pytest

from hnseg.prompts import (
    make_prompts,
    read_prompts,
    render_box_channel,
    split_instances,
    tight_box,
    write_prompts,
)

SPACING = (0.8, 1.2, 3.0)


def phantom():
    labels = np.zeros((12, 120, 140), dtype=np.uint8)
    labels[2:9, 40:70, 50:85] = 1  # GTV-T
    labels[3:6, 20:28, 100:108] = 2  # node A
    labels[5:8, 90:99, 20:30] = 2  # node B
    labels[8, 100, 120] = 2  # node C: touches node nothing, one voxel
    labels[9, 101, 121] = 2  # diagonal neighbour of C in 3D: same instance with 26-connectivity
    return labels


def test_nodes_are_split_into_26_connected_instances():
    instances, targets = split_instances(phantom(), 26)
    assert targets == {1: "GTV-T", 2: "GTV-N", 3: "GTV-N", 4: "GTV-N"}
    assert instances[8, 100, 120] == instances[9, 101, 121]
    six, targets6 = split_instances(phantom(), 6)
    assert len(targets6) == 5 and six[8, 100, 120] != six[9, 101, 121]


def test_boxes_contain_their_instance_and_margins_stay_within_range():
    labels = phantom()
    prompts = make_prompts(labels, SPACING, "HN001", seed=7)
    instances, _ = split_instances(labels)
    assert {(p.slice, p.instance) for p in prompts} == {
        (z, int(i)) for z in range(labels.shape[0]) for i in np.unique(instances[z]) if i
    }
    n_clipped = n_floored = 0
    for p in prompts:
        assert p.tight == tight_box(instances[p.slice] == p.instance)
        x0, y0, x1, y1 = p.box
        tx0, ty0, tx1, ty1 = p.tight
        assert x0 <= tx0 and y0 <= ty0 and x1 >= tx1 and y1 >= ty1
        assert 0 <= x0 and 0 <= y0 and x1 < labels.shape[2] and y1 < labels.shape[1]
        # left, top, right, bottom: pushed out (mm), the axis' pixel size, and whether the side hit the image edge
        pushed_mm = ((tx0 - x0) * SPACING[0], (ty0 - y0) * SPACING[1], (x1 - tx1) * SPACING[0], (y1 - ty1) * SPACING[1])
        pixel_mm = (SPACING[0], SPACING[1], SPACING[0], SPACING[1])
        at_edge = (x0 == 0, y0 == 0, x1 == labels.shape[2] - 1, y1 == labels.shape[1] - 1)
        for pushed, drawn, pixel, clipped in zip(pushed_mm, p.margins_mm, pixel_mm, at_edge, strict=True):
            assert 0.0 <= drawn <= 20.0
            assert pushed <= drawn + 1e-9  # a margin never exceeds its draw
            if clipped:
                n_clipped += 1
            else:  # floored to whole pixels of that axis: less than one pixel short of the draw
                assert pushed > drawn - pixel
                n_floored += 1
    assert n_clipped >= 1 and n_floored > 50  # both cases occur (node C lies near the right edge)


def test_margins_are_uniform_over_0_to_20_mm():
    labels = np.zeros((200, 400, 400), dtype=np.uint8)
    labels[:, 190:210, 190:210] = 1
    drawn = np.array([p.margins_mm for p in make_prompts(labels, (1.0, 1.0, 1.0), "P", seed=1)])
    assert drawn.min() >= 0 and drawn.max() <= 20
    assert 9.0 < drawn.mean() < 11.0 and drawn.std() == pytest.approx(20 / np.sqrt(12), rel=0.1)
    assert abs(np.corrcoef(drawn[:, 0], drawn[:, 2])[0, 1]) < 0.2  # sides are independent


def test_same_seed_same_prompts_other_patient_other_prompts():
    labels = phantom()
    a = make_prompts(labels, SPACING, "HN001", seed=7)
    assert a == make_prompts(labels, SPACING, "HN001", seed=7)
    b = make_prompts(labels, SPACING, "HN002", seed=7)
    c = make_prompts(labels, SPACING, "HN001", seed=8)
    assert [p.tight for p in a] == [p.tight for p in b]
    assert [p.box for p in a] != [p.box for p in b] and [p.box for p in a] != [p.box for p in c]


def test_boxes_are_clipped_to_the_image():
    labels = np.zeros((1, 30, 30), dtype=np.uint8)
    labels[0, 0:3, 27:30] = 1
    (p,) = make_prompts(labels, (1.0, 1.0, 1.0), "P", 0, margin_mm=(15.0, 20.0))
    assert p.box[1] == 0 and p.box[2] == 29 and p.box[0] < 27 and p.box[3] > 2


def test_json_round_trip_and_box_channel(tmp_path):
    labels = phantom()
    prompts = make_prompts(labels, SPACING, "HN001", seed=7)
    write_prompts(
        tmp_path / "p.json", "HN001", prompts, shape_zyx=labels.shape, spacing_xyz=SPACING, params={"seed": 7}
    )
    assert read_prompts(tmp_path / "p.json") == [
        p.__class__(p.slice, p.instance, p.target, p.tight, p.box, tuple(round(m, 4) for m in p.margins_mm))
        for p in prompts
    ]
    channel = render_box_channel(prompts, labels.shape)
    assert channel.dtype == np.uint8 and set(np.unique(channel)) == {0, 1}
    assert channel[labels > 0].all()  # every target voxel lies inside a box of its slice
    assert channel[0].sum() == 0 and channel[11].sum() == 0  # slices without targets have no box


def u_phantom():
    """A GTV-T shaped like a U: two arms on slices 2-4, joined by a bridge on slice 5 (one 3D instance), and a
    node (one object on every slice)."""
    labels = np.zeros((8, 60, 70), dtype=np.uint8)
    labels[2:6, 10:30, 10:18] = 1  # left arm
    labels[2:6, 10:30, 30:38] = 1  # right arm
    labels[5, 25:30, 10:38] = 1  # bridge: the arms are one instance in 3D
    labels[3:5, 40:46, 50:56] = 2  # a node
    return labels


def test_object_2d_makes_every_blob_of_a_slice_its_own_target():
    labels = u_phantom()
    instances, targets = split_instances(labels, 26)
    assert targets == {1: "GTV-T", 2: "GTV-N"}
    objects, object_targets = split_instances(labels, 26, "object_2d")
    # the right arm on slices 2, 3, 4 gets ids 3, 4, 5 (after the last instance), each a GTV-T target
    assert object_targets == {1: "GTV-T", 2: "GTV-N", 3: "GTV-T", 4: "GTV-T", 5: "GTV-T"}
    for z, extra in ((2, 3), (3, 4), (4, 5)):
        assert np.array_equal(objects[z] == 1, labels[z, :, :] * (np.arange(70) < 20) == 1)  # the left arm
        assert np.array_equal(objects[z] == extra, labels[z, :, :] * (np.arange(70) >= 20) == 1)  # the right
    assert np.array_equal(objects[5], instances[5]) and np.array_equal(objects > 0, labels > 0)

    per_instance = make_prompts(labels, SPACING, "HN001", seed=7)
    per_object = make_prompts(labels, SPACING, "HN001", seed=7, target_unit="object_2d")
    on = {z: [p for p in per_instance if p.slice == z] for z in range(8)}
    on_objects = {z: [p for p in per_object if p.slice == z] for z in range(8)}
    # the default: one box per instance per slice, around both arms
    assert [(p.instance, p.target, p.tight) for p in on[3]] == [
        (1, "GTV-T", (10, 10, 37, 29)),
        (2, "GTV-N", (50, 40, 55, 45)),
    ]
    # the paper read literally: one box per arm
    assert [(p.instance, p.target, p.tight) for p in on_objects[3]] == [
        (1, "GTV-T", (10, 10, 17, 29)),
        (2, "GTV-N", (50, 40, 55, 45)),
        (4, "GTV-T", (30, 10, 37, 29)),
    ]
    # where an instance is one object (the bridge slice, the node), both choices give the same prompt
    assert on_objects[5] == on[5]
    assert [p for p in on_objects[3] if p.instance == 2] == [p for p in on[3] if p.instance == 2]
    assert len(per_object) == len(per_instance) + 3
    for p in per_object:  # every prompt is the tight box of its target on the target map the shards are cut from
        assert p.tight == tight_box(objects[p.slice] == p.instance)


def test_object_2d_connects_in_plane_as_the_instances_do():
    labels = np.zeros((1, 10, 10), dtype=np.uint8)
    labels[0, 2:4, 2:4] = 2
    labels[0, 4:6, 4:6] = 2  # touches the first square at a corner only
    assert len(make_prompts(labels, (1.0, 1.0, 1.0), "P", 0, target_unit="object_2d")) == 1  # 26: 8 neighbours
    assert len(make_prompts(labels, (1.0, 1.0, 1.0), "P", 0, connectivity=18, target_unit="object_2d")) == 1
    assert len(make_prompts(labels, (1.0, 1.0, 1.0), "P", 0, connectivity=6, target_unit="object_2d")) == 2
    with pytest.raises(ValueError, match="target_unit"):
        split_instances(labels, 26, "blob")
