"""A deterministic synthetic head-and-neck DICOM cohort with its ground truth.

Per patient: study A (RT planning PET/CT: CT, FDG PET in BQML, RTSTRUCT on the CT, one frame of reference) and
study B (T1w and T2w axial spin echo MR in their own frame of reference, in a known pose relative to the CT),
written like a TCIA/PACS export, plus truth sidecars (labels, ROI masks, SUV, MR pose, displacement field,
landmarks, and the fake identifying data). Everything is derived from (cohort seed, patient id) only.

    patient_ids(n) -> ["SYN001", ...]
    generate_patient(patient_id, seed, dicom_dir, truth_dir, size="demo") -> summary dict
    SIZES: "demo" (CPU sized) and "realistic" grid definitions
    build_model(patient_id, seed, size) -> PatientModel: everything drawn at random, nothing written

Layout: seeding (random streams, UIDs), sizes, geometry (grids, shapes, even-odd rasteriser), anatomy (tissue
shapes, tumour and node placement), imaging (CT/PET/MR contrast and image formation), pose (MR pose and its
inverse), identity (fake PHI, dates, times), dicom_writer and series (IOD modules, CT/PET/MR writers), rtstruct
(ROI plan, contours, RTSTRUCT, truth masks), model (all random draws of a patient), volumes (CT, SUV, MR and
displacement arrays), cohort (patient_ids, generate_patient, truth sidecars).

generate_patient makes clean patients only. The "messy" variants of reference/dicom.md section 7 (scouts,
shuffled names, several RTSTRUCTs, PET traps, odd MR, geometry traps, encodings) live in
:mod:`hnseg.synthetic.messy` (`make_messy_patient`, `MESSY_VARIANTS`, `OUTCOMES`): independent flags applied to the
files after the clean patient is written, so that a variant never changes the random draws of the clean patient.
"""

from hnseg.synthetic.cohort import generate_patient, patient_ids
from hnseg.synthetic.model import PatientModel, build_model
from hnseg.synthetic.sizes import SIZES, SizeSpec

__all__ = ["SIZES", "PatientModel", "SizeSpec", "build_model", "generate_patient", "patient_ids"]
