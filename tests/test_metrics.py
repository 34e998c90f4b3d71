"""hnseg.metrics: DSC, HD95 and NSD against hand-derived values and a brute-force reference, spacing order,
cropping, the empty-mask policy, score_files on real NIfTI and summarize on a hand-computed set."""

import math
import statistics

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.distance import cdist

from hnseg.errors import InputError
from hnseg.metrics import (
    SCORE_COLUMNS,
    dsc,
    evaluate_method,
    hd95,
    nsd,
    read_scores,
    score_files,
    score_patient,
    score_target,
    summarize,
    volume_ml,
    write_rows,
)

ANISO = (2.5, 0.8, 1.2)  # (z, y, x) mm, unequal in-plane so that a y/x swap shows up


# ----------------------------------------------------------------------------------------------- helpers


def reference_surface_distances(pred, gt, spacing):
    """Brute force: boundary = mask AND NOT 6-connected erosion of the whole array (outside = background), all
    pairwise distances in mm between voxel centres, nearest per point."""
    cross = ndimage.generate_binary_structure(3, 1)

    def points(mask):
        return np.argwhere(mask & ~ndimage.binary_erosion(mask, cross, border_value=0)) * np.asarray(spacing)

    d = cdist(points(pred), points(gt))
    return d.min(axis=1), d.min(axis=0)


def reference_hd95(pred, gt, spacing):
    a, b = reference_surface_distances(pred, gt, spacing)
    return max(np.percentile(a, 95), np.percentile(b, 95))


def reference_nsd(pred, gt, spacing, tol):
    a, b = reference_surface_distances(pred, gt, spacing)
    tol += 1e-9  # a distance equal to the tolerance (e.g. 2.0 = hypot(1.2, 1.6)) is within it, whatever the rounding
    return (np.sum(a <= tol) + np.sum(b <= tol)) / (a.size + b.size)


def ellipsoid(shape, spacing, centre_mm, radii_mm, rng=None, noise=0.0):
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
    level = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre_mm, radii_mm, strict=True))
    if noise:
        level = level + noise * ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    return level <= 1.0


def cube(shape, corner, side=3):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(c, c + side) for c in corner)] = True
    return mask


# ----------------------------------------------------------------------------------------------- DSC, volume


def test_dsc_of_two_boxes_by_hand():
    a = np.zeros((6, 6, 6), dtype=np.uint8)
    b = np.zeros((6, 6, 6), dtype=np.int32)
    a[0:4, 0:4, 0:4] = 1  # 64 voxels
    b[2:5, 1:4, 0:2] = 7  # 18 voxels, castable to bool
    # overlap [2:4, 1:4, 0:2] = 12 voxels
    assert dsc(a, b) == pytest.approx(2 * 12 / (64 + 18), abs=1e-12)
    assert dsc(a, a, ANISO) == 1.0
    assert dsc(a, np.zeros_like(a)) == 0.0
    assert math.isnan(dsc(np.zeros_like(a), np.zeros_like(a)))


def test_volume_ml():
    mask = cube((5, 5, 5), (1, 1, 1))  # 27 voxels of 2.5 * 0.8 * 1.2 = 2.4 mm^3
    assert volume_ml(mask, ANISO) == pytest.approx(27 * 2.4 / 1000)
    assert volume_ml(np.zeros((3, 3, 3)), ANISO) == 0.0


# ----------------------------------------------------------------------------------------------- HD95


def test_hd95_hand_derived_cubes_shifted_along_z():
    # Two 3x3x3 cubes, the second 3 slices higher: the second cube's bottom layer is all boundary, so every
    # boundary voxel of the first has its nearest one straight above, 1, 2 or 3 slices away (9 + 8 + 9 voxels;
    # the centre voxel is interior). The 95th percentile (index 23.75 of 26) is 3 slices = 6 mm, both ways.
    spacing = (2.0, 0.7, 1.3)
    a, b = cube((12, 8, 8), (2, 2, 2)), cube((12, 8, 8), (5, 2, 2))
    assert hd95(a, b, spacing) == pytest.approx(6.0, abs=1e-9)
    assert hd95(b, a, spacing) == pytest.approx(6.0, abs=1e-9)
    assert hd95(a, a, spacing) == 0.0
    blob = ellipsoid((20, 30, 30), ANISO, (25, 12, 18), (12, 8, 9))
    assert hd95(blob, blob, ANISO) == 0.0


