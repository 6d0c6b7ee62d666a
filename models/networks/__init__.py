"""The networks: AnimateNet, IdentityNet, their attention processors, audio and image encoders, codecs."""
