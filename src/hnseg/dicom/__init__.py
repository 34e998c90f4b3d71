"""DICOM import: series selection, PET to SUVbw, RTSTRUCT rasterisation and ROI-name matching."""
