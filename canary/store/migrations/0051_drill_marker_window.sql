-- drills: the pipeline looks up the markers whose window covers each batch (canary/drills/tagging.py).
CREATE INDEX drill_markers_window ON drill_markers (valid_until);
