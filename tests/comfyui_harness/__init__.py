"""The ComfyUI test harness: a real ComfyUI tree and server, its client, workflow tools, the offline guard and the test nodes. The tests that use it are in tests/nodes/."""
