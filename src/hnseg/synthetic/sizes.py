"""Grid definitions of the synthetic cohort: a CPU-sized ``demo``, a coarser ``tiny`` for the test suite's workflow
runs, and a clinically sized ``realistic``.

All lengths are in mm. The CT grid is centred on the patient's midline; its cranio-caudal range is given in the
anatomical frame of :mod:`hnseg.synthetic.anatomy` (z = 0 near the C2 body, superior positive), so the same size
covers the same anatomy for every patient.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CTSpec:
    matrix: int  # rows = columns
    pixel_mm: float
    n_slices: int
    slice_mm: float  # slice thickness = slice-to-slice distance
    top_z: float  # anatomical z of the most superior slice


@dataclass(frozen=True)
class PETSpec:
    matrix: int
    pixel_mm: float
    slice_mm: float  # slices are placed to cover the CT's z range
    supersample: int  # sub-samples per axis when integrating the activity over a voxel
    bed_slices: int  # slices per bed position (axial field of view of the scanner)


@dataclass(frozen=True)
class MRSpec:
    columns: int  # left-right
    rows: int  # antero-posterior
    pixel_mm: float
    n_slices: int
    thickness_mm: float
    gap_mm: float  # SpacingBetweenSlices = thickness + gap

    @property
    def spacing_mm(self) -> float:
        return round(self.thickness_mm + self.gap_mm, 6)


@dataclass(frozen=True)
class SizeSpec:
    """One size of the synthetic cohort."""

    name: str
    ct: CTSpec
    pet: PETSpec
    mr: MRSpec
    displacement_stride: tuple[int, int, int]  # (x, y, z) subsampling of the CT grid for displacement_ct.nii.gz


SIZES: dict[str, SizeSpec] = {
    "demo": SizeSpec(
        name="demo",
        ct=CTSpec(matrix=128, pixel_mm=2.0, n_slices=40, slice_mm=3.0, top_z=36.0),
        pet=PETSpec(matrix=64, pixel_mm=4.0, slice_mm=3.27, supersample=2, bed_slices=47),
        mr=MRSpec(columns=160, rows=128, pixel_mm=1.5, n_slices=26, thickness_mm=4.0, gap_mm=0.4),
        displacement_stride=(2, 2, 1),
    ),
    # The demo's anatomy on coarser grids, for the test suite's workflow runs, which exercise every stage but measure
    # no accuracy: the same fields of view (CT 256 mm across and 120 mm high, MR 240 x 192 mm and 112 mm high) and the
    # demo's PET, with a third of the demo's CT voxels and about 60 % of its tumour slices.
    "tiny": SizeSpec(
        name="tiny",
        ct=CTSpec(matrix=96, pixel_mm=256.0 / 96, n_slices=24, slice_mm=5.0, top_z=36.0),
        pet=PETSpec(matrix=64, pixel_mm=4.0, slice_mm=3.27, supersample=2, bed_slices=47),
        mr=MRSpec(columns=120, rows=96, pixel_mm=2.0, n_slices=20, thickness_mm=5.0, gap_mm=0.6),
        displacement_stride=(2, 2, 1),
    ),
    "realistic": SizeSpec(
        name="realistic",
        ct=CTSpec(matrix=512, pixel_mm=0.9765625, n_slices=150, slice_mm=2.5, top_z=110.0),
        pet=PETSpec(matrix=128, pixel_mm=3.515625, slice_mm=3.27, supersample=2, bed_slices=47),
        mr=MRSpec(columns=384, rows=320, pixel_mm=0.65, n_slices=28, thickness_mm=4.0, gap_mm=0.4),
        displacement_stride=(4, 4, 2),
    ),
}
