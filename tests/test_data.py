"""Tests for rlra_tf.data: static facts, mocked tfds pipelines and the real local Fashion-MNIST."""


import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from rlra_tf import data


def _batches(ds):
    """Returns all (images, labels) of `ds` as NumPy arrays, plus the batch sizes."""
    images, labels, sizes = [], [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
        sizes.append(int(y.shape[0]))
    return np.concatenate(images), np.concatenate(labels), sizes


# ---------------------------------------------------------------------------------------------
# Static facts and argument checks (no data needed).


def test_info_facts():
    fmnist = data.info("fashion_mnist")
    assert fmnist.image_shape == (28, 28, 1)
    assert fmnist.num_classes == 10
    assert (fmnist.num_train, fmnist.num_validation, fmnist.num_test) == (58_000, 2_000, 10_000)
    assert fmnist.class_names[0] == "T-shirt/top" and fmnist.class_names[-1] == "Ankle boot"
    assert len(fmnist.mean) == len(fmnist.std) == 1

    for name in ("cifar10", "cifar100"):
        cifar = data.info(name)
        assert cifar.image_shape == (32, 32, 3)
        assert (cifar.num_train, cifar.num_validation, cifar.num_test) == (45_000, 5_000, 10_000)
        assert len(cifar.mean) == len(cifar.std) == 3

    for name in data.DATASETS:
        ds_info = data.info(name)
        assert ds_info.name == name
        assert len(ds_info.class_names) == len(set(ds_info.class_names)) == ds_info.num_classes
        assert all(0 < s < 1 for s in ds_info.mean + ds_info.std)

    imagenet = data.info("imagenet2012")
    assert imagenet.image_shape == (224, 224, 3)
    assert imagenet.num_train + imagenet.num_validation == 1_281_167
    assert imagenet.class_names[0] == "n01440764"


def test_info_unknown_name():
    with pytest.raises(ValueError, match="name='svhn'") as excinfo:
        data.info("svhn")
    assert all(name in str(excinfo.value) for name in data.DATASETS)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(split="val"), "split='val'"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(batch_size=2.5), "batch_size=2.5"),
        (dict(batch_size=True), "batch_size=True"),
        (dict(limit=0), "limit=0"),
        (dict(name="mnist2"), "name='mnist2'"),
    ],
)
def test_load_rejects_bad_arguments(kwargs, match, tmp_path):
    args = dict(name="mnist", split="train", batch_size=4, data_dir=tmp_path) | kwargs
    with pytest.raises(ValueError, match=match):
        data.load(**args)


def test_holdout_split_arithmetic():
    # "train" and "validation" tile tfds' train split; the hold-out is its end.
    assert data._tfds_split("mnist", "train") == ("train[0:58000]", 58_000)
    assert data._tfds_split("mnist", "validation") == ("train[58000:60000]", 2_000)
    assert data._tfds_split("mnist", "test") == ("test[0:10000]", 10_000)
    assert data._tfds_split("cifar100", "train") == ("train[0:45000]", 45_000)
    assert data._tfds_split("cifar10", "validation") == ("train[45000:50000]", 5_000)
    assert data._tfds_split("imagenet2012", "validation") == ("train[1271167:1281167]", 10_000)
    assert data._tfds_split("imagenet2012", "test") == ("validation[0:50000]", 50_000)
    # `limit` takes the first examples of the split, never more than the split holds.
    assert data._tfds_split("fashion_mnist", "validation", limit=3) == ("train[58000:58003]", 3)
    assert data._tfds_split("fashion_mnist", "train", limit=10**9) == ("train[0:58000]", 58_000)


# ---------------------------------------------------------------------------------------------
# Pipelines under tfds.testing.mock_data (random examples; every split yields num_examples).


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_mocked_pipeline_shapes_and_values(name, tmp_path):
    shape = data.info(name).image_shape
    with tfds.testing.mock_data(num_examples=10):
        for split in data.SPLITS:
            ds = data.load(name, split, batch_size=4, data_dir=tmp_path)
            assert ds.element_spec[0].dtype == tf.float32
            assert ds.element_spec[1].dtype == tf.int32
            images, labels, sizes = _batches(ds)
            assert sizes == [4, 4, 2]
            assert images.shape == (10,) + shape
            assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5
            assert labels.shape == (10,) and labels.min() >= 0 and labels.max() < 10

        _, _, sizes = _batches(data.load(name, "train", 4, data_dir=tmp_path, limit=5))
        assert sizes == [4, 1]
        ds = data.load(name, "train", 4, data_dir=tmp_path, drop_remainder=True)
        assert ds.element_spec[0].shape == (4,) + shape
        assert [len(y) for _, y in ds] == [4, 4]
        images, _, _ = _batches(data.load(name, "train", 4, data_dir=tmp_path, augment=True))
        assert images.shape == (10,) + shape and 0.0 <= images.min() and images.max() <= 1.0
        ds = data.load(name, "validation", 4, data_dir=tmp_path, repeat=True)
        assert len(list(ds.take(7))) == 7  # more batches than one epoch holds


