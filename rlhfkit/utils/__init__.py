"""Small shared utilities: atomic I/O, checkpoints, progress, memory estimates, seeding."""
