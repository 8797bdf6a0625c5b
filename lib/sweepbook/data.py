"""Datasets as in-memory tensors: scikit-learn's digits and diabetes (offline defaults) and
torchvision's. Each loader is a `_target_` for the `data` config group: its annotated
parameters are what validation checks before any job runs."""
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Literal, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from sweepbook.schema import Fraction, PositiveInt, SumBelow, rules
from sweepbook.targets import build

SPLITS = ("train", "val", "test")  # a Dataset's splits, in order
TORCHVISION_DATASETS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DatasetNotFound(FileNotFoundError):
    """A torchvision dataset whose files are missing and cannot be downloaded."""


@dataclass
class Split:
    x: Tensor  # float inputs: images (n, 1, height, width) in [0, 1], or features (n, k)
    y: Tensor  # int64 class labels, or float targets for regression, shape (n,)

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: Optional[int]) -> "Split":
        return self if n is None else Split(self.x[:n], self.y[:n])

    def digest(self) -> str:
        """sha256 (hex) of the split's inputs and targets, their dtypes and shapes included:
        equal digests, the same data."""
        digest = hashlib.sha256()
        for tensor in (self.x, self.y):
            values = tensor.detach().cpu().contiguous()
            digest.update(f"{values.dtype}{tuple(values.shape)}".encode())
            digest.update(values.reshape(-1).view(torch.uint8).numpy())  # any dtype, no copy
        return digest.hexdigest()


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    classes: List[str]  # class names; empty for regression
    name: str = "dataset"  # what the run's dataset inputs are called (log_dataset)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def digests(self) -> Dict[str, str]:
        """Each split's digest, by name: train, val, test."""
        return {name: getattr(self, name).digest() for name in SPLITS}

    def digest(self) -> str:
        """The data a run actually used, in one value (see combined_digest)."""
        return combined_digest(self.digests())


def combined_digest(digests: Dict[str, str]) -> str:
    """sha256 (hex) of the splits' digests (Dataset.digests), named."""
    return hashlib.sha256("".join(f"{n}:{d}\n" for n, d in digests.items()).encode()).hexdigest()


def _permutation(n: int, seed: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def _split_off(split: Split, fraction: float, seed: int) -> Tuple[Split, Split]:
    """Randomly (by seed) move `fraction` of `split` into a second split."""
    order = _permutation(len(split), seed)
    cut = len(split) - max(1, round(fraction * len(split)))
    keep, held = order[:cut], order[cut:]
    return Split(split.x[keep], split.y[keep]), Split(split.x[held], split.y[held])


def _bundled_table(name: str) -> Optional[np.ndarray]:
    """A data file scikit-learn ships, read directly: importing sklearn.datasets costs ~0.9 s
    per process. None when this scikit-learn keeps it elsewhere."""
    spec = importlib.util.find_spec("sklearn")
    packaged = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name
    if not packaged.is_file():
        return None
    return np.loadtxt(packaged, delimiter="," if name.startswith("digits") else None)


def _digits_table() -> np.ndarray:
    """scikit-learn's digits: 1,797 rows of 64 pixels (0-16) and the label."""
    table = _bundled_table("digits.csv.gz")
    if table is not None:
        return table
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return np.column_stack([bunch.data, bunch.target])


def _three_way(everything: Split, val_fraction: float, test_fraction: float,
               seed: int) -> Tuple[Split, Split, Split]:
    """Train, validation and test splits, by seed; the fractions are of the whole."""
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction = {val_fraction + test_fraction:g} "
                         "leaves no training data: keep the sum below 1")
    rest, test = _split_off(everything, test_fraction, seed)
    train, val = _split_off(rest, val_fraction / (1.0 - test_fraction), seed + 1)
    return train, val, test


HELD_OUT = SumBelow(("val_fraction", "test_fraction"))  # some data must be left to train on


