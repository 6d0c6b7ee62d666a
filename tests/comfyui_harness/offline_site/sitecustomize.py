"""Put on a ComfyUI server's PYTHONPATH by tests/comfyui_harness/offline.py (`server_env`): Python imports
this module at startup, before main.py, and it refuses every non-loopback connection from then on.

It then runs the sitecustomize it shadows (if any), so the interpreter's own start-up hooks still run.
"""

import importlib.util
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_portraittalk_offline_guard", os.path.join(_here, "..", "offline.py"))
_guard = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _guard
_spec.loader.exec_module(_guard)
_guard.install()

for _dir in sys.path:
    _other = os.path.join(_dir or os.getcwd(), "sitecustomize.py")
    if os.path.abspath(os.path.dirname(_other)) != _here and os.path.isfile(_other):
        _spec2 = importlib.util.spec_from_file_location("_shadowed_sitecustomize", _other)
        try:
            _spec2.loader.exec_module(importlib.util.module_from_spec(_spec2))
        except Exception as _err:  # never keep the server from starting
            print(f"[offline-guard] the shadowed {_other} failed: {_err!r}", file=sys.stderr)
        break
