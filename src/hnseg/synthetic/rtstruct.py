"""RTSTRUCT from the analytic shapes, and truth masks from exactly the polygons that were written.

Per ROI and CT slice, every shape of the ROI gives one closed polygon (a vertex about every 1 mm) at exactly the
slice's z (the same DS text as the CT's ImagePositionPatient). Vertices are written with 3 decimals, and the
truth mask of the slice is "voxel centre inside polygon, even-odd over the ROI's polygons on that slice" computed
from the written values. Vertices are nudged by 0.001 mm where a voxel centre would fall on a polygon edge
(a row through a vertex, or a crossing at a voxel centre), so that every correct point-in-polygon test gives
the same mask regardless of its boundary convention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from hnseg.synthetic import dicom_writer as dw
from hnseg.synthetic.anatomy import Anatomy
from hnseg.synthetic.geometry import Grid, evenodd_crossings, rasterize_evenodd
from hnseg.synthetic.identity import Identity

GTV_T_NAMES = ("GTV-T", "GTVp", "GTV_T", "GTVt", "GTV primaire", "GTV_70Gy", "GTV-1", "GTVp_KW", "GTV-P")
GTV_N_SINGLE_NAMES = ("GTVn", "GTV-N", "GTV_N", "NODAL GTV", "GTV GG", "GTV ggs")
GTV_N_PER_NODE_PATTERNS = ("GTVn{k}", "GTV_N{k}", "GANGLION{k}", "GTVn0{k}", "GTV-N{k}")
BODY_NAMES = ("BODY", "External", "EXTERNAL", "Body", "Outline")
CONTOUR_DATA = Tag(0x3006, 0x0050)
_EPS_PIX = 1e-6


@dataclass(frozen=True)
class RoiSpec:
    number: int
    name: str
    role: str  # gtv_t, gtv_n, body, oar, expansion, ring
    interpreted_type: str
    colour: tuple[int, int, int]
    shapes: tuple
    nodes: tuple[int, ...] = ()


@dataclass
class RoiContours:
    spec: RoiSpec
    # per CT slice index k: list of (polygon in pixel coordinates, ContourData text)
    slices: dict[int, list[tuple[np.ndarray, bytes]]] = field(default_factory=dict)

    def mask(self, grid: Grid) -> np.ndarray:
        """uint8 (z, y, x) truth mask: voxel centre inside, even-odd over the slice's polygons."""
        out = np.zeros(grid.shape_zyx, dtype=np.uint8)
        for k, polys in self.slices.items():
            out[k] = rasterize_evenodd([p for p, _ in polys], grid.size[1], grid.size[0])
        return out


def plan_rois(anatomy: Anatomy, rng: np.random.Generator) -> list[RoiSpec]:
    tumour = anatomy.tumour.shape
    specs: list[tuple] = [
        (str(rng.choice(BODY_NAMES)), "body", "EXTERNAL", (0, 255, 0), (anatomy.named["body"],), ()),
        (str(rng.choice(GTV_T_NAMES)), "gtv_t", "GTV", (255, 0, 0), (tumour,), ()),
    ]
    nodes = anatomy.nodes
    if nodes:
        if rng.uniform() < 0.5:
            name = str(rng.choice(GTV_N_SINGLE_NAMES))
            ids = tuple(range(1, len(nodes) + 1))
            specs.append((name, "gtv_n", "GTV", (255, 128, 0), tuple(n.shape for n in nodes), ids))
        else:
            pattern = str(rng.choice(GTV_N_PER_NODE_PATTERNS))
            for k, node in enumerate(nodes, start=1):
                specs.append((pattern.format(k=k), "gtv_n", "GTV", (255, 128, 0), (node.shape,), (k,)))
    specs += [
        ("CTV_GTVp+5mm", "expansion", "CTV", (255, 255, 0), (tumour.expanded(5.0),), ()),
        ("PTV_ring", "ring", "CONTROL", (0, 128, 255), (tumour.expanded(15.0), tumour.expanded(5.0)), ()),
        ("SpinalCord", "oar", "ORGAN", (0, 255, 255), (anatomy.named["cord"],), ()),
        ("Parotid_L", "oar", "ORGAN", (255, 0, 255), (anatomy.named["parotid_left"],), ()),
        ("Parotid_R", "oar", "ORGAN", (128, 0, 255), (anatomy.named["parotid_right"],), ()),
        ("Mandible", "oar", "ORGAN", (230, 230, 180), tuple(anatomy.named["mandible"]), ()),
    ]
    return [
        RoiSpec(number=i, name=n, role=r, interpreted_type=t, colour=c, shapes=s, nodes=ids)
        for i, (n, r, t, c, s, ids) in enumerate(specs, start=1)
    ]


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "roi"


