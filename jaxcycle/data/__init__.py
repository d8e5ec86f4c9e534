"""Data in and out: image files, and (to come) DICOM, NIfTI and the tensorstore dataset."""
