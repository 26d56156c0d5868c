"""Class coverage of generated samples: the mode-collapse detector.

The evaluation classifier labels every generated image; a generator that drops digits shows up
as classes with (almost) no samples and as a large KL(generated || real) between the predicted
class distribution and the real one (the "mode score" idea of Che et al. 2017, "Mode
Regularized Generative Adversarial Networks", without its Inception-score factor).
"""

from __future__ import annotations

import torch

# A class counts as covered when the generator produces it at >= 20% of its real frequency
# (2% of samples for 10 balanced classes). An absolute 1% is too low: a 97%-accurate classifier
# mislabels ~3% of the images of a collapsed generator, and confusions concentrate on one or
# two neighbour classes (4->9, 7->1), so a single real mode would "cover" a second class.
DEFAULT_MIN_RELATIVE_SHARE = 0.2
# Smoothing of the real distribution only, so KL stays finite if the generator produces a class
# that is absent from the reference set; generated classes with p = 0 contribute 0 (0 log 0).
KL_EPS = 1e-6


def class_histogram(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Counts per class [n_classes] (int64) of integer labels."""
    labels = labels.detach().cpu().long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes - 1}]")
    return torch.bincount(labels, minlength=n_classes)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, eps: float = KL_EPS) -> float:
    """KL(p || q) in nats between two discrete distributions (normalised here); q is smoothed."""
    p = p.double() / p.double().sum()
    q = (q.double() / q.double().sum() + eps) / (1 + eps * q.numel())
    return float(torch.xlogy(p, p).sum() - (p * q.log()).sum())


def class_coverage(fake_logits: torch.Tensor, real_labels: torch.Tensor | None = None,
                   n_classes: int | None = None,
                   min_relative_share: float = DEFAULT_MIN_RELATIVE_SHARE) -> dict[str, float]:
    """Predicted-class histogram of generated samples and how far it is from the real classes.

    fake_logits: classifier logits [N, C] of the generated images (argmax = predicted class).
    real_labels: labels of the real reference set; the target class distribution (uniform when
        None). Ground-truth labels, not the classifier's predictions on real images, so the
        classifier's own errors on a perfect generator show up in the real floor, not hidden.
    Returns classes_covered (classes with share >= min_relative_share x real share), class_kl
    (KL(generated || real), nats; log(C) for a collapse onto one of C balanced classes) and per
    class `class_count_<c>`, `class_frac_<c>` and the target share `class_real_frac_<c>`.
    """
    if fake_logits.ndim != 2 or fake_logits.shape[0] == 0:
        raise ValueError(f"fake_logits: expected a non-empty [N, C] matrix, got {list(fake_logits.shape)}")
    n_classes = n_classes or fake_logits.shape[1]
    counts = class_histogram(fake_logits.argmax(dim=1), n_classes)
    if real_labels is None:
        real_p = torch.full((n_classes,), 1.0 / n_classes, dtype=torch.float64)
    else:
        real_counts = class_histogram(real_labels, n_classes)
        if real_counts.sum() == 0:
            raise ValueError("real_labels: empty")
        real_p = real_counts.double() / real_counts.sum()
    frac = counts.double() / counts.sum()
    # Classes absent from the real set cannot be "covered"; they still raise the KL.
    covered = (real_p > 0) & (frac >= min_relative_share * real_p)
    out: dict[str, float] = {
        "classes_covered": float(covered.sum()),
        "class_kl": kl_divergence(counts, real_p),
        "class_entropy": float(-torch.xlogy(frac, frac).sum()),
    }
    for c in range(n_classes):
        out[f"class_count_{c}"] = float(counts[c])
        out[f"class_frac_{c}"] = float(frac[c])
        out[f"class_real_frac_{c}"] = float(real_p[c])
    return out
