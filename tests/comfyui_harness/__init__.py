"""The ComfyUI test harness: a real ComfyUI tree and server, its client, workflow tools, the offline guard and the
test nodes. The tests that use it are in tests/nodes/.

environment.py (the ComfyUI tree and its requirements), server.py (ComfyServer, ComfyClient), workflow.py (UI/API
workflow checks), packinfo.py (the pack's own node list), graphs.py (the generation graph), reliability.py and
offline.py (runs that may not reach the network), browser/ (Chromium), testnodes/ (PTTest* helper nodes). Each
module's docstring says how to use it.
"""
