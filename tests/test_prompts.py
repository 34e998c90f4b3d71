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
    for p in prompts:
        assert p.tight == tight_box(instances[p.slice] == p.instance)
        x0, y0, x1, y1 = p.box
        tx0, ty0, tx1, ty1 = p.tight
        assert x0 <= tx0 and y0 <= ty0 and x1 >= tx1 and y1 >= ty1
        assert 0 <= x0 and 0 <= y0 and x1 < labels.shape[2] and y1 < labels.shape[1]
        pushed_mm = ((tx0 - x0) * SPACING[0], (ty0 - y0) * SPACING[1], (x1 - tx1) * SPACING[0], (y1 - ty1) * SPACING[1])
        for pushed, drawn in zip(pushed_mm, p.margins_mm, strict=True):
            assert 0.0 <= drawn <= 20.0
            assert pushed <= drawn + 1e-9  # a margin never exceeds its draw
            assert pushed >= min(drawn - max(SPACING[:2]), 0) or pushed == 0  # floored to whole pixels, or clipped


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