def test_hd95_applies_spacing_in_array_order():
    z_shift = (cube((12, 8, 8), (2, 2, 2)), cube((12, 8, 8), (5, 2, 2)))
    assert hd95(*z_shift, (2.5, 0.8, 1.2)) == pytest.approx(3 * 2.5)
    assert hd95(*z_shift, (1.2, 0.8, 2.5)) == pytest.approx(3 * 1.2)  # (x, y, z) order would be this: wrong
    x_shift = (cube((8, 8, 12), (2, 2, 2)), cube((8, 8, 12), (2, 2, 5)))
    assert hd95(*x_shift, (2.5, 0.8, 1.2)) == pytest.approx(3 * 1.2)
    assert hd95(*x_shift, (2.5, 1.2, 0.8)) == pytest.approx(3 * 0.8)  # y/x swapped


def test_array_border_counts_as_boundary():
    # The whole 3x3x3 array is the mask: with border_value=0 its 26 outer voxels are boundary. To the centre voxel:
    # 6 faces, 12 edges, 8 corners; the 95th percentile (index 23.75) is a corner; the reverse is the nearest face.
    full = np.ones((3, 3, 3), dtype=bool)
    centre = np.zeros_like(full)
    centre[1, 1, 1] = True
    corner = math.sqrt(2.5**2 + 0.8**2 + 1.2**2)
    assert hd95(full, centre, ANISO) == pytest.approx(corner, abs=1e-12)
    # NSD at 2 mm: faces 0.8, 0.8, 1.2, 1.2 and the 4 y-x edges (1.44 mm) of the shell, plus the centre voxel
    assert nsd(full, centre, ANISO, 2.0) == pytest.approx(9 / 27)


def far_false_positive_case(rng=None):
    """A tumour, its prediction and a blob about 25 mm away, large enough to move the 95th percentile."""
    shape = (30, 60, 50)
    gt = ellipsoid(shape, ANISO, (30, 19, 24), (14, 10, 12), rng, noise=3.0 if rng else 0.0)
    pred = ellipsoid(shape, ANISO, (31, 20, 23), (13, 10, 11), rng, noise=3.0 if rng else 0.0)
    return pred | ellipsoid(shape, ANISO, (66, 42, 52), (5, 4, 4)), gt


def _random_cases():
    rng = np.random.default_rng(20241124)
    shape = (24, 48, 40)
    cases = []
    gt = ellipsoid(shape, ANISO, (30, 19, 24), (14, 10, 12), rng, noise=3.0)
    cases.append(("shifted", ellipsoid(shape, ANISO, (33.5, 17.4, 26.3), (13, 11, 11), rng, noise=3.0), gt, ANISO))
    cases.append(("renoised", ellipsoid(shape, ANISO, (30, 19, 24), (14, 10, 12), rng, noise=4.0), gt, ANISO))
    cases.append(("dilated", ndimage.binary_dilation(gt, iterations=2), gt, ANISO))
    cases.append(("far false positive", *far_false_positive_case(rng), ANISO))
    border_gt = ellipsoid(shape, ANISO, (2, 19, 6), (12, 10, 12), rng, noise=2.0)  # cut by the z = 0 and x = 0 faces
    border_pred = ellipsoid(shape, ANISO, (4, 17, 3), (12, 9, 10), rng, noise=2.0)
    cases.append(("touches the border", border_pred, border_gt, ANISO))
    other = (2.0, 0.98, 0.98)
    cases.append(
        (
            "random",
            ellipsoid(shape, other, (22, 22, 20), (9, 12, 8), rng, noise=4.0),
            ellipsoid(shape, other, (25, 24, 18), (10, 9, 10), rng, noise=4.0),
            other,
        )
    )
    return cases


