"""Model files: safe reading and writing, the parts of a model built from its config, conversion and assembly from other projects' checkpoints."""
