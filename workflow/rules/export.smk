# DICOM export (hnseg.dicom.export): a method's predictions as RTSTRUCT and SEG on each patient's original CT, for
# a planning system or 3D Slicer. Not part of `rule all`: the files carry the patients' identifiers (the CT's
# patient module), so they are written to export/, outside results/, with a README saying so. One method at once:
#   snakemake --cores 2 export/<method>/README.md
# exports every evaluated patient of the method that came in as DICOM (patients imported from NIfTI are listed in
# the README as not exported). Logs and benchmarks name the pseudonymous patient only.
# Resources: a 512x512x120 CT with a 47k-voxel GTV-T and a GTV-N exports in 7 s at 700 MB peak; the demo's LiteMedSAM
# predictions in 0.5 s, its 2-iteration nnU-Net's speckle (60k voxels in thousands of pieces) in 30-40 s (load 15).


rule export_dicom:
    input:
        unpack(export_dicom_inputs),
    output:
        rtstruct="export/{method}/{patient}/rtstruct.dcm",
        seg="export/{method}/{patient}/seg.dcm",
    params:
        options=import_options(),
        code=script_code("export_dicom.py"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    log:
        "logs/export_dicom/{method}/{patient}.log",
    benchmark:
        "results/benchmarks/export_dicom/{method}/{patient}.tsv"
    script:
        "../scripts/export_dicom.py"


rule export_method:
    input:
        dicom_exports_of_method,
    output:
        "export/{method}/README.md",
    params:
        exported=exported_patients,
        skipped=export_skipped_patients,
        code=script_code("export_readme.py"),
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    log:
        "logs/export_method/{method}.log",
    benchmark:
        "results/benchmarks/export_method/{method}.tsv"
    script:
        "../scripts/export_readme.py"
