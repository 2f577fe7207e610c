"""edgecnn: ship compact CNN classifiers to edge devices.

Importing the package is cheap: torch and every runtime backend are imported lazily by the functions
that need them.
"""

import os

__version__ = "0.1.0"

# ONNX Runtime sends usage telemetry from its C++ core (DNS lookups of Microsoft's event host every
# few seconds) and writes a device id under ~/.cache unless this is set before it is first loaded;
# its Python `disable_telemetry_events()` does not stop it, so a process that imported onnxruntime
# before edgecnn keeps it on. edgecnn makes no request you did not ask for.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
