"""Runtime: checkpoints, device meshes, console messages."""
