"""Real-ComfyUI test harness: environment.py (tree + deps), server.py (ComfyServer,
ComfyClient), workflow.py (UI/API workflow checks), packinfo.py (the pack's own node list),
conftest.py (session fixtures). Each module's docstring says how to use it."""
