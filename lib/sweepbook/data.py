"""Datasets as in-memory tensors: scikit-learn's digits (offline default) and torchvision's."""
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

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
    x: Tensor  # float images, shape (n, 1, height, width), scaled to [0, 1]
    y: Tensor  # int64 class labels, shape (n,)

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: Optional[int]) -> "Split":
        return self if n is None else Split(self.x[:n], self.y[:n])


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    classes: List[str]

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


def _permutation(n: int, seed: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def _split_off(split: Split, fraction: float, seed: int) -> Tuple[Split, Split]:
    """Randomly (by seed) move `fraction` of `split` into a second split."""
    order = _permutation(len(split), seed)
    cut = len(split) - max(1, round(fraction * len(split)))
    keep, held = order[:cut], order[cut:]
    return Split(split.x[keep], split.y[keep]), Split(split.x[held], split.y[held])


def _digits_table() -> np.ndarray:
    """scikit-learn's digits file: 1,797 rows of 64 pixels (0-16) and the label.

    Read directly when found: importing sklearn.datasets costs ~0.9 s per process.
    """
    spec = importlib.util.find_spec("sklearn")
    packaged = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if packaged.is_file():
        return np.loadtxt(packaged, delimiter=",")
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return np.column_stack([bunch.data, bunch.target])


def load_digits(val_fraction: float, test_fraction: float, seed: int) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images), split deterministically by seed."""
    table = _digits_table()
    images = torch.tensor(table[:, :64], dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    everything = Split(images, torch.tensor(table[:, 64], dtype=torch.int64))
    rest, test = _split_off(everything, test_fraction, seed)
    train, val = _split_off(rest, val_fraction / (1.0 - test_fraction), seed + 1)
    return Dataset(train, val, test, [str(d) for d in range(10)])


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


def load_torchvision(name: str, root: Path, val_fraction: float, seed: int,
                     download: bool = False) -> Dataset:
    """FashionMNIST or MNIST from <root>/<Name>/raw/ IDX files; official test split."""
    train_set = _torchvision_split(name, root, True, download)
    test_set = _torchvision_split(name, root, False, False)
    to_split = lambda ds: Split(ds.data.unsqueeze(1).float() / 255.0, ds.targets.long())
    train, val = _split_off(to_split(train_set), val_fraction, seed)
    return Dataset(train, val, to_split(test_set), list(train_set.classes))


def load_dataset(data_cfg, data_dir: str, seed: int) -> Dataset:
    """The dataset a config's `data` group names, training split capped by `data.limit`."""
    name = str(getattr(data_cfg.name, "value", data_cfg.name))
    if name == "digits":
        dataset = load_digits(data_cfg.val_fraction, data_cfg.test_fraction, seed)
    elif name in TORCHVISION_DATASETS:
        dataset = load_torchvision(name, Path(data_dir), data_cfg.val_fraction, seed,
                                   data_cfg.download)
    else:
        valid = ", ".join(["digits", *TORCHVISION_DATASETS])
        raise ValueError(f"unknown dataset {name!r}; valid: {valid}")
    dataset.train = dataset.train.head(data_cfg.limit)
    return dataset


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
