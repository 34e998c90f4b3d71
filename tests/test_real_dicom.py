"""The importer on real third-party DICOM, beyond what tests/test_dicom_reading.py covers.

- Installed with the environment: pydicom's test files (MR_small in eight encodings, J2K CT slices, the DICOMDIR
  tree and its real MR scouts, pilots and angiography MIP) and nibabel's (a Philips enhanced MR of 176 frames, a
  J2K MR with an empty SliceThickness). Decoded values are compared with SimpleITK's GDCM, geometry with SimpleITK
  and highdicom.
- Downloaded at test time (marked slow, skipped with the reason when the download fails), never vendored:
  pydicom-data (MIT: enhanced CT and MR, lossless J2K CT, a JPEG lossless CT) and the pycerr radiomics phantom
  (reference/dicom.md section 5; CC BY-NC 3.0): 4 real CT series with real RTSTRUCTs without ContourImageSequence on
  non-square grids.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath

from hnseg.dicom.importer import ImportOptions, classify_mri, import_ct_and_labels, import_mri, read_series
from hnseg.dicom.rtstruct import rasterize
from hnseg.dicom.series import Series, scan_folder
from hnseg.dicom.volume import Volume
from hnseg.errors import InputError

PYDICOM_FILES = Path(os.path.dirname(pydicom.data.get_testdata_file("CT_small.dcm")))
DICOMDIR_TESTS = PYDICOM_FILES / "dicomdirtests"
NIBABEL_FILES = Path(importlib.util.find_spec("nibabel").origin).parent / "nicom" / "tests" / "data"
OPTS = ImportOptions()

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom's notes on odd but readable files


def one_file_series(tmp_path: Path, source: Path) -> Series:
    folder = tmp_path / source.name
    folder.mkdir()
    shutil.copy(source, folder)
    (series,) = scan_folder(folder).series
    return series


def gdcm(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path), sitk.sitkFloat32)


def voxel_to_patient(volume: Volume) -> np.ndarray:
    """4x4 matrix from (column, row, slice, 1) to patient coordinates (mm) for our volume."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(volume.direction).reshape(3, 3) * np.asarray(volume.spacing)
    affine[:3, 3] = volume.origin
    return affine


