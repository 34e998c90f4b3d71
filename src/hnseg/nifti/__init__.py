"""NIfTI cohorts as input: the import stage from NIfTI files (`importer`) and patients sheets written from the
HECKTOR 2022 and nnU-Net raw layouts (`layouts`)."""
