"""Train the few-shot SPI classifier (:mod:`.siamese`) on a labelled SPI run.

``python -m mpireduce.classify.train_spi RUN.h5 -o spi.pt --labels-per-class 40``

Inputs are polar (:class:`SpiTransform`, ``--layout``) and the embedding is an ensemble of
``--members`` nets trained ``--steps`` each (different seeds). Only ``--labels-per-class``
events of each class are used (chosen at random among the events
whose shape is not ``--exclude-shape``d); they train the embedding and become the support set
whose mean embeddings are the class prototypes. ``--refine-unlabelled`` (off by default) makes
the classifier semi-supervised: the prototypes are refined with the run's other events of allowed
shapes, unlabelled, by pseudo-labels (:func:`refine_prototypes`). Every other event of the run
is scored and the confusion matrix and per-class precision/recall/F1 are printed (and stored in the model
file), separately for the excluded ("unseen") shapes when there are any.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from ..errors import InputError, MpiReduceError
from .spi_data import choose_support, frame_side, load_spi_run


@dataclass(frozen=True)
class SiameseOptions:
    """Hyper-parameters of one training run (recorded in the model file)."""

    steps: int = 150  #: per member (validation runs: 5 x 150 beat 3 x 250; 500 over-fits 40 labels)
    per_class_batch: int = 16  #: examples of each class in one batch (P x K batches)
    lr: float = 2e-3
    margin: float = 0.3
    mining: str = "semi-hard"  #: semi-hard | batch-hard
    width: int = 16
    dim: int = 32
    temperature: float = 0.25  #: of the prototype softmax (argmax does not depend on it)
    seed: int = 0
    threads: int = 2
    polar: bool = True  #: inputs are (radius, angle) grids: circular net, augment by rotating and mirroring
    members: int = 1  #: ensemble of this many nets (seeds seed, seed + 1, ...), each trained ``steps``


def augment_polar(batch, generator):
    """Each sample rotated by a random shift along the angle axis, half of them also mirrored."""
    import torch

    n, size = len(batch), batch.shape[-1]
    shift = torch.randint(0, size, (n,), generator=generator)
    mirror = torch.rand(n, generator=generator) < 0.5
    angle = torch.arange(size)
    index = torch.where(mirror[:, None], -angle[None, :], angle[None, :]) + shift[:, None]
    index = (index % size)[:, None, None, :].expand_as(batch)
    return torch.gather(batch, 3, index)


def fit_siamese(inputs: np.ndarray, labels: np.ndarray, n_classes: int, options: SiameseOptions,
                report: Callable[[str], None] = print):
    """Train an :class:`EmbeddingNet` (or an ensemble of ``options.members``) with a triplet loss.

    Returns (net, prototypes, loss history of the last member).
    """
    if options.members > 1:
        from .siamese import EmbeddingEnsemble, embed, prototypes_of

        fits = [fit_siamese(inputs, labels, n_classes, replace(options, members=1, seed=options.seed + k), report)
                for k in range(options.members)]
        net = EmbeddingEnsemble(options.members, **fits[0][0].kwargs())
        for member, (trained, _, _) in zip(net.members, fits):
            member.load_state_dict(trained.state_dict())
        return net, prototypes_of(embed(net, inputs), labels, n_classes), fits[-1][2]
    import torch

    from .siamese import EmbeddingNet, embed, prototypes_of, triplet_loss
    from .train import augment

    torch.manual_seed(options.seed)
    torch.set_num_threads(options.threads)
    generator = torch.Generator().manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    net = EmbeddingNet(inputs.shape[1], options.width, options.dim, circular=options.polar)
    augment_batch = augment_polar if options.polar else augment  # square flips would mix radius and angle
    optimizer = torch.optim.Adam(net.parameters(), lr=options.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=options.steps)
    by_class = [np.flatnonzero(labels == c) for c in range(n_classes)]
    history = []
    for step in range(options.steps):
        index = np.concatenate([rng.choice(m, options.per_class_batch, replace=len(m) < options.per_class_batch)
                                for m in by_class if len(m)])
        x = augment_batch(torch.from_numpy(inputs[index]), generator)
        net.train()
        optimizer.zero_grad()
        loss = triplet_loss(net(x), torch.from_numpy(labels[index]), options.margin, options.mining)
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append(float(loss.detach()))
        if (step + 1) % 50 == 0:
            report(f"step {step + 1}/{options.steps}: triplet loss {np.mean(history[-50:]):.4f}")
    prototypes = prototypes_of(embed(net, inputs), labels, n_classes)
    return net, prototypes, history


def refine_prototypes(support: np.ndarray, support_labels: np.ndarray, unlabelled: np.ndarray, n_classes: int,
                      iterations: int = 3) -> np.ndarray:
    """Semi-supervised prototypes (C, D) from embeddings: labelled ``support`` plus pseudo-labelled ``unlabelled``.

    Starting from the support prototypes, each iteration gives every unlabelled embedding the
    class of its nearest prototype and recomputes each prototype as the normalised mean of its
    support and pseudo-labelled embeddings (hard k-means seeded by the labels, as in
    semi-supervised prototypical networks). The embedding itself is not changed.
    """
    from .siamese import prototypes_of

    prototypes = prototypes_of(support, support_labels, n_classes)
    for _ in range(iterations):
        pseudo = ((unlabelled[:, None, :] - prototypes[None]) ** 2).sum(axis=2).argmin(axis=1)
        prototypes = prototypes_of(np.concatenate([support, unlabelled]),
                                   np.concatenate([support_labels, pseudo]), n_classes)
    return prototypes


def score_events(net, prototypes: np.ndarray, inputs: np.ndarray, temperature: float) -> np.ndarray:
    """(N, C) prototype class scores of ``inputs``."""
    from .siamese import embed, prototype_scores

    return prototype_scores(embed(net, inputs), prototypes, temperature)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mpireduce.classify.train_spi", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs=1, metavar="RUN.h5", help="simulated SPI run with a truth sidecar")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.pt")
    parser.add_argument("--labels-per-class", type=int, default=40, help="labelled (support) events per class")
    parser.add_argument("--exclude-shape", action="append", default=[], metavar="SHAPE",
                        help="never train on this particle shape; its events are scored as 'unseen' (repeatable)")
    parser.add_argument("--steps", type=int, default=SiameseOptions.steps, help="training steps (batches)")
    parser.add_argument("--mining", choices=("semi-hard", "batch-hard"), default="semi-hard", help="triplet mining")
    parser.add_argument("--size", type=int, default=64, help="side of the input grid (polar: radii and angles)")
    parser.add_argument("--layout", choices=("polar", "square"), default="polar", help="input grid (SpiTransform)")
    parser.add_argument("--width", type=int, default=SiameseOptions.width, help="channels of the first conv layer")
    parser.add_argument("--dim", type=int, default=SiameseOptions.dim, help="embedding dimension")
    parser.add_argument("--members", type=int, default=5, help="ensemble of this many nets, each trained --steps")
    parser.add_argument("--refine-unlabelled", type=int, default=0, metavar="ITERATIONS",
                        help="semi-supervised: refine the prototypes with the run's unlabelled events of allowed "
                             "shapes, pseudo-labelled by the nearest prototype, this many times (0 = off)")
    parser.add_argument("--crop", type=int, default=0, help="side of the centred detector square (0 = frame side)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--max-events", type=int, default=0, help="read at most this many events (0 = all)")
    parser.add_argument("--overwrite", action="store_true")
    return parser


def train_from_args(args: argparse.Namespace, report: Callable[[str], None] = print) -> dict:
    """Train, evaluate on the unlabelled rest of the run, save; returns the stored metrics."""
    from ..evaluate import classification_metrics, format_metrics
    from .model import file_sha256
    from .siamese import embed, save_siamese
    from .spi_transform import SpiTransform

    out, run = Path(args.output), args.runs[0]
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists; choose another -o or pass --overwrite")
    transform = SpiTransform(size=args.size, crop=args.crop or frame_side(run), layout=args.layout)
    data = load_spi_run(run, transform, args.max_events)
    n_classes = len(data.class_names)
    support = choose_support(data.labels, data.shapes, args.labels_per_class, n_classes, args.exclude_shape, args.seed)
    options = SiameseOptions(steps=args.steps, seed=args.seed, threads=args.threads, mining=args.mining,
                             width=args.width, dim=args.dim, polar=args.layout == "polar", members=args.members)
    clock = time.perf_counter()
    net, prototypes, history = fit_siamese(data.inputs[support], data.labels[support], n_classes, options, report)
    rest = np.setdiff1d(np.arange(len(data.labels)), support)
    pool = rest[~np.isin(data.shapes[rest], args.exclude_shape)]
    if args.refine_unlabelled:
        prototypes = refine_prototypes(embed(net, data.inputs[support]), data.labels[support],
                                       embed(net, data.inputs[pool]), n_classes, args.refine_unlabelled)
        report(f"prototypes refined with {len(pool)} unlabelled events (these are also the held-out events)")
    seconds = round(time.perf_counter() - clock, 1)
    predicted = score_events(net, prototypes, data.inputs[rest], options.temperature).argmax(axis=1)
    metrics = {"held_out": classification_metrics(data.labels[rest], predicted, data.class_names)}
    report(format_metrics(metrics["held_out"], f"held-out events ({len(rest)})"))
    unseen = np.isin(data.shapes[rest], args.exclude_shape) | np.isin(data.labels[rest], [0, 3])
    if args.exclude_shape:
        metrics["unseen_shapes"] = classification_metrics(data.labels[rest][unseen], predicted[unseen], data.class_names)
        report(format_metrics(metrics["unseen_shapes"], f"unseen shapes {args.exclude_shape} (+ no_hit, unintended)"))
    metadata = {
        "transform": transform.to_dict(), "temperature": options.temperature, "classes": list(data.class_names),
        "training_data": [{"file": Path(run).name, "sha256": file_sha256(run)}],
        "support": {"labels_per_class": args.labels_per_class, "events": support.tolist(),
                    "excluded_shapes": list(args.exclude_shape)},
        "semi_supervised": {"refine_iterations": args.refine_unlabelled,
                            "unlabelled_events": len(pool) if args.refine_unlabelled else 0},
        "training": {**asdict(options), "seconds": seconds, "loss_history": [round(v, 4) for v in history[::10]]},
        "validation": metrics,
    }
    sha = save_siamese(out, net, prototypes, metadata)
    report(f"trained on {len(support)} labelled events in {seconds} s; wrote {out} (sha256 {sha[:16]}...)")
    return metrics


def main(argv: Optional[List[str]] = None) -> int:
    """Command-line entry point; errors print one line and return 2."""
    args = build_parser().parse_args(argv)
    try:
        train_from_args(args)
    except MpiReduceError as exc:
        print(f"train_spi: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
