"""What each loss's gradient tells the prediction, and what that depends on.

    python -m experiments.gradients --out runs/gradients

L1's gradient is +-1 whatever the error; Smooth L1's is linear inside one bin
and +-1 outside; L2's is the error. A distribution loss (DFL, HL-Gauss, L1 on
the decoded expectation) has no single "gradient with respect to the
prediction": it acts on the logits, and what that does to the prediction
depends on the shape of the distribution. So the distribution losses are
evaluated along several location families of logits (Gaussian, Laplace,
skewed, bimodal; see jax_dfl.inspection.FAMILIES), each moved ``error`` bins
from the target, and their gradient along the family is divided by
``d decode / d location``. Writes DIR/gradients.json and DIR/gradients.png.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jax_dfl
from jax_dfl.histogram_losses import hl_gauss_loss
from jax_dfl.inspection import FAMILIES, distribution_gradient_profile, gradient_profile

SCALAR_LOSSES = {
    "l1": lambda pred, y: jnp.abs(pred - y),
    "smooth_l1": lambda pred, y: optax.huber_loss(pred, y, delta=1.0),
    "l2": lambda pred, y: 0.5 * jnp.square(pred - y),
}
DISTRIBUTION_LOSSES = {
    "dfl": jax_dfl.distribution_focal_loss,
    "hl_gauss_0.75": lambda logits, y: hl_gauss_loss(logits, y, sigma=0.75),
    "dist_l1": lambda logits, y: jnp.abs(jax_dfl.decode(logits) - y),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-bins", type=int, default=17)
    p.add_argument("--target", type=float, default=8.3, help="target in bins (mid-range)")
    p.add_argument("--max-error", type=float, default=5.0)
    p.add_argument("--points", type=int, default=201)
    p.add_argument("--width", type=float, default=1.0, help="scale of each family, in bins")
    p.add_argument("--out", type=pathlib.Path, required=True)
    return p.parse_args(argv)


def plot(data: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    err = np.array(data["error"])
    families = list(data["families"])
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    for ax, family in zip(axes.flat[:4], families, strict=True):
        fam = data["families"][family]
        pred_err = np.array(fam["prediction"]) - data["config"]["target"]
        for i, name in enumerate(SCALAR_LOSSES):
            ax.plot(err, data[name], color=f"C{i}", lw=1, ls=":", label=f"{name} (scalar)")
        for i, name in enumerate(DISTRIBUTION_LOSSES, start=len(SCALAR_LOSSES)):
            ax.plot(pred_err, fam[name], color=f"C{i}", label=name)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlim(-data["config"]["max_error"], data["config"]["max_error"])
        # Symlog beyond +-1: the skewed family reaches about 30; sign changes near 0 stay visible.
        ax.set_yscale("symlog", linthresh=1)
        ax.set_xlabel("error of the decoded prediction (bins)")
        ax.set_ylabel("d loss / d prediction (symlog)")
        ax.set_title(f"{family} family of logits")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    ax = axes.flat[4]
    for i, family in enumerate(families):
        fam = data["families"][family]
        pred_err = np.array(fam["prediction"]) - data["config"]["target"]
        ax.plot(pred_err, fam["dfl_logits_grad_norm"], color=f"C{i}", label=f"dfl, {family}")
        ax.plot(pred_err, fam["hl_gauss_0.75_logits_grad_norm"], color=f"C{i}", ls="--", lw=1)
    ax.set_xlim(-data["config"]["max_error"], data["config"]["max_error"])
    ax.set_xlabel("error of the decoded prediction (bins)")
    ax.set_ylabel("|| d loss / d logits ||")
    ax.set_title("logit-gradient norm (solid dfl, dashed hl_gauss_0.75)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)

    ax = axes.flat[5]
    grads = np.array(data["dfl_logits_grad"])
    lim = np.abs(grads).max()
    im = ax.imshow(
        grads.T,
        aspect="auto",
        origin="lower",
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        extent=[err[0], err[-1], -0.5, grads.shape[1] - 0.5],
    )
    ax.axhline(data["config"]["target"], color="k", lw=0.8, ls="--")
    ax.set_xlabel("location - target (bins), Gaussian family")
    ax.set_ylabel("bin")
    ax.set_title("dfl d loss / d logits = softmax - two_hot (dashed: target)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    errors = jnp.linspace(-args.max_error, args.max_error, args.points)
    data: dict = {"error": np.asarray(errors).tolist(), "families": {}}
    for name, loss in SCALAR_LOSSES.items():
        data[name] = np.asarray(gradient_profile(loss, errors, target=args.target)).tolist()
    for family in FAMILIES:
        fam: dict = {}
        for name, loss in DISTRIBUTION_LOSSES.items():
            out = distribution_gradient_profile(
                loss, errors, target=args.target, num_bins=args.num_bins, width=args.width, family=family
            )
            fam[name] = np.asarray(out.grad_prediction).tolist()
            fam[f"{name}_logits_grad_norm"] = np.asarray(out.grad_logits_norm).tolist()
            fam["prediction"] = np.asarray(out.prediction).tolist()
            if family == "gaussian" and name == "dfl":
                # Kept at the top level too: the Gaussian family was this script's only one.
                data["dfl"] = fam["dfl"]
                data["dfl_prediction"] = fam["prediction"]
                data["dfl_logits_grad_norm"] = fam["dfl_logits_grad_norm"]
                data["dfl_logits_grad"] = np.asarray(out.grad_logits).tolist()
        data["families"][family] = fam
    data["device"] = jax.devices()[0].device_kind
    data["config"] = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gradients.json").write_text(json.dumps(data))
    plot(data, args.out / "gradients.png")

    print("d loss / d prediction at each location error (bins); dist_l1 is +-1 for every family")
    header = f"{'error':>7} {'l1':>5} {'l2':>6}" + "".join(f" {'dfl ' + f:>13}" for f in FAMILIES)
    print(header)
    for i in np.linspace(0, args.points - 1, 11).astype(int):
        row = f"{data['error'][i]:7.2f} {data['l1'][i]:5.1f} {data['l2'][i]:6.2f}"
        row += "".join(f" {data['families'][f]['dfl'][i]:13.3f}" for f in FAMILIES)
        print(row)
    print(f"wrote {args.out}/gradients.json, gradients.png")
    return data


if __name__ == "__main__":
    main()
