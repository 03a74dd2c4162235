"""Option value types shared by every command (``cli.py`` and ``insight/cli.py``), so one
option means one range everywhere and bad values stop before any work."""

from __future__ import annotations

import click

SEED = click.IntRange(0, 2**32 - 1)  # numpy's SeedSequence takes non-negative integers
SIDE = click.IntRange(8, 4096)  # model input side; the cap matches the checkpoint check
POSITIVE = click.IntRange(min=1)
FRACTION = click.FloatRange(0.0, 1.0)
LIME_SAMPLES = click.IntRange(min=8)  # fewer perturbations than this cannot rank superpixels
MARGIN = click.FloatRange(min=0.0)
WINDOW = click.FloatRange(min=1.0)
FORMATS = click.Choice(["imagefolder", "voc", "coco", "csv"])
MODES = click.Choice(["image", "crop"])
