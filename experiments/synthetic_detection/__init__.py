"""synthetic_detection experiment (see the README)."""
