"""Worlds: a bundle of experts in one image space (world.World), the reading and validation of its
inputs into a Request (conditions, the one validation pass), the registry that lists and loads
them (registry), the built-in cartoon-faces world (faces/) and the pretrained worlds (pretrained/)."""
