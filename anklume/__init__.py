"""anklume: reproducible home-lab infrastructure on Incus."""

__version__ = "0.1.0"
