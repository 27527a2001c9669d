"""The demo hospital: its configuration schema and the generator of its three environments."""