def same_voxels(ours: Volume, affine_other: np.ndarray, array_other: np.ndarray, index_order: str) -> None:
    """Every voxel centre of ours is a voxel centre of the other volume, with the same value.

    affine_other maps the other array's indices to patient mm; index_order 'kji' for (slice, row, column) indices
    in array order (highdicom), 'ijk' for (column, row, slice) (SimpleITK).
    """
    nz, ny, nx = ours.array.shape
    k, j, i = (a.ravel() for a in np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij"))
    take = slice(None, None, max(1, k.size // 20000))
    k, j, i = k[take], j[take], i[take]
    mm = voxel_to_patient(ours) @ np.vstack([i, j, k, np.ones_like(i)])
    other = np.linalg.solve(affine_other, mm)[:3]
    assert np.abs(other - np.rint(other)).max() < 1e-3, "voxel centres do not coincide"
    other = np.rint(other).astype(int)
    index = tuple(other) if index_order == "kji" else tuple(other[::-1])
    assert np.array_equal(ours.array[k, j, i], array_other[index].astype(np.float32))


def sitk_affine(image: sitk.Image) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return affine


# ----------------------------------------------------------------------------------------------- pydicom's files


@pytest.mark.parametrize(
    "name",
    [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_implicit.dcm",
        "MR_small_padded.dcm",
    ],
)
def test_one_mr_slice_in_eight_encodings_imports_to_the_same_values(name, tmp_path):
    if "jpeg_ls" in name and importlib.util.find_spec("jpeg_ls") is None:
        pytest.skip("pyjpegls is not installed")
    reference = read_series(one_file_series(tmp_path, PYDICOM_FILES / "MR_small.dcm"), "MR_small", OPTS)
    if name == "MR_small.dcm":
        volume = reference
    else:
        volume = read_series(one_file_series(tmp_path, PYDICOM_FILES / name), name, OPTS)
    assert volume.array.shape == (1, 64, 64)
    assert np.array_equal(volume.array, reference.array)
    assert volume.origin == pytest.approx(reference.origin) and volume.direction == pytest.approx(reference.direction)
    assert np.array_equal(volume.array, sitk.GetArrayFromImage(gdcm(PYDICOM_FILES / name)))


@pytest.mark.parametrize("name", ["J2K_pixelrep_mismatch.dcm", "693_J2KI.dcm"])
def test_j2k_ct_slices_decode_like_gdcm(name, tmp_path):
    # J2K_pixelrep_mismatch: the codestream says unsigned where PixelRepresentation says signed (padding -2000)
    volume = read_series(one_file_series(tmp_path, PYDICOM_FILES / name), name, OPTS)
    image = gdcm(PYDICOM_FILES / name)
    assert volume.array.shape == (1, 512, 512)
    assert np.array_equal(volume.array, sitk.GetArrayFromImage(image))
    assert volume.origin == pytest.approx(image.GetOrigin(), abs=1e-4)
    assert volume.array.min() < -1000 < 0 < volume.array.max()  # HU, signed, not wrapped around


def test_every_instance_a_real_dicomdir_lists_is_found_in_its_series():
    from pydicom.fileset import FileSet

    listed: dict[str, set[str]] = {}
    for instance in FileSet(DICOMDIR_TESTS / "DICOMDIR"):
        listed.setdefault(str(instance.SeriesInstanceUID), set()).add(str(instance.SOPInstanceUID))
    scan = scan_folder(DICOMDIR_TESTS)
    found = {
        s.uid: {str(i.header.SOPInstanceUID) for i in s.instances}
        | {str(i.header.SOPInstanceUID) for i, _ in s.excluded}
        for s in scan.series
    }
    assert listed and all(found.get(uid, set()) >= sops for uid, sops in listed.items())
    assert sum(len(v) for v in listed.values()) == 31
    # every DICOMDIR variant pydicom ships (big endian, implicit, reordered, no offsets, ...) is an index, not an image
    dicomdirs = {name for name, reason in scan.skipped if reason.startswith("DICOMDIR")}
    assert dicomdirs == {
        "DICOMDIR",
        "DICOMDIR-bigEnd",
        "DICOMDIR-empty.dcm",
        "DICOMDIR-implicit",
        "DICOMDIR-nooffset",
        "DICOMDIR-nopatient",
        "DICOMDIR-reordered",
        "TINY_ALPHA/DICOMDIR",
    }


def test_real_mr_scouts_pilots_and_an_angiography_mip_are_never_taken_as_t1_or_t2(tmp_path):
    folder = DICOMDIR_TESTS / "98892003"
    series = scan_folder(folder).series
    kinds = {s.description: classify_mri(s, ImportOptions().mri_rules) for s in series}
    # none of them carries ImageType LOCALIZER: the description, the ImageType and the slice count catch them
    assert kinds["FAST LOCALIZER"][0] is None and "excluded" in kinds["FAST LOCALIZER"][1]
    assert kinds["ANGIO Projected from   C"] == (
        None,
        "ImageType DERIVED/SECONDARY/PROJECTION IMAGE is a projection or localiser, not a T1w/T2w stack",
    )
    with pytest.raises(InputError, match=r"patient P1: no T1w and no T2w MR series \(MR #700 'ANGIO Projected"):
        import_mri("P1", folder, tmp_path / "out", OPTS)
    # the 3-plane pilot read as a volume (SimpleITK makes a 106 mm "volume" of it) is refused
    pilot = next(s for s in series if s.description == "T/S/C RF FAST PILOT")
    with pytest.raises(InputError, match=r"2 of 3 slices have another orientation .* two stacks in one series"):
        read_series(pilot, "pilot", OPTS)


# ----------------------------------------------------------------------------------------------- nibabel's files


def test_philips_enhanced_mr_geometry_matches_simpleitk_and_highdicom(tmp_path):
    import highdicom

    path = tmp_path / "mprage" / "philips_mprage.dcm"
    path.parent.mkdir()
    path.write_bytes(gzip.decompress((NIBABEL_FILES / "philips_mprage.dcm.gz").read_bytes()))
    (series,) = scan_folder(path.parent).series
    assert series.sop_class == "1.2.840.10008.5.1.4.1.1.4.1" and len(series.instances) == 1
    volume = read_series(series, "mprage", OPTS)  # 176 frames decoded once, not once per frame
    assert volume.array.shape == (176, 256, 256)
    image = gdcm(path)
    assert volume.origin == pytest.approx(image.GetOrigin(), abs=1e-3)
    assert volume.direction == pytest.approx(image.GetDirection(), abs=1e-6)
    assert volume.spacing == pytest.approx(image.GetSpacing(), abs=1e-5)
    assert abs(np.linalg.det(np.asarray(volume.direction).reshape(3, 3)) - 1) < 1e-6  # oblique, right-handed
    # highdicom stacks the frames the other way round: compare voxel centres in patient space (pixels are all 0 in
    # this file, so only the geometry is informative)
    reference = highdicom.imread(str(path)).get_volume()
    same_voxels(volume, reference.affine, reference.array, "kji")
    # a 3D T1 (MPRAGE): TR in the shared functional groups, TE in the per-frame ones (Philips)
    assert classify_mri(series, ImportOptions().mri_rules) == ("t1", "TR 7.5693 ms, TE 3.513 ms")


def test_j2k_mr_with_empty_slice_thickness_reads(tmp_path):
    source = NIBABEL_FILES / "slicethickness_empty_string.dcm"
    assert pydicom.dcmread(source, stop_before_pixels=True).SliceThickness in (None, "")
    volume = read_series(one_file_series(tmp_path, source), "mr", OPTS)
    image = gdcm(source)
    assert np.array_equal(volume.array, sitk.GetArrayFromImage(image))
    assert volume.origin == pytest.approx(image.GetOrigin(), abs=1e-4)
    assert np.asarray(volume.direction).reshape(3, 3)[:, :2].ravel() == pytest.approx(
        np.asarray(image.GetDirection()).reshape(3, 3)[:, :2].ravel(), abs=1e-6
    )  # oblique sagittal in-plane axes; one slice, so the normal is ours alone


# ----------------------------------------------------------------------------------------------- downloads


def _pip_download(package: str, target: Path) -> Path:
    run = subprocess.run(
        [sys.executable, "-m", "pip", "download", package, "--no-deps", "--quiet", "-d", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    wheels = sorted(target.glob("*.whl"))
    if run.returncode != 0 or not wheels:
        pytest.skip(f"cannot download {package} from the package index: {(run.stderr or run.stdout).strip()[-300:]}")
    return wheels[0]


@pytest.fixture(scope="session")
def pydicom_data(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("pydicom_data")
    wheel = _pip_download("pydicom-data==1.0.0", target)
    wanted = (
        "emri_small.dcm",
        "emri_small_RLE.dcm",
        "emri_small_big_endian.dcm",
        "eCT_Supplemental.dcm",
        "693_J2KR.dcm",
        "693_UNCR.dcm",
        "693_UNCI.dcm",
        "bad_sequence.dcm",
    )
    out = target / "files"
    out.mkdir()
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.rsplit("/", 1)[-1] in wanted:
                (out / name.rsplit("/", 1)[-1]).write_bytes(z.read(name))
    return out


@pytest.mark.slow
def test_enhanced_ct_agrees_with_highdicom_and_simpleitk(pydicom_data, tmp_path):
    import highdicom

    source = pydicom_data / "eCT_Supplemental.dcm"
    volume = read_series(one_file_series(tmp_path, source), "eCT", OPTS)
    assert volume.array.shape == (2, 512, 512) and volume.spacing[2] == pytest.approx(10.0)
    assert np.linalg.det(np.asarray(volume.direction).reshape(3, 3)) == pytest.approx(1.0)
    reference = highdicom.imread(str(source)).get_volume()
    same_voxels(volume, reference.affine, reference.array, "kji")
    image = gdcm(source)  # GDCM reports a left-handed direction here; the voxels still coincide
    same_voxels(volume, sitk_affine(image), sitk.GetArrayFromImage(image), "ijk")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["emri_small.dcm", "emri_small_RLE.dcm", "emri_small_big_endian.dcm"])
def test_enhanced_mr_without_any_geometry_is_refused(pydicom_data, name, tmp_path):
    source = pydicom_data / name
    image = sitk.ReadImage(str(source))
    assert image.GetOrigin() == (0.0, 0.0, 0.0) and image.GetSpacing() == (1.0, 1.0, 1.0)  # SimpleITK: silently
    with pytest.raises(InputError, match=rf"{name}: ImageOrientationPatient is missing, so the slice cannot be placed"):
        read_series(one_file_series(tmp_path, source), "emri", OPTS)


@pytest.mark.slow
def test_lossless_and_lossy_j2k_ct_against_the_uncompressed_originals(pydicom_data, tmp_path):
    lossless = read_series(one_file_series(tmp_path, pydicom_data / "693_J2KR.dcm"), "J2KR", OPTS)
    original = read_series(one_file_series(tmp_path, pydicom_data / "693_UNCR.dcm"), "UNCR", OPTS)
    assert np.array_equal(lossless.array, original.array)
    lossy = read_series(one_file_series(tmp_path, PYDICOM_FILES / "693_J2KI.dcm"), "J2KI", OPTS)
    decompressed = read_series(one_file_series(tmp_path, pydicom_data / "693_UNCI.dcm"), "UNCI", OPTS)
    assert np.array_equal(lossy.array, decompressed.array)  # UNCI is J2KI decompressed


@pytest.mark.slow
def test_jpeg_lossless_ct_without_a_decoder_is_a_clear_error(pydicom_data, tmp_path):
    if importlib.util.find_spec("pylibjpeg") or importlib.util.find_spec("gdcm"):
        pytest.skip("a JPEG lossless decoder is installed")
    source = pydicom_data / "bad_sequence.dcm"
    series = one_file_series(tmp_path, source)
    with pytest.raises(InputError, match=r"(?s)patient P1, CT: cannot read the pixel data .*JPEG Lossless.*re-export"):
        read_series(series, "patient P1, CT", OPTS)
    assert sitk.ReadImage(str(source)).GetSize() == (512, 512, 1)  # GDCM can: a decoder question, not the file


# ----------------------------------------------------------------------------------------------- pycerr phantom


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("pycerr")
    wheel = _pip_download("pycerr==2.5.1", target)
    prefix = "cerr/datasets/radiomics_phantom_dicom/"
    with zipfile.ZipFile(wheel) as z:
        members = [n for n in z.namelist() if n.startswith(prefix + "pat_") and not n.endswith("/")]
        if not members:
            pytest.skip(f"pycerr 2.5.1 no longer ships {prefix}pat_*")
        for name in members:
            path = target / "phantom" / name[len(prefix) :]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(z.read(name))
    wheel.unlink()  # CC BY-NC data: kept only in the test's temporary folder
    return target / "phantom"


def _reference_mask(rtstruct: Path, ct_files: list[Path], roi: str) -> np.ndarray:
    """An independent rasteriser: matplotlib point-in-polygon at voxel centres, XOR per slice, nearest slice by z."""
    headers = sorted(
        (pydicom.dcmread(p, stop_before_pixels=True) for p in ct_files), key=lambda d: float(d.ImagePositionPatient[2])
    )
    z = np.array([float(d.ImagePositionPatient[2]) for d in headers])
    x0, y0 = (float(v) for v in headers[0].ImagePositionPatient[:2])
    dy, dx = (float(v) for v in headers[0].PixelSpacing)
    rows, cols = int(headers[0].Rows), int(headers[0].Columns)
    cc, rr = np.meshgrid(np.arange(cols), np.arange(rows))
    centres = np.column_stack([cc.ravel(), rr.ravel()])
    ds = pydicom.dcmread(rtstruct)
    number = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == roi)
    mask = np.zeros((len(z), rows, cols), dtype=bool)
    for item in ds.ROIContourSequence:
        if int(item.ReferencedROINumber) != number:
            continue
        for contour in item.ContourSequence:
            pts = np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)
            k = int(np.argmin(np.abs(z - pts[:, 2].mean())))
            polygon = MplPath(np.column_stack([(pts[:, 0] - x0) / dx, (pts[:, 1] - y0) / dy]))
            mask[k] ^= polygon.contains_points(centres).reshape(rows, cols)
    return mask


@pytest.mark.slow
@pytest.mark.parametrize("patient", ["pat_1", "pat_2", "pat_3", "pat_4"])
def test_pycerr_phantom_gtv_rasterises_and_imports(phantom, patient, tmp_path):
    folder = phantom / patient
    rtstruct = next(folder.glob("DCM_RS_*"))
    ct_files = sorted(folder.glob("DCM_IMG_*"))
    ds = pydicom.dcmread(rtstruct)
    assert not any("ContourImageSequence" in c for item in ds.ROIContourSequence for c in item.ContourSequence)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    reader.SetOutputPixelType(sitk.sitkFloat32)
    ct = reader.Execute()

    mask = rasterize(str(rtstruct), str(folder))["GTV-1"]
    assert mask.shape == ct.GetSize()[::-1] and mask.shape[1] != mask.shape[2]  # non-square grids
    slices = np.nonzero(mask.reshape(mask.shape[0], -1).any(axis=1))[0]
    assert slices.size >= 5 and np.array_equal(slices, np.arange(slices[0], slices[-1] + 1))  # contiguous
    assert len(slices) == sum(len(item.ContourSequence) for item in ds.ROIContourSequence)  # one contour a slice
    volume_ml = mask.sum() * np.prod(ct.GetSpacing()) / 1000.0
    assert 1.0 < volume_ml < 1000.0
    assert np.array_equal(mask, _reference_mask(rtstruct, ct_files, "GTV-1"))

    record = import_ct_and_labels("PHANTOM1", folder, tmp_path / "out", OPTS)
    assert record["rois"]["gtv_t"] == ["GTV-1"] and record["rois"]["gtv_n"] == [] and not record["warnings"]
    labels = sitk.ReadImage(str(tmp_path / "out" / "labels.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(labels), mask.astype(np.uint8))
    ours = sitk.ReadImage(str(tmp_path / "out" / "ct.nii.gz"))
    assert ours.GetOrigin() == pytest.approx(ct.GetOrigin(), abs=1e-4)
    assert ours.GetSpacing() == pytest.approx(ct.GetSpacing(), abs=1e-5)
    assert np.array_equal(sitk.GetArrayFromImage(ours).astype(np.float32), sitk.GetArrayFromImage(ct))
