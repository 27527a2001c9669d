"""The ``gardien`` command line."""
