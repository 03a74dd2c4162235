"""Look inside a model: filters, feature maps, class/channel visualisation, DeepDream, pixel
influence, a classification viewer and trained-vs-untrained views, plus a measured witness.

Every view is a plain function returning numpy arrays or small dataclasses; ``page.py`` turns
them into one self-contained HTML page and ``cli.py`` exposes ``leakaudit insight``. These are
second opinions that need no annotation: a class visualisation that is a coloured square in a
corner is a tell read from the weights. Only ``witness.py`` produces numbers meant for
``summary.json`` (informational).
"""

N_CHANNEL_VIS = 8  # channels of the deepest watched layer visualised (page default, --channels)
