"""Does a class visualisation carry its tell? The insight witness on the demo's models.

Trains (or loads) the demo's clean and poisoned SmallCNN per seed, visualises every class logit
(activation maximisation, 500 steps, seeded) and measures, for each class, its own tell's box
and colour (``leakaudit.insight.witness.class_witness``). A class "carries its tell" when the
dominant colour near the tell box is nearer to its own tell colour than to every other class's
and within 0.5 of it (RGB distance scaled to [0, 1]). The rule was fixed before the first run.

    python examples/insight_witness.py --seeds 0,1,2,3,4 [--full] --models out/insight_models \
        --out out/insight_witness [--picture docs/insight_witness.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from leakaudit.data.samples import split_indices
from leakaudit.data.synthetic import make_shapes
from leakaudit.data.tells import TellSpec, poison
from leakaudit.experiments.demo import DemoConfig, train_model
from leakaudit.insight.activation_max import class_visualisations
from leakaudit.insight.common import input_shape
from leakaudit.insight.witness import class_witness, colour_distance
from leakaudit.models.load import load_model, save_checkpoint
from leakaudit.runtime import configure

MAX_DISTANCE = 0.5


def models_for(c: DemoConfig, folder: Path, tag: str) -> dict:
    """The demo's two models for ``c`` (trained here unless already saved in ``folder``)."""
    out = {}
    spec = TellSpec(size=c.tell_size, position=c.tell_position, prevalence=c.prevalence)
    paths = {n: folder / f"{tag}_s{c.seed}_{n}" / "model.pt" for n in ("clean", "poisoned")}
    if all(p.is_file() for p in paths.values()):
        return {n: load_model(p) for n, p in paths.items()}
    clean = make_shapes(c.n_images, seed=c.seed, size=c.size, n_classes=c.n_classes)
    data = {"clean": clean, "poisoned": poison(clean, spec, seed=c.seed + 1)}
    tr, te = split_indices(len(clean), c.test_fraction, seed=c.seed + 2)
    for name in ("clean", "poisoned"):
        model, acc = train_model(c, data[name], tr, te, name, progress=False)
        save_checkpoint(model, "small_cnn", {"width": c.width}, clean.class_names, None,
                        {"accuracy": acc}, paths[name], seed=c.seed)  # fmt: skip
        out[name] = model
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--full", action="store_true", help="full demo config (default: quick)")
    ap.add_argument("--models", default="out/insight_models")
    ap.add_argument("--out", default="out/insight_witness")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--picture", default=None, help="PNG of the first seed's class pictures")
    args = ap.parse_args()
    configure()
    tag = "full" if args.full else "quick"
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        c = DemoConfig(seed=seed) if args.full else DemoConfig.quick(seed)
        spec = TellSpec(size=c.tell_size, position=c.tell_position, prevalence=c.prevalence)
        box = spec.box_for(c.size, c.size, np.random.default_rng(0))  # fixed corner: rng unused
        palette = [spec.colour_for(k) for k in range(c.n_classes)]
        suspects = [(box, col) for col in palette]
        names = [str(k) for k in range(c.n_classes)]
        for name, model in models_for(c, Path(args.models), tag).items():
            wit = class_witness(model, names, suspects, c.size, seed, steps=args.steps)
            for k, w in enumerate(wit):
                own = w["suspects"][k]
                dists = [colour_distance(own["dominant_colour"], col) for col in palette]
                carries = int(np.argmin(dists)) == k and own["colour_distance"] < MAX_DISTANCE
                rows.append({"config": tag, "seed": seed, "model": name, "class": k,
                             "energy_ratio": own["energy_ratio"],
                             "near_energy_ratio": own["near_energy_ratio"],
                             "colour_distance": own["colour_distance"],
                             "dominant_colour": own["dominant_colour"],
                             "nearest_tell_colour": int(np.argmin(dists)),
                             "carries": bool(carries)})  # fmt: skip
                r = rows[-1]
                print(
                    f"{tag} seed {seed} {name:8s} class {k}: energy ×{r['energy_ratio']:.2f} "
                    f"near ×{r['near_energy_ratio']:.2f} "
                    f"colour dist {r['colour_distance']:.2f} "
                    f"nearest tell {r['nearest_tell_colour']} carries {carries}",
                    flush=True,
                )
            if args.picture and seed == int(args.seeds.split(",")[0]):
                _picture(model, c, name, Path(args.picture), args.steps, seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"witness_{tag}.json").write_text(json.dumps(rows, indent=1))
    for name in ("clean", "poisoned"):
        mine = [r for r in rows if r["model"] == name]
        by_seed = {}
        for r in mine:
            by_seed.setdefault(r["seed"], []).append(r["carries"])
        print(name, {s: f"{sum(v)}/{len(v)}" for s, v in by_seed.items()})


def _picture(model, c: DemoConfig, name: str, path: Path, steps: int, seed: int) -> None:
    """Append one row (this model's class pictures, upscaled ×2) to a PNG strip."""
    from PIL import Image

    vis = class_visualisations(model, c.n_classes, input_shape(model, c.size), (steps,), seed)
    row = np.concatenate([np.pad(v.images[-1], ((2, 2), (2, 2), (0, 0)), constant_values=1)
                          for v in vis], axis=1)  # fmt: skip
    row = np.repeat(np.repeat(row, 2, 0), 2, 1)
    img = (np.clip(row, 0, 1) * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if name != "clean" and path.is_file():
        img = np.concatenate([np.asarray(Image.open(path).convert("RGB")), img], axis=0)
    Image.fromarray(img).save(path, optimize=True)


if __name__ == "__main__":
    main()
