"""toy_regression experiment (see the README)."""