@rules(HELD_OUT)
def load_digits(seed: int, val_fraction: Fraction = 0.1, test_fraction: Fraction = 0.1,
                limit: Optional[PositiveInt] = None) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images), split deterministically by seed;
    `limit` keeps only that many training images (smoke runs)."""
    table = _digits_table()
    images = torch.tensor(table[:, :64], dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    everything = Split(images, torch.tensor(table[:, 64], dtype=torch.int64))
    train, val, test = _three_way(everything, val_fraction, test_fraction, seed)
    return Dataset(train.head(limit), val, test, [str(d) for d in range(10)], "digits")


def _diabetes_table() -> Tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes: 442 patients, 10 raw features, disease progression a year on."""
    features, target = _bundled_table("diabetes_data_raw.csv.gz"), _bundled_table(
        "diabetes_target.csv.gz")
    if features is not None and target is not None:
        return features, target
    from sklearn.datasets import load_diabetes as sklearn_diabetes

    bunch = sklearn_diabetes(scaled=False)
    return bunch.data, bunch.target


@rules(HELD_OUT)
def load_diabetes(seed: int, val_fraction: Fraction = 0.15, test_fraction: Fraction = 0.15,
                  limit: Optional[PositiveInt] = None) -> Dataset:
    """scikit-learn's bundled diabetes regression data, split by seed; features standardized
    with the training split's statistics, the target left in its own units."""
    features, target = _diabetes_table()
    everything = Split(torch.tensor(features, dtype=torch.float32),
                       torch.tensor(target, dtype=torch.float32))
    train, val, test = _three_way(everything, val_fraction, test_fraction, seed)
    train = train.head(limit)
    mean, std = train.x.mean(0), train.x.std(0).clamp_min(1e-6)
    scaled = [Split((split.x - mean) / std, split.y) for split in (train, val, test)]
    return Dataset(*scaled, classes=[], name="diabetes")


def _missing_files_message(name: str, root: Path) -> str:
    folder = root / TORCHVISION_DATASETS[name] / "raw"
    return (
        f"{TORCHVISION_DATASETS[name]} not found: put the four unzipped IDX files "
        f"{', '.join(IDX_FILES)} in {folder}/ (or set data.download=true on a machine with "
        f"internet, or paths.data_dir=<folder holding {TORCHVISION_DATASETS[name]}/raw/>)"
    )


def _torchvision_split(name: str, root: Path, train: bool, download: bool):
    from torchvision import datasets

    try:
        return getattr(datasets, TORCHVISION_DATASETS[name])(str(root), train=train,
                                                             download=download)
    except RuntimeError as error:
        raise DatasetNotFound(_missing_files_message(name, root)) from error
    except OSError as error:  # download=True without network
        raise DatasetNotFound(f"{_missing_files_message(name, root)}; download failed: "
                              f"{error}") from error


def load_torchvision(name: Literal["fashion_mnist", "mnist"], root: str, seed: int,
                     val_fraction: Fraction = 0.1, limit: Optional[PositiveInt] = None,
                     download: bool = False) -> Dataset:
    """FashionMNIST or MNIST from <root>/<Name>/raw/ IDX files; official test split."""
    train_set = _torchvision_split(name, Path(root), True, download)
    test_set = _torchvision_split(name, Path(root), False, False)
    to_split = lambda ds: Split(ds.data.unsqueeze(1).float() / 255.0, ds.targets.long())
    train, val = _split_off(to_split(train_set), val_fraction, seed)
    return Dataset(train.head(limit), val, to_split(test_set), list(train_set.classes), name)


def load_dataset(data_cfg, seed: int) -> Dataset:
    """The dataset a config's `data` node names (`_target_` and its keys), split by `seed`."""
    return build(data_cfg, "data", seed=seed)


def batches(split: Split, batch_size: int, shuffle: bool = False,
            generator: Optional[torch.Generator] = None) -> Iterator[Tuple[Tensor, Tensor]]:
    """Mini-batches sliced from in-memory tensors (much cheaper than a DataLoader here)."""
    order = torch.randperm(len(split), generator=generator) if shuffle else None
    for start in range(0, len(split), batch_size):
        if order is None:
            yield split.x[start:start + batch_size], split.y[start:start + batch_size]
        else:
            index = order[start:start + batch_size]
            yield split.x[index], split.y[index]
