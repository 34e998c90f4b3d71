"""Adapter for rule export_method: the README beside a method's DICOM export (it says the files hold identifiers)."""

from hnseg.dicom.export import write_readme
from hnseg.runlog import log_to_file

sm = snakemake
log = log_to_file(sm.log[0])
write_readme(sm.output[0], sm.wildcards.method, list(sm.params.exported), dict(sm.params.skipped))
for patient, why in sorted(sm.params.skipped.items()):
    log.warning("patient %s: not exported as DICOM: %s", patient, why)
log.info("%s: %d patient(s) exported as DICOM", sm.wildcards.method, len(sm.params.exported))
