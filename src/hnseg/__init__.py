"""hnseg: head and neck tumour segmentation with LiteMedSAM and nnU-Net on CT, PET and MRI.

One module (or subpackage) per workflow stage; see DESIGN.md section 2.
"""

__version__ = "0.1.0"
