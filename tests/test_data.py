import struct

import numpy as np
import pytest
import torch

from sweepbook.config import compose
from sweepbook.data import (IDX_FILES, DatasetNotFound, Split, batches, load_dataset, load_diabetes,
                            load_digits)


def write_idx(folder, n_train=30, n_test=10, size=28, seed=0):
    """Tiny IDX files in torchvision's raw layout (magic 2051 images, 2049 labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, size, size) + images.tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.tobytes())
    return images, labels


def test_digits_split_is_deterministic_disjoint_and_complete():
    first, second = load_digits(seed=3), load_digits(seed=3)
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)
    assert (len(first.train), len(first.val), len(first.test)) == (1437, 180, 180)
    assert first.input_shape == (1, 8, 8) and first.classes == [str(d) for d in range(10)]
    assert 0.0 <= first.train.x.min() and first.train.x.max() <= 1.0
    rows = lambda split: {tuple(r) for r in split.x.flatten(1).tolist()}
    assert not rows(first.test) & rows(first.val)
    other = load_digits(seed=4)
    assert not torch.equal(first.test.y, other.test.y)


def test_digits_match_scikit_learn():
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    dataset = load_digits(seed=0)
    together = torch.cat([dataset.train.x, dataset.val.x, dataset.test.x]).flatten(1) * 16
    labels = torch.cat([dataset.train.y, dataset.val.y, dataset.test.y])
    expected = sorted(zip(map(tuple, bunch.data.tolist()), bunch.target.tolist()))
    assert sorted(zip(map(tuple, together.tolist()), labels.tolist())) == expected


def test_limit_caps_the_training_split_only():
    cfg = compose(["data.limit=100"])
    dataset = load_dataset(cfg.data, cfg.seed)
    assert len(dataset.train) == 100 and len(dataset.test) == 180


@pytest.mark.parametrize("name, folder", [("fashion_mnist", "FashionMNIST"), ("mnist", "MNIST")])
def test_torchvision_datasets_load_from_idx_files(tmp_path, name, folder):
    write_idx(tmp_path / folder / "raw")
    cfg = compose([f"data={name}", f"paths.data_dir={tmp_path}", "data.val_fraction=0.2"])
    dataset = load_dataset(cfg.data, cfg.seed)
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (24, 6, 10)
    assert dataset.input_shape == (1, 28, 28) and len(dataset.classes) == 10
    assert dataset.train.x.dtype == torch.float32 and dataset.train.x.max() <= 1.0


def test_test_split_keeps_the_files_order_and_labels(tmp_path):
    images, labels = write_idx(tmp_path / "MNIST" / "raw")
    cfg = compose(["data=mnist", f"paths.data_dir={tmp_path}"])
    dataset = load_dataset(cfg.data, cfg.seed)
    assert dataset.test.y.tolist() == labels.tolist()
    assert torch.allclose(dataset.test.x[:, 0] * 255, torch.tensor(images, dtype=torch.float32))


def test_missing_files_say_where_to_put_which_files(tmp_path):
    cfg = compose(["data=fashion_mnist", f"paths.data_dir={tmp_path}"])
    with pytest.raises(DatasetNotFound) as error:
        load_dataset(cfg.data, cfg.seed)
    message = str(error.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert all(name in message for name in IDX_FILES)
    assert "data.download=true" in message


def test_batches_cover_every_sample_once():
    split = Split(torch.arange(10.0).view(10, 1, 1, 1), torch.arange(10))
    plain = [y.tolist() for _, y in batches(split, 4)]
    assert plain == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shuffled = [v for _, y in batches(split, 4, True, torch.Generator().manual_seed(0))
                for v in y.tolist()]
    assert sorted(shuffled) == list(range(10)) and shuffled != list(range(10))


def test_fractions_that_leave_no_training_data_are_refused():
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction = 1 leaves no training"):
        load_digits(seed=0, val_fraction=0.5, test_fraction=0.5)


def test_diabetes_is_a_regression_split_scaled_by_its_training_part():
    first, second = load_diabetes(seed=1), load_diabetes(seed=1)
    assert torch.equal(first.test.y, second.test.y)
    assert (len(first.train), len(first.val), len(first.test)) == (310, 66, 66)
    assert first.input_shape == (10,) and first.classes == []
    assert first.train.y.dtype == torch.float32 and first.train.y.min() >= 25
    assert torch.allclose(first.train.x.mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(first.train.x.std(0), torch.ones(10), atol=1e-5)
    assert len(load_diabetes(seed=1, limit=50).train) == 50


def test_data_config_names_its_loader():
    dataset = load_dataset(compose(["data.limit=10"]).data, seed=0)
    assert len(dataset.train) == 10 and dataset.classes == [str(d) for d in range(10)]


def test_the_data_digest_follows_the_bytes_of_every_split():
    first, again = load_digits(seed=0), load_digits(seed=0)
    assert first.digest() == again.digest() and len(first.digest()) == 64
    assert first.digests() == again.digests() and list(first.digests()) == ["train", "val", "test"]
    other_split = load_digits(seed=1)  # the same images, split otherwise
    assert other_split.digest() != first.digest()
    again.test.y[0] = (again.test.y[0] + 1) % 10  # one test label
    assert again.digests()["test"] != first.digests()["test"]
    assert again.digests()["train"] == first.digests()["train"]
    assert again.digest() != first.digest()
    same_bytes = Split(first.val.x.reshape(len(first.val), -1), first.val.y)  # another shape
    assert same_bytes.digest() != first.val.digest()
    assert load_digits(seed=0, limit=100).digest() != first.digest()
