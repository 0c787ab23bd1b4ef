"""The experiments: each a package, run as a module (``python -m experiments.<name>.main``)."""
