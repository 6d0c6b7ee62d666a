"""`python -m comfyui_portraittalk.cli`: the `portraittalk` command."""

from . import main

raise SystemExit(main())
