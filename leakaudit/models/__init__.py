"""Models: small architectures we train (zoo), training, and loading user checkpoints."""
