"""A run folder on disk: its settings and status (run.json), dataset list, checkpoints, metrics and exports."""
