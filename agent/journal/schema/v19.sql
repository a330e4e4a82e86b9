-- v19: the DICOM start-up scan (issue 21 item 2, issue 22 item 5) asks which files of a spool
-- folder are indexed, purged or not: by path. Paths start with the date folder and end with a
-- time-ordered UUID, so new rows append to this index rather than dirty random pages.

CREATE INDEX im_instances_path ON im_instances (path);