def test_mocked_augmentation_changes_train_images_only(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        plain, _, _ = _batches(data.load("cifar10", "train", 6, data_dir=tmp_path, shuffle=False))
        augmented, _, _ = _batches(
            data.load("cifar10", "train", 6, data_dir=tmp_path, shuffle=False, augment=True)
        )
        test_plain, _, _ = _batches(data.load("cifar10", "test", 6, data_dir=tmp_path))
        test_augment, _, _ = _batches(
            data.load("cifar10", "test", 6, data_dir=tmp_path, augment=True)
        )
    assert not np.allclose(plain, augmented)
    np.testing.assert_array_equal(test_plain, test_augment)


def test_mocked_input_context_shards_and_splits_the_batch(tmp_path):
    context = tf.distribute.InputContext(
        num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2
    )
    with tfds.testing.mock_data(num_examples=10):
        ds = data.load("mnist", "test", 4, data_dir=tmp_path, input_context=context)
        _, _, sizes = _batches(ds)
    assert sizes == [2, 2, 1]  # half of the 10 examples, per-replica batch 4 / 2


def test_mocked_imagenet_crops_to_224(tmp_path):
    with tfds.testing.mock_data(num_examples=3):  # random images of random sizes
        for split, augment in (("train", True), ("train", False), ("test", False)):
            ds = data.load("imagenet2012", split, 3, data_dir=tmp_path, augment=augment)
            images, labels, _ = _batches(ds)
            assert images.shape == (3, 224, 224, 3) and labels.dtype == np.int32
            assert 0.0 <= images.min() and images.max() <= 1.0


# ---------------------------------------------------------------------------------------------
# Errors when nothing can be prepared offline.


def test_fashion_mnist_unavailable_names_the_four_files(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
    # Simulate "offline" also where the CI machine has network.
    monkeypatch.setattr(data, "_unreachable_hosts", lambda urls: ["example.invalid"])
    with pytest.raises(data.DatasetUnavailableError) as excinfo:
        data.load("fashion_mnist", "train", 4, data_dir=tmp_path / "tfds", manual_dir=empty)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, FileNotFoundError)
    for filename in data.FASHION_MNIST_FILES:
        assert filename in message
    assert str(tmp_path / "absent") in message and str(empty) in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_download_failure_becomes_unavailable_error(tmp_path, monkeypatch):
    def failing_download(self, *args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", failing_download)
    with pytest.raises(data.DatasetUnavailableError, match="no route to host") as excinfo:
        data.load("mnist", "test", 4, data_dir=tmp_path)
    assert isinstance(excinfo.value.__cause__, ConnectionError)
    assert "network access" in str(excinfo.value) and str(tmp_path) in str(excinfo.value)


def test_imagenet_unavailable_names_the_tars(tmp_path):
    with pytest.raises(data.DatasetUnavailableError) as excinfo:
        data.load("imagenet2012", "train", 4, data_dir=tmp_path / "tfds", manual_dir=tmp_path)
    message = str(excinfo.value)
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
    assert str(tmp_path) in message


# ---------------------------------------------------------------------------------------------
# The real Fashion-MNIST, prepared once per session from the local IDX files (the `fmnist_dir`
# fixture of tests/conftest.py, shared with the trainer tests).


def test_fashion_mnist_real_splits(fmnist_dir):
    counts = {}
    for split in data.SPLITS:
        ds = data.load("fashion_mnist", split, 10_000, data_dir=fmnist_dir, shuffle=False)
        assert ds.element_spec[0].shape.as_list() == [None, 28, 28, 1]
        counts[split] = 0
        for images, labels in ds:
            counts[split] += int(labels.shape[0])
        assert images.dtype == tf.float32 and labels.dtype == tf.int32
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) == 1.0
    assert counts == {"train": 58_000, "validation": 2_000, "test": 10_000}
    assert set(np.unique(labels.numpy())) == set(range(10))  # the last test batch


def test_fashion_mnist_validation_is_the_end_of_tfds_train(fmnist_dir, monkeypatch):
    # Already prepared: loading must not prepare again.
    monkeypatch.setattr(data, "_prepare_fashion_mnist", lambda *args: pytest.fail("prepared"))
    _, labels, _ = _batches(data.load("fashion_mnist", "validation", 2_000, data_dir=fmnist_dir))
    builder = tfds.builder("fashion_mnist", data_dir=fmnist_dir)
    assert builder.info.splits["train"].num_examples == 60_000
    tfds_end = builder.as_dataset(split="train[-2000:]", as_supervised=True, batch_size=-1)
    np.testing.assert_array_equal(labels, tfds_end[1].numpy())


def test_deterministic_first_batch_is_reproducible(fmnist_dir):
    def first_batch(seed):
        ds = data.load(
            "fashion_mnist", "train", 16, data_dir=fmnist_dir, limit=1_000, augment=True,
            seed=seed, deterministic=True,
        )  # fmt: skip
        images, labels = next(iter(ds))
        return images.numpy(), labels.numpy()

    images, labels = first_batch(seed=1)
    again_images, again_labels = first_batch(seed=1)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(labels, again_labels)
    other_images, _ = first_batch(seed=2)
    assert not np.array_equal(images, other_images)
