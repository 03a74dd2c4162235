"""What can tell discovery see at best? (docs/validity.md §5, issue 13's "honest limits")

Discovery is run on *idealised* attribution maps: noise + 0.5 on the object + 1.0 exactly on
each image's tell, i.e. a model that relies on the tell and nothing else. A case missed here is a
miss of discovery itself, not of a model that failed to learn the tell. No training, about a
minute on one core:

    .venv/bin/python examples/discovery_limits.py               # 300 images, 48 px, seed 0
    .venv/bin/python examples/discovery_limits.py --seeds 0,1,2 # the table once per seed

Every case plants a 10-px mark at a random place per image in every class (its own colour per
class) at prevalence 1, unless its name says otherwise. Two cases are not marks: a *global
colour cast* (each class's images tinted by 0.15 × (colour − 0.5), attribution on the whole
image) and a *patch in the object's own colour* (a 10-px box filled with that image's object
colour, which differs per image). Columns: whether the top suspect is strong, its score, and
the share of tell-bearing images whose tell is covered by half or more by the box of the top
strong suspect, and of any strong suspect. The class colours are drawn per seed (uniform in
RGB), so two classes' tells can fall in one of discovery's colour bins: that one colour then
predicts two classes, and discovery reports the classes as separate suspects.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from leakaudit.data.samples import Dataset
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.evidence.discovery import discover_tells
from leakaudit.experiments.power import suspect_coverage

N_IMAGES, SIDE, BOX = 300, 48, 10
BASE = TellSpec(size=BOX, position="random")
CASES: dict[str, TellSpec | str] = {
    "solid": BASE,
    "solid, JPEG q50": replace(BASE, jpeg_quality=50),
    "solid 6 px": replace(BASE, size=6),
    "solid 4 px": replace(BASE, size=4),
    "text": replace(BASE, kind="text"),
    "border (frame)": replace(BASE, kind="border"),
    "noise texture (σ 0.2)": replace(BASE, kind="noise"),
    "noise, JPEG q50": replace(BASE, kind="noise", jpeg_quality=50),
    "logo (α 0.6)": replace(BASE, kind="logo"),
    "logo, JPEG q50": replace(BASE, kind="logo", jpeg_quality=50),
    "text, JPEG q50": replace(BASE, kind="text", jpeg_quality=50),
    "border, JPEG q50": replace(BASE, kind="border", jpeg_quality=50),
    "solid, prevalence 0.5": replace(BASE, prevalence=0.5),
    "global colour cast": "cast",
    "a patch in the object's own colour": "own",
}


def class_colours(n_classes: int, seed: int) -> dict[int, tuple[float, float, float]]:
    rng = np.random.default_rng(1000 + seed)
    return {k: tuple(float(v) for v in rng.uniform(0, 1, 3)) for k in range(n_classes)}


def colour_cast(ds: Dataset, colours: dict) -> tuple[Dataset, list[np.ndarray]]:
    out = []
    for s in ds:
        tint = 0.15 * (np.asarray(colours[s.label], np.float32) - 0.5)
        out.append(s.with_(image=np.clip(s.image + tint, 0, 1).astype(np.float32)))
    masks = [np.ones(s.shape[:2], bool) for s in ds]
    return Dataset(out, list(ds.class_names)), masks


def own_colour_patch(ds: Dataset, seed: int) -> tuple[Dataset, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    out, masks = [], []
    for s in ds:
        h, w = s.shape[:2]
        y, x = int(rng.integers(0, h - BOX + 1)), int(rng.integers(0, w - BOX + 1))
        colour = s.image[s.region].mean(axis=0) if s.region.any() else s.image.mean(axis=(0, 1))
        img = s.image.copy()
        img[y : y + BOX, x : x + BOX] = colour
        mask = np.zeros((h, w), bool)
        mask[y : y + BOX, x : x + BOX] = True
        out.append(s.with_(image=img, tell=mask))
        masks.append(mask)
    return Dataset(out, list(ds.class_names)), masks


def ideal_maps(ds: Dataset, masks: list[np.ndarray | None], seed: int) -> np.ndarray:
    """Noise + 0.5 on the object + 1.0 on each image's tell: attribution exactly on the tell."""
    rng = np.random.default_rng(seed)
    maps = rng.random((len(ds), SIDE, SIDE)) * 0.2 + 0.5 * np.stack([s.region for s in ds])
    for i, m in enumerate(masks):
        if m is not None:
            maps[i] += m
    return maps.astype(np.float32)


def run_case(spec: TellSpec | str, seed: int) -> tuple[bool, float, float, float]:
    ds = make_shapes(N_IMAGES, seed=seed, size=SIDE)
    colours = class_colours(len(ds.class_names), seed)
    if spec == "cast":
        ds, masks = colour_cast(ds, colours)
    elif spec == "own":
        ds, masks = own_colour_patch(ds, seed)
    else:
        assert isinstance(spec, TellSpec)
        ds = poison(ds, replace(spec, colours=colours), seed=seed)
        masks = [s.tell if s.tell is not None and s.tell.any() else None for s in ds]
    regions = np.stack([s.region for s in ds])
    res = discover_tells(ideal_maps(ds, masks, seed), ds.images(), ds.labels(), regions=regions,
                         seed=seed)  # fmt: skip
    if not res.suspects:
        return False, 0.0, float("nan"), float("nan")
    top = res.suspects[0]
    strong = [s for s in res.suspects if s.strong]
    if not strong:  # nothing to test: no coverage to speak of (shown as –)
        return False, float(top.score), float("nan"), float("nan")
    return (bool(top.strong), float(top.score), suspect_coverage(strong[:1], ds),
            suspect_coverage(strong, ds))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (data, colours, maps)")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{N_IMAGES} images at {SIDE} px, idealised maps, seeds {seeds}\n")
    print("| case | strong suspect? | top score | coverage, top | coverage, all strong |")
    print("|---|---|---|---|---|")
    for name, spec in CASES.items():
        got = [run_case(spec, seed) for seed in seeds]
        strong = " / ".join("yes" if g[0] else "**no**" for g in got)
        score = " / ".join(f"{g[1]:.2f}" for g in got)
        top, every = (
            [("–" if not np.isfinite(g[k]) else f"{g[k]:.2f}") for g in got] for k in (2, 3)
        )
        print(f"| {name} | {strong} | {score} | {' / '.join(top)} | {' / '.join(every)} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