@pytest.mark.parametrize("name,pred,gt,spacing", _random_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_hd95_and_nsd_match_brute_force(name, pred, gt, spacing):
    assert pred.any() and gt.any() and not np.array_equal(pred, gt)
    if name == "touches the border":
        assert gt[0].any() and gt[:, :, 0].any() and pred[0].any() and pred[:, :, 0].any()
    expected = reference_hd95(pred, gt, spacing)
    assert expected > 0
    assert hd95(pred, gt, spacing) == pytest.approx(expected, abs=0.005)
    for tol in (1.0, 2.0, 5.0):
        assert nsd(pred, gt, spacing, tol) == pytest.approx(reference_nsd(pred, gt, spacing, tol), abs=1e-12)
    row = score_target(pred, gt, spacing)
    assert row["status"] == "ok" and not row["hd95_worst_case"]
    assert row["hd95_mm"] == pytest.approx(expected, abs=0.005)


def test_far_false_positive_raises_hd95():
    with_fp, gt = far_false_positive_case()
    without_fp = ellipsoid(with_fp.shape, ANISO, (31, 20, 23), (13, 10, 11))
    assert hd95(with_fp, gt, ANISO) == pytest.approx(reference_hd95(with_fp, gt, ANISO), abs=0.005)
    assert hd95(with_fp, gt, ANISO) > hd95(without_fp, gt, ANISO) + 10


def test_cropping_does_not_change_the_result():
    rng = np.random.default_rng(7)
    small = (16, 24, 20)
    gt = ellipsoid(small, ANISO, (20, 10, 12), (12, 7, 9), rng, noise=3.0)
    pred = ellipsoid(small, ANISO, (22, 9, 13), (11, 8, 8), rng, noise=3.0)
    big_gt, big_pred = np.zeros((60, 120, 100), dtype=bool), np.zeros((60, 120, 100), dtype=bool)
    window = (slice(30, 46), slice(70, 94), slice(5, 25))
    big_gt[window], big_pred[window] = gt, pred
    assert hd95(big_pred, big_gt, ANISO) == pytest.approx(hd95(pred, gt, ANISO), abs=1e-9)
    assert nsd(big_pred, big_gt, ANISO) == nsd(pred, gt, ANISO)
    assert dsc(big_pred, big_gt) == dsc(pred, gt)


# ----------------------------------------------------------------------------------------------- NSD


def test_nsd_hand_derived_and_ordering():
    spacing = (2.0, 0.7, 1.3)
    a, b = cube((12, 8, 8), (2, 2, 2)), cube((12, 8, 8), (5, 2, 2))
    # each cube has 26 boundary voxels at 2, 4 and 6 mm from the other (9, 8 and 9 of them)
    assert nsd(a, b, spacing, 2.0) == pytest.approx(18 / 52)
    assert nsd(a, b, spacing, 4.0) == pytest.approx(34 / 52)
    assert nsd(a, b, spacing, 1.9) == 0.0
    assert nsd(a, b, spacing, 6.0) == 1.0

    gt = ellipsoid((24, 48, 40), ANISO, (30, 19, 24), (14, 10, 12))
    assert nsd(gt, gt, ANISO) == 1.0
    within = np.roll(gt, 1, axis=2)  # 1.2 mm
    beyond = np.roll(gt, 3, axis=2)  # 3.6 mm
    assert nsd(beyond, gt, ANISO, 2.0) < nsd(within, gt, ANISO, 2.0) <= 1.0
    assert nsd(within, gt, ANISO, 2.0) == 1.0  # every boundary voxel is within 1.2 mm of the other boundary


# ----------------------------------------------------------------------------------------------- empty policy


def test_empty_policy():
    shape, empty = (10, 20, 30), np.zeros((10, 20, 30), dtype=bool)
    mask = cube(shape, (3, 5, 5))
    diagonal = math.sqrt((9 * 2.5) ** 2 + (19 * 0.8) ** 2 + (29 * 1.2) ** 2)

    both = score_target(empty, empty, ANISO)
    assert both["status"] == "both_empty" and not both["hd95_worst_case"]
    assert all(math.isnan(both[k]) for k in ("dsc", "hd95_mm", "nsd"))
    assert both["volume_gt_ml"] == both["volume_pred_ml"] == 0.0

    missed = score_target(empty, mask, ANISO)
    assert missed["status"] == "pred_empty" and missed["hd95_worst_case"] is True
    assert missed["dsc"] == 0.0 and missed["nsd"] == 0.0
    assert missed["hd95_mm"] == pytest.approx(diagonal, abs=1e-9)
    assert missed["volume_gt_ml"] == pytest.approx(27 * 2.4 / 1000) and missed["volume_pred_ml"] == 0.0

    false_alarm = score_target(mask, empty, ANISO)
    assert false_alarm["status"] == "gt_empty" and false_alarm["hd95_worst_case"] is True
    assert false_alarm["hd95_mm"] == pytest.approx(diagonal, abs=1e-9) and false_alarm["dsc"] == 0.0

    # the raw metrics return what is defined; only score_target applies the policy
    assert hd95(empty, mask, ANISO) == math.inf and math.isnan(hd95(empty, empty, ANISO))
    assert nsd(mask, empty, ANISO) == 0.0 and math.isnan(nsd(empty, empty, ANISO))


def test_score_patient_per_target():
    gt = np.zeros((12, 8, 8), dtype=np.uint8)
    pred = np.zeros_like(gt)
    gt[2:5, 2:5, 2:5] = 1
    pred[5:8, 2:5, 2:5] = 1
    gt[9:11, 0:2, 0:2] = 2  # a node that the prediction misses
    rows = score_patient(pred, gt, (2.0, 0.7, 1.3))
    assert [r["target"] for r in rows] == ["GTV-T", "GTV-N"]
    assert rows[0]["status"] == "ok" and rows[0]["hd95_mm"] == pytest.approx(6.0) and rows[0]["dsc"] == 0.0
    assert rows[1]["status"] == "pred_empty" and rows[1]["hd95_worst_case"]
    assert set(rows[0]) == {
        "target",
        "dsc",
        "hd95_mm",
        "nsd",
        "volume_gt_ml",
        "volume_pred_ml",
        "status",
        "hd95_worst_case",
    }
    only_t = score_patient(pred, gt, (2.0, 0.7, 1.3), targets={"GTV-N": 2, "GTV-X": 9})
    assert [r["status"] for r in only_t] == ["pred_empty", "both_empty"]


def test_input_errors():
    a = np.zeros((4, 5, 6), dtype=bool)
    a[1, 1, 1] = True
    with pytest.raises(ValueError, match="different shapes"):
        hd95(a, a[:, :, :5], ANISO)
    with pytest.raises(ValueError, match="different shapes"):
        dsc(a, a[:3])
    with pytest.raises(ValueError, match="3 dimensions"):
        hd95(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="3 dimensions"):
        score_target(a, a, (1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        nsd(a, a, (1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="different shapes"):
        score_patient(a.astype(np.uint8), a[None].astype(np.uint8), ANISO)


# ----------------------------------------------------------------------------------------------- score_files


def _write(labels, path, spacing_xyz=(1.2, 0.8, 2.5), origin=(-100.5, 20.25, 300.0)):
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(spacing_xyz)
    image.SetOrigin(origin)
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(path))
    return path


def test_score_files_reads_spacing_in_array_order(tmp_path):
    gt = np.zeros((12, 10, 9), dtype=np.uint8)
    pred = np.zeros_like(gt)
    gt[2:5, 3:6, 3:6] = 1
    pred[5:8, 3:6, 3:6] = 1  # 3 slices along z: HD95 = 3 * z spacing = 7.5 mm
    gt[9:11, 0:2, 6:8] = 2
    pred[9:11, 0:2, 7:9] = 2
    pred_path, gt_path = _write(pred, tmp_path / "pred.nii.gz"), _write(gt, tmp_path / "gt.nii.gz")
    rows = score_files(pred_path, gt_path)
    expected = score_patient(pred, gt, ANISO)
    assert [r["target"] for r in rows] == ["GTV-T", "GTV-N"]
    for row, want in zip(rows, expected, strict=True):
        assert set(row) == set(want)
        for key, value in want.items():  # NIfTI stores spacing as float32
            assert row[key] == (pytest.approx(value, rel=1e-6) if isinstance(value, float) else value), key
    assert rows[0]["hd95_mm"] == pytest.approx(7.5, abs=1e-6)
    assert rows[1]["status"] == "ok" and rows[1]["dsc"] == pytest.approx(0.5)


def test_score_files_grid_mismatch_names_both_files(tmp_path):
    labels = np.zeros((6, 7, 8), dtype=np.uint8)
    labels[2:4, 2:4, 2:4] = 1
    pred_path = _write(labels, tmp_path / "pred.nii.gz")
    moved = _write(labels, tmp_path / "gt_moved.nii.gz", origin=(-100.0, 20.25, 300.0))
    with pytest.raises(InputError, match="not on the same grid") as err:
        score_files(pred_path, moved)
    assert str(pred_path) in str(err.value) and str(moved) in str(err.value) and "origin" in str(err.value)
    bigger = _write(np.zeros((6, 7, 9), dtype=np.uint8), tmp_path / "gt_bigger.nii.gz")
    with pytest.raises(InputError, match="size"):
        score_files(pred_path, bigger)
    respaced = _write(labels, tmp_path / "gt_spacing.nii.gz", spacing_xyz=(1.2, 0.8, 2.0))
    with pytest.raises(InputError, match="spacing"):
        score_files(pred_path, respaced)


# ----------------------------------------------------------------------------------------------- summarize


def _row(method, target, dsc_, hd, nsd_, vg, vp, status="ok", worst=False):
    return {
        "method": method,
        "target": target,
        "dsc": dsc_,
        "hd95_mm": hd,
        "nsd": nsd_,
        "volume_gt_ml": vg,
        "volume_pred_ml": vp,
        "status": status,
        "hd95_worst_case": worst,
    }


def test_summarize_hand_computed():
    nan = math.nan
    rows = [
        _row("sam", "GTV-N", 0.8, 2.0, 0.9, 10.0, 10.0),
        _row("sam", "GTV-N", 0.5, 6.0, 0.6, 20.0, 12.0),
        _row("sam", "GTV-N", 0.0, 100.0, 0.0, 0.0, 4.0, status="gt_empty", worst=True),
        _row("sam", "GTV-N", nan, nan, nan, 0.0, 0.0, status="both_empty"),
        _row("nnunet", "GTV-N", 0.7, 3.0, 0.8, 5.0, 6.0),
    ]
    sam, nnunet = summarize(rows)
    assert (sam["method"], sam["target"], nnunet["method"]) == ("sam", "GTV-N", "nnunet")
    assert "subset" not in sam
    assert sam["n"] == 3 and sam["n_excluded"] == 1 and sam["n_hd95_worst_case"] == 1
    assert sam["dsc_mean"] == pytest.approx(1.3 / 3)
    assert sam["dsc_sd"] == pytest.approx(statistics.stdev([0.8, 0.5, 0.0]))
    assert sam["hd95_mm_mean"] == pytest.approx(36.0)
    assert sam["hd95_mm_sd"] == pytest.approx(statistics.stdev([2.0, 6.0, 100.0]))
    assert sam["hd95_mm_median"] == 6.0
    assert sam["nsd_mean"] == pytest.approx(0.5)
    # TP = 0.8 * 20 / 2 + 0.5 * 32 / 2 + 0 = 16 ml; volumes 20 + 32 + 4 = 56 ml
    assert sam["dsc_agg"] == pytest.approx(2 * 16 / 56)
    assert nnunet["n"] == 1 and nnunet["n_excluded"] == 0 and math.isnan(nnunet["dsc_sd"])
    assert nnunet["dsc_agg"] == pytest.approx(0.7)


def test_summarize_groups_by_subset_and_target_from_score_patient():
    gt = np.zeros((12, 8, 8), dtype=np.uint8)
    gt[2:5, 2:5, 2:5] = 1
    pred = gt.copy()
    rows = []
    for subset in ("val", "test"):
        rows += [{"subset": subset, **r} for r in score_patient(pred, gt, ANISO)]
    summary = summarize(rows)
    assert [(s["subset"], s["target"]) for s in summary] == [
        ("val", "GTV-T"),
        ("val", "GTV-N"),
        ("test", "GTV-T"),
        ("test", "GTV-N"),
    ]
    assert summary[0]["n"] == 1 and summary[0]["dsc_mean"] == 1.0 and summary[0]["hd95_mm_mean"] == 0.0
    assert summary[1]["n"] == 0 and summary[1]["n_excluded"] == 1
    assert math.isnan(summary[1]["dsc_mean"]) and math.isnan(summary[1]["dsc_agg"])


def test_evaluate_method_writes_and_reads_back_the_scores(tmp_path):
    gt = np.zeros((12, 10, 9), dtype=np.uint8)
    gt[2:5, 3:6, 3:6] = 1
    perfect, missed = gt.copy(), np.zeros_like(gt)
    cases = [
        {"patient": "P1", "subset": "val", "prediction": _write(perfect, tmp_path / "p1.nii.gz"), "reference": _write(gt, tmp_path / "g1.nii.gz")},
        {"patient": "P2", "subset": "test", "prediction": _write(missed, tmp_path / "p2.nii.gz"), "reference": _write(gt, tmp_path / "g2.nii.gz")},
    ]  # fmt: skip
    rows = evaluate_method("litemedsam_zeroshot_ct", cases)
    write_rows(rows, tmp_path / "m.csv", SCORE_COLUMNS)
    back = read_scores(tmp_path / "m.csv")
    assert [(r["patient"], r["subset"], r["target"], r["status"]) for r in back] == [
        ("P1", "val", "GTV-T", "ok"),
        ("P1", "val", "GTV-N", "both_empty"),
        ("P2", "test", "GTV-T", "pred_empty"),
        ("P2", "test", "GTV-N", "both_empty"),
    ]
    assert back[0]["dsc"] == 1.0 and back[0]["hd95_mm"] == 0.0 and not back[0]["hd95_worst_case"]
    assert math.isnan(back[1]["dsc"])  # written as an empty cell, read back as NaN
    assert back[2]["dsc"] == 0.0 and back[2]["hd95_worst_case"]
    assert back[2]["hd95_mm"] == pytest.approx(rows[2]["hd95_mm"], rel=1e-5)
    by_subset = {r["subset"]: r for r in summarize(back) if r["target"] == "GTV-T"}
    assert by_subset["val"]["dsc_mean"] == 1.0 and by_subset["test"]["dsc_mean"] == 0.0
    assert [r["n_excluded"] for r in summarize(back) if r["target"] == "GTV-N"] == [1, 1]
