"""edgecnn: ship compact CNN classifiers to edge devices.

Importing the package is cheap: torch and every runtime backend are imported lazily by the functions
that need them.
"""

__version__ = "0.1.0"