def _settle(poly_mm: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Round to 3 decimals and nudge until no voxel centre lies on the polygon; returns (text, mm, pixel)."""
    x0, y0 = grid.origin[0], grid.origin[1]
    dx, dy = grid.spacing[0], grid.spacing[1]
    p = np.asarray(poly_mm, dtype=np.float64)
    for _ in range(50):
        text = np.char.mod("%.3f", p)
        exact = text.astype(np.float64)
        pix = np.column_stack([(exact[:, 0] - x0) / dx, (exact[:, 1] - y0) / dy])
        bad_rows = np.abs(pix[:, 1] - np.rint(pix[:, 1])) < _EPS_PIX
        _, xs, _, edges = evenodd_crossings([pix], grid.size[1])
        bad_edges = np.unique(edges[np.abs(xs - np.rint(xs)) < _EPS_PIX])
        if not bad_rows.any() and bad_edges.size == 0:
            return text, exact, pix
        p = exact.copy()
        p[bad_rows, 1] += 0.001
        p[bad_edges, 0] += 0.001
        p[(bad_edges + 1) % len(p), 0] += 0.001
    raise RuntimeError("could not move a synthetic contour off the voxel centres")  # pragma: no cover


def contour_rois(specs: list[RoiSpec], grid: Grid, z_text: list[str], step_mm: float = 1.0) -> list[RoiContours]:
    out = []
    for spec in specs:
        roi = RoiContours(spec)
        for k, zt in enumerate(z_text):
            z = float(zt)
            polys = []
            for shape in spec.shapes:
                poly = shape.polygon(z, step_mm)
                if poly is None:
                    continue
                text, _, pix = _settle(poly, grid)
                cells = np.column_stack([text, np.full(len(text), zt)]).ravel()
                data = "\\".join(cells.tolist()).encode("ascii")
                if len(data) % 2:
                    data += b" "
                polys.append((pix, data))
            if polys:
                roi.slices[k] = polys
        out.append(roi)
    return out


def _ref(sop_class: str, sop_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class
    item.ReferencedSOPInstanceUID = sop_uid
    return item


def _set_encoding(ds: Dataset) -> None:
    """Mark datasets as already explicit VR little endian so raw ContourData is written without parsing."""
    ds.set_original_encoding(False, True, ds._character_set)
    for elem in ds.values():
        if getattr(elem, "VR", None) == "SQ":
            for item in elem.value:
                _set_encoding(item)


def write_rtstruct(
    path: Path,
    *,
    ident: Identity,
    study: dw.Study,
    series: dw.Series,
    ct_series_uid: str,
    ct_sop_uids: list[str],
    rois: list[RoiContours],
    sop_uid: str,
    date: str,
    time: str,
    order: list[int],
) -> None:
    """``order``: the order of ROIContourSequence items (a permutation of the ROI list; pairing is by number)."""
    d = dw.new_dataset(dw.RT_STRUCT)
    dw.set_instance(d, sop_uid)
    dw.add_patient_study(d, ident, study)
    dw.add_series(d, ident, series)
    dw.add_frame_of_reference(d, study)
    dw.add_equipment(d, ident, "SYNTHETIC TPS", "Planning 4", "TPS01")
    d.InstanceCreationDate = d.StructureSetDate = date
    d.InstanceCreationTime = d.StructureSetTime = time
    d.InstanceNumber = 1
    d.StructureSetLabel = "RTstruct"
    d.StructureSetName = "HN planning"
    contour_images = Sequence([_ref(dw.CT_IMAGE, u) for u in reversed(ct_sop_uids)])
    ref_series = Dataset()
    ref_series.SeriesInstanceUID = ct_series_uid
    ref_series.ContourImageSequence = contour_images
    ref_study = _ref("1.2.840.10008.3.1.2.3.1", study.uid)
    ref_study.RTReferencedSeriesSequence = Sequence([ref_series])
    ref_for = Dataset()
    ref_for.FrameOfReferenceUID = study.frame_of_reference
    ref_for.RTReferencedStudySequence = Sequence([ref_study])
    d.ReferencedFrameOfReferenceSequence = Sequence([ref_for])
    ss_rois, observations, contours = [], [], []
    for roi in rois:
        spec = roi.spec
        item = Dataset()
        item.ROINumber = spec.number
        item.ReferencedFrameOfReferenceUID = study.frame_of_reference
        item.ROIName = spec.name
        item.ROIGenerationAlgorithm = "MANUAL"
        ss_rois.append(item)
        obs = Dataset()
        obs.ObservationNumber = spec.number
        obs.ReferencedROINumber = spec.number
        obs.RTROIInterpretedType = spec.interpreted_type
        obs.ROIInterpreter = ident.referring_physician
        observations.append(obs)
    for index in order:
        roi = rois[index]
        item = Dataset()
        item.ROIDisplayColor = list(roi.spec.colour)
        seq = []
        number = 0
        for k in sorted(roi.slices, reverse=True):
            for _, data in roi.slices[k]:
                number += 1
                c = Dataset()
                c.ContourImageSequence = Sequence([_ref(dw.CT_IMAGE, ct_sop_uids[k])])
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = data.count(b"\\") // 3 + 1
                c.ContourNumber = number
                c[CONTOUR_DATA] = RawDataElement(CONTOUR_DATA, "DS", len(data), data, 0, False, True)
                seq.append(c)
        item.ContourSequence = Sequence(seq)
        item.ReferencedROINumber = roi.spec.number
        contours.append(item)
    d.StructureSetROISequence = Sequence(ss_rois)
    d.ROIContourSequence = Sequence(contours)
    d.RTROIObservationsSequence = Sequence(observations)
    _set_encoding(d)
    dw.write(d, path)
