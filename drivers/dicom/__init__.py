"""DICOM sources: the storage SCP (C-ECHO, C-STORE; Q/R when enabled) and its spool."""
