"""Which image shapes each network family builds: the rule the networks and the params check share.

Plain Python, no torch: `ganmodel.config` validates a recipe against the data's shape with it, and
every stage validates params, so importing this must not load the networks (it lives beside the
package, not in `ganmodel/networks/`, whose `__init__` imports torch and every family).

- The MLP families (`mlp`, the seed article's exact net, and `mlp_leaky`) build 1x28x28 only: their
  layer widths are the article's (784 = 28 * 28 in and out).
- The conv families (`conv`, `dcgan`) build C x R x R for any C and any R = r0 * 2^n with r0 in
  {4, 5, 6, 7} and n >= 2: G starts at r0 x r0 and doubles n times, D halves n times (DCGAN,
  Radford et al. 2016: strided and transposed convolutions, no pooling). 28 = 7 * 2^2 is today's net.
"""

from __future__ import annotations

from typing import Any

MNIST_SHAPE = (1, 28, 28)  # the built-in datasets' [C, H, W], and the default of every builder
CONV_BASES = (4, 5, 6, 7)  # the sides G starts from (one octave: every R has at most one r0)
MIN_DOUBLINGS = 2  # at least two up-blocks in G, two strided convs in D (today's net at 28)
# How each family (ganmodel.choices.ARCHITECTURES) sizes itself: "conv" any C x R x R of the rule
# above, "fixed" MNIST_SHAPE only. tests/test_choices.py checks it names every family.
FAMILY_KIND = {"conv": "conv", "dcgan": "conv", "mlp": "fixed", "mlp_leaky": "fixed"}


def shape_text(shape: tuple[int, ...] | list[int]) -> str:
    """[3, 32, 32] -> '3x32x32' (how errors name a shape)."""
    return "x".join(str(int(s)) for s in shape)


def conv_plan(resolution: int) -> tuple[int, int] | None:
    """(r0, n) with resolution == r0 * 2^n, r0 in CONV_BASES and n >= MIN_DOUBLINGS; None when
    there is none. Unique: CONV_BASES spans one octave."""
    n = 0
    r = resolution
    while r >= 2 * CONV_BASES[0] and r % 2 == 0:
        r //= 2
        n += 1
    if r in CONV_BASES and n >= MIN_DOUBLINGS:
        return r, n
    return None


def nearest_conv_resolutions(resolution: int) -> list[int]:
    """The buildable sides next to `resolution`: the largest below and the smallest above it."""
    smallest = CONV_BASES[0] * 2 ** MIN_DOUBLINGS
    below = [r for r in range(smallest, resolution) if conv_plan(r)]
    above = next(r for r in range(max(resolution + 1, smallest), 8 * resolution + 64) if conv_plan(r))
    return [*below[-1:], above]


def buildable(arch: str, image_shape: tuple[int, ...] | list[int]) -> str | None:
    """None if family `arch` builds images of `image_shape` [C, H, W], else why not, as a predicate
    of the family that names the shape ("builds 1x28x28 images only, not 3x32x32"): the networks
    raise it as a ValueError, params as an error naming the keys to change."""
    shape = tuple(int(s) for s in image_shape)
    kind = FAMILY_KIND.get(arch)
    if kind is None:
        return f"is not a known architecture (expected one of {sorted(FAMILY_KIND)})"
    if kind == "fixed":
        return None if shape == MNIST_SHAPE else \
            f"builds {shape_text(MNIST_SHAPE)} images only, not {shape_text(shape)}"
    if len(shape) != 3 or shape[0] < 1 or shape[1] != shape[2]:
        return f"builds square C x R x R images only, not {shape_text(shape)}"
    if conv_plan(shape[1]) is None:
        near = " or ".join(f"{r}x{r}" for r in nearest_conv_resolutions(shape[1]))
        return (f"cannot build {shape_text(shape)} images (the side must be 4, 5, 6 or 7 times a power "
                f"of 2, 16 or more; nearest: {near})")
    return None


def recipe_shape_error(preset: str, arch: str, presets: dict[str, dict[str, Any]],
                       image_shape: tuple[int, int, int], default: str = "") -> str | None:
    """Why train recipe `preset` (`custom`: `arch` chosen by hand) cannot build the data's images
    of `image_shape`, as a params error naming the keys to change; None when it can. `presets` is
    `ganmodel.config.PRESETS`, from which the fix is chosen (the preset `default` named first)."""
    reason = buildable(arch, image_shape)
    if reason is None:
        return None
    c, r = image_shape[0], image_shape[1]
    by_preset = preset != "custom"
    who = f"train.preset: {preset} (arch {arch})" if by_preset else f"train.arch: {arch}"
    # The default recipe first, then the rest in their order in `presets`.
    fits = sorted((name for name, p in presets.items()
                   if "arch" in p and buildable(p["arch"], image_shape) is None),
                  key=lambda name: name != default)
    archs = [a for a in FAMILY_KIND if buildable(a, image_shape) is None]
    if by_preset and fits:
        fix = f"choose train.preset {'/'.join(fits)}"
    elif not by_preset and archs:
        fix = f"choose train.arch {'/'.join(archs)}"
    else:  # no family builds it: the side is not 4-7 times a power of 2
        fix = f"set data.resolution {' or '.join(map(str, nearest_conv_resolutions(r)))}"
    return f"{who} {reason}; data.channels {c} and data.resolution {r} give {shape_text(image_shape)}: {fix}"
