"""What each loss's gradient tells the prediction, at each signed error.

    python experiments/gradients.py --out runs/gradients

L1's gradient is +-1 whatever the error; Smooth L1's is linear inside one bin
and +-1 outside. DFL is evaluated on a distribution over bins shaped like a
Gaussian centred on the prediction (``--width`` bins wide): its gradient with
respect to the prediction grows with the error, and its gradient with respect
to the logits is ``softmax - two_hot``. Writes DIR/gradients.json and
DIR/gradients.png.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout

import jax_dfl
from jax_dfl.inspection import distribution_gradient_profile, gradient_profile

SCALAR_LOSSES = {
    "l1": lambda pred, y: jnp.abs(pred - y),
    "smooth_l1": lambda pred, y: optax.huber_loss(pred, y, delta=1.0),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-bins", type=int, default=17)
    p.add_argument("--target", type=float, default=8.3, help="target in bins (mid-range)")
    p.add_argument("--max-error", type=float, default=5.0)
    p.add_argument("--points", type=int, default=201)
    p.add_argument("--width", type=float, default=1.0, help="Gaussian width of the DFL prediction")
    p.add_argument("--out", type=pathlib.Path, required=True)
    return p.parse_args(argv)


def plot(data: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    err = np.array(data["error"])
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.2))
    for name in ("l1", "smooth_l1", "dfl"):
        ax1.plot(err, data[name], label=name)
    ax1.axhline(0, color="k", lw=0.5)
    ax1.set_xlabel("signed error (prediction - target, bins)")
    ax1.set_ylabel("d loss / d prediction")
    ax1.set_title("gradient with respect to the prediction")
    ax1.legend()
    ax1.grid(alpha=0.3)

    ax2.plot(err, data["dfl_logits_grad_norm"], color="C2")
    ax2.set_xlabel("signed error (bins)")
    ax2.set_ylabel("|| softmax - two_hot ||")
    ax2.set_title("DFL gradient norm w.r.t. the logits")
    ax2.grid(alpha=0.3)

    grads = np.array(data["dfl_logits_grad"])
    lim = np.abs(grads).max()
    im = ax3.imshow(
        grads.T,
        aspect="auto",
        origin="lower",
        cmap="RdBu_r",
        vmin=-lim,
        vmax=lim,
        extent=[err[0], err[-1], -0.5, grads.shape[1] - 0.5],
    )
    ax3.axhline(data["config"]["target"], color="k", lw=0.8, ls="--")
    ax3.set_xlabel("signed error (bins)")
    ax3.set_ylabel("bin")
    ax3.set_title("DFL d loss / d logits (dashed: target)")
    fig.colorbar(im, ax=ax3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    errors = jnp.linspace(-args.max_error, args.max_error, args.points)
    data: dict = {"error": np.asarray(errors).tolist()}
    for name, loss in SCALAR_LOSSES.items():
        data[name] = np.asarray(gradient_profile(loss, errors, target=args.target)).tolist()
    dfl = distribution_gradient_profile(
        jax_dfl.distribution_focal_loss,
        errors,
        target=args.target,
        num_bins=args.num_bins,
        width=args.width,
    )
    data["dfl"] = np.asarray(dfl.grad_prediction).tolist()
    data["dfl_prediction"] = np.asarray(dfl.prediction).tolist()
    data["dfl_logits_grad_norm"] = np.asarray(dfl.grad_logits_norm).tolist()
    data["dfl_logits_grad"] = np.asarray(dfl.grad_logits).tolist()
    data["device"] = jax.devices()[0].device_kind
    data["config"] = {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()}

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gradients.json").write_text(json.dumps(data))
    plot(data, args.out / "gradients.png")

    print(f"{'error':>7} {'l1':>6} {'smooth_l1':>9} {'dfl':>8} {'|dfl logits grad|':>18}")
    for i in np.linspace(0, args.points - 1, 11).astype(int):
        print(
            f"{data['error'][i]:7.2f} {data['l1'][i]:6.2f} {data['smooth_l1'][i]:9.2f} "
            f"{data['dfl'][i]:8.3f} {data['dfl_logits_grad_norm'][i]:18.3f}"
        )
    print(f"wrote {args.out}/gradients.json, gradients.png")
    return data


if __name__ == "__main__":
    main()
