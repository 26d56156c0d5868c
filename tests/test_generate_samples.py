"""`ganmodel generate --out-dir`: one PNG per sample (a sub-folder per class when conditional),
greyscale or RGB, written all or nothing; `.npy` and grids in the model's image shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow_helpers import make_generator
from PIL import Image
from torch import nn

from ganmodel.figures import to_pixels
from ganmodel.registry import cli
from ganmodel.registry.sample_files import class_folders


class TinyColourGenerator(nn.Module):
    """What a colour generator looks like to `generate`: z_dim, n_classes, image_shape."""

    def __init__(self, n_classes: int = 0, shape: tuple[int, int, int] = (3, 8, 8)) -> None:
        super().__init__()
        self.z_dim, self.n_classes, self.image_shape = 4, n_classes, shape
        self.fc = nn.Linear(4, int(np.prod(shape)))
        self.embed = nn.Embedding(max(n_classes, 1), 4)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = z if y is None else z + self.embed(y)
        return torch.tanh(self.fc(h)).view(-1, *self.image_shape)


@pytest.fixture
def colour_model(tmp_path: Path, monkeypatch):
    """A file path that `generate` loads as a TinyColourGenerator (set `.g` and `.meta` to change it)."""
    import ganmodel.artifacts

    class Model:
        g = TinyColourGenerator(n_classes=3)
        meta = {"arch": "tiny", "z_dim": 4, "conditional": True, "n_classes": 3,
                "classes": ["cat", "T-shirt/top", "dog"], "image_shape": [3, 8, 8]}
        path = tmp_path / "colour.pt"

    torch.manual_seed(0)
    Model.path.write_bytes(b"weights")
    monkeypatch.setattr(ganmodel.artifacts, "load_generator", lambda path: (Model.g.eval(), Model.meta))
    return Model


def _main(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        cli.main(["generate", *args])
    return exc.value.code, capsys.readouterr().err


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_out_dir_from_a_generator_file_one_greyscale_png_per_sample(tmp_path, capsys):
    gen = make_generator(tmp_path / "generator.pt", seed=4)
    out, arr = tmp_path / "samples", tmp_path / "s.npy"
    code, err = _main(["--model", str(gen), "-n", "12", "--seed", "2", "--out-dir", str(out),
                       "--out", str(arr)], capsys)
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:05d}.png" for i in range(12)]
    pixels = to_pixels(torch.from_numpy(np.load(arr)))  # the same samples as the array, in order
    for i in (0, 5, 11):
        img = Image.open(out / f"{i:05d}.png")
        assert img.mode == "L" and img.size == (28, 28)
        assert np.array_equal(np.asarray(img), pixels[i, 0].numpy())
    assert _leftovers(tmp_path) == []


def test_out_dir_colour_conditional_has_a_folder_per_class(colour_model, tmp_path, capsys):
    out, arr, grid = tmp_path / "aug", tmp_path / "x.npy", tmp_path / "g.png"
    code, err = _main(["--model", str(colour_model.path), "-n", "5", "--labels", "0,1",
                       "--out-dir", str(out)], capsys)
    assert code == 0, err
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    # Classes in equal runs (3 then 2), numbered in generation order; "T-shirt/top" made one folder.
    assert files == ["T-shirt_top/00003.png", "T-shirt_top/00004.png", "cat/00000.png", "cat/00001.png",
                     "cat/00002.png"]
    assert not (out / "dog").exists()  # only the classes asked for
    img = Image.open(out / "cat" / "00001.png")
    assert img.mode == "RGB" and img.size == (8, 8)

    assert _main(["--model", str(colour_model.path), "-n", "5", "--labels", "0,1", "--out", str(arr)],
                 capsys)[0] == 0
    x = np.load(arr)
    assert x.shape == (5, 3, 8, 8) and x.dtype == np.float32
    expected = to_pixels(torch.from_numpy(x))[1].permute(1, 2, 0).numpy()
    assert np.array_equal(np.asarray(img), expected)
    assert _main(["--model", str(colour_model.path), "-n", "6", "--out", str(grid)], capsys)[0] == 0
    g = Image.open(grid)
    assert g.mode == "RGB" and g.size == (2 + 2 * 10, 2 + 3 * 10)  # a row per class: 3 rows of 2


def test_out_dir_unconditional_colour_is_flat(colour_model, tmp_path, capsys):
    colour_model.g = TinyColourGenerator(n_classes=0, shape=(3, 16, 16))
    colour_model.meta = {"arch": "tiny", "z_dim": 4, "image_shape": [3, 16, 16]}
    out = tmp_path / "flat"
    assert _main(["--model", str(colour_model.path), "-n", "3", "--out-dir", str(out)], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert Image.open(out / "00002.png").mode == "RGB"


def test_a_non_empty_out_dir_is_an_error_naming_it_unless_overwrite(tmp_path, capsys):
    gen = make_generator(tmp_path / "generator.pt")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    code, err = _main(["--model", str(gen), "-n", "2", "--out-dir", str(out)], capsys)
    assert code == 2 and f"--out-dir {out}: is not empty" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1
    assert (out / "mine.txt").read_text() == "keep"

    (tmp_path / "empty").mkdir()
    assert _main(["--model", str(gen), "-n", "2", "--out-dir", str(tmp_path / "empty")], capsys)[0] == 0
    assert _main(["--model", str(gen), "-n", "2", "--out-dir", str(out), "--overwrite"], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png"]  # replaced whole
    assert _leftovers(tmp_path) == []

    for bad, words in ((tmp_path / "generator.pt", "is not a directory"),
                       (tmp_path / "no" / "dir", "does not exist")):
        code, err = _main(["--model", str(gen), "--out-dir", str(bad)], capsys)
        assert code == 2 and words in err
    code, err = _main(["--model", str(gen)], capsys)
    assert code == 2 and "--out-dir" in err


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_midway_leaves_nothing_half_written(tmp_path, capsys, monkeypatch, existing):
    import ganmodel.figures

    gen = make_generator(tmp_path / "generator.pt")
    out, arr = tmp_path / "out", tmp_path / "x.npy"
    if existing:
        out.mkdir()
        (out / "old.png").write_bytes(b"old")
    real, calls = ganmodel.figures.save_image, []

    def failing(pixels, path):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(28, "No space left on device")
        real(pixels, path)

    monkeypatch.setattr(ganmodel.figures, "save_image", failing)
    code, err = _main(["--model", str(gen), "-n", "8", "--out-dir", str(out), "--overwrite",
                       "--out", str(arr)], capsys)
    assert code == 2 and "cannot write (No space left on device)" in err and str(out) in err
    assert len(calls) == 4  # it did get some files written before failing
    assert not arr.exists()
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["old.png"]
    else:
        assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_a_grid_too_big_to_open_is_refused_before_sampling(colour_model, tmp_path, capsys):
    colour_model.g = TinyColourGenerator(n_classes=0, shape=(3, 256, 256))
    colour_model.meta = {"arch": "tiny", "z_dim": 4, "image_shape": [3, 256, 256]}
    code, err = _main(["--model", str(colour_model.path), "-n", "10000", "--out", str(tmp_path / "g.png")],
                      capsys)
    assert code == 2 and "decompression-bomb limit" in err and "--out-dir" in err
    assert list(tmp_path.glob("*.png")) == []


def test_class_folders():
    assert class_folders(["0", "1"], 2) == ["0", "1"]
    assert class_folders(["T-shirt/top", "Bag"], 2) == ["T-shirt_top", "Bag"]
    assert class_folders(["a/b", "a_b"], 2) == ["0", "1"]  # would collide
    assert class_folders(["..", "x"], 2) == ["0", "1"]
    assert class_folders(["Cat", "cat"], 2) == ["0", "1"]  # same folder on case-insensitive disks
    assert class_folders(None, 3) == ["0", "1", "2"]  # files from before class names


def test_help_states_the_models_shape():
    sub = cli.build_parser()._subparsers._group_actions[0].choices["generate"]
    helptext = " ".join(sub.format_help().split())
    assert "[N, C, H, W]" in helptext and "--out-dir" in helptext and "--overwrite" in helptext
    assert "28" not in helptext
    assert "[N, C, H, W]" in cli.__doc__ and "[N, 1, 28, 28]" not in cli.__doc__
