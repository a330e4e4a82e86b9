"""Imaging: the study index over the DICOM spool, exams, stability and forwarding."""
