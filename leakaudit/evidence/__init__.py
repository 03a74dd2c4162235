"""What the audit measures: per-image metrics, behaviour tests, region ablation, tell discovery,
the sanity check and statistics."""
