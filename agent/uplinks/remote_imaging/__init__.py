"""[uplinks.<name>] type = "remote_imaging": the city remote-imaging platform (seed 003 §3.2)."""
