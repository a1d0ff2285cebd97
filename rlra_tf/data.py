"""tf.data input pipelines from TensorFlow Datasets, including the offline paths.

`load(name, split, batch_size)` returns a batched, prefetched `tf.data.Dataset` of
`(images, labels)`: images float32 in [0, 1] of shape (batch, height, width, channels), labels
int32 of shape (batch,). `info(name)` gives the static facts (shapes, split sizes, per-channel
mean/std, class names) without loading anything.

Splits follow the paper: "train" is tfds' training split minus a validation hold-out,
"validation" is that hold-out, "test" is tfds' test split.

| name          | train     | validation (hold-out = last N of tfds train) | test (tfds split)     |
|---------------|-----------|----------------------------------------------|-----------------------|
| mnist         | 58,000    | 2,000                                        | 10,000 ("test")       |
| fashion_mnist | 58,000    | 2,000                                        | 10,000 ("test")       |
| cifar10       | 45,000    | 5,000                                        | 10,000 ("test")       |
| cifar100      | 45,000    | 5,000                                        | 10,000 ("test")       |
| imagenet2012  | 1,271,167 | 10,000                                       | 50,000 ("validation") |

"Last N" is in the order of the prepared tfds split (tfds shuffles examples by key when it
writes them), so the hold-out is the same on every machine and never overlaps "train".

Where the data comes from (the first dataset that is already prepared in `data_dir` is simply
loaded; `data_dir` defaults to `$TFDS_DATA_DIR`, else tfds' default `~/tensorflow_datasets`):

- fashion_mnist: the four IDX files in `manual_dir` or in `FASHION_MNIST_DIR` (Debian's
  `dataset-fashion-mnist` package) are prepared with tfds' own `fashion_mnist` builder into
  `data_dir` (about 10 s, once). Otherwise tfds downloads them.
- mnist, cifar10, cifar100: tfds downloads and prepares them (needs network once).
- imagenet2012: tfds prepares it from ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
  `manual_dir`.

When none of this works, `DatasetUnavailableError` says which files to put in which folder.

Distribution: either build the dataset with the global batch size and hand it to
`strategy.experimental_distribute_dataset`, or pass
`lambda ctx: load(..., batch_size=global_batch, input_context=ctx)` to
`strategy.distribute_datasets_from_function`; each input pipeline then reads its own shard and
batches `ctx.get_per_replica_batch_size(global_batch)` examples.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import pathlib
import socket
import tempfile
import urllib.parse
import urllib.request

import tensorflow as tf

from rlra_tf.checks import check_positive_int

DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet2012")
SPLITS = ("train", "validation", "test")

# Where Debian's `dataset-fashion-mnist` package installs the four IDX files. A module constant
# so that tests (and unusual installs) can point it elsewhere.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
IMAGENET_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")

SHUFFLE_BUFFER = 10_000
IMAGENET_IMAGE_SIZE = 224
IMAGENET_RESIZE_SIZE = 256
# Seconds allowed to open a TCP connection to a download host before calling it unreachable.
_CONNECT_TIMEOUT = 3.0


class DatasetUnavailableError(FileNotFoundError):
    """The dataset is not prepared and cannot be prepared from what is available offline.

    The message says which files to put in which folder (or to run once with network access).
    """


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset as `load` splits and preprocesses it.

    Attributes:
        name: the tfds name, one of `DATASETS`.
        image_shape: `(height, width, channels)` of the images `load` yields.
        num_classes: number of labels.
        num_train: examples in the "train" split (tfds train minus the hold-out).
        num_validation: examples in the "validation" split (the hold-out).
        num_test: examples in the "test" split.
        mean: per-channel mean of the [0, 1] pixels over the full tfds training split.
        std: per-channel standard deviation of the [0, 1] pixels, likewise.
        class_names: one name per label, in label order.
    """

    name: str
    image_shape: tuple
    num_classes: int
    num_train: int
    num_validation: int
    num_test: int
    mean: tuple
    std: tuple
    class_names: tuple


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where a dataset's splits come from in tfds."""

    tfds_test_split: str  # the tfds split used as "test"
    holdout: int  # examples at the end of tfds' "train" used as "validation"


_CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
_FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_SOURCES = {
    "mnist": _Source(tfds_test_split="test", holdout=2_000),
    "fashion_mnist": _Source(tfds_test_split="test", holdout=2_000),
    "cifar10": _Source(tfds_test_split="test", holdout=5_000),
    "cifar100": _Source(tfds_test_split="test", holdout=5_000),
    # tfds' imagenet2012 "test" split has no labels: its "validation" split is the test set.
    "imagenet2012": _Source(tfds_test_split="validation", holdout=10_000),
}

# Means and standard deviations are the usual published values over the full training sets.
_INFOS = {
    "mnist": DatasetInfo(
        name="mnist", image_shape=(28, 28, 1), num_classes=10,
        num_train=58_000, num_validation=2_000, num_test=10_000,
        mean=(0.1307,), std=(0.3081,), class_names=tuple(str(i) for i in range(10)),
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist", image_shape=(28, 28, 1), num_classes=10,
        num_train=58_000, num_validation=2_000, num_test=10_000,
        mean=(0.2860,), std=(0.3530,), class_names=_FASHION_MNIST_CLASSES,
    ),
    "cifar10": DatasetInfo(
        name="cifar10", image_shape=(32, 32, 3), num_classes=10,
        num_train=45_000, num_validation=5_000, num_test=10_000,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        class_names=_CIFAR10_CLASSES,
    ),
    "cifar100": DatasetInfo(
        name="cifar100", image_shape=(32, 32, 3), num_classes=100,
        num_train=45_000, num_validation=5_000, num_test=10_000,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        class_names=_CIFAR100_CLASSES,
    ),
    "imagenet2012": DatasetInfo(
        name="imagenet2012", image_shape=(IMAGENET_IMAGE_SIZE, IMAGENET_IMAGE_SIZE, 3),
        num_classes=1000, num_train=1_271_167, num_validation=10_000, num_test=50_000,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        class_names=(),  # filled from tfds' label file (WordNet ids) by `info`
    ),
}  # fmt: skip


def info(name: str) -> DatasetInfo:
    """Returns the static facts about dataset `name` (nothing is loaded or downloaded).

    Args:
        name: one of `DATASETS`.

    Raises:
        ValueError: if `name` is not one of `DATASETS`.
    """
    _check_name(name)
    if name == "imagenet2012":
        return dataclasses.replace(_INFOS[name], class_names=_imagenet_class_names())
    return _INFOS[name]


def load(
    name: str,
    split: str,
    batch_size: int,
    *,
    shuffle: bool | None = None,
    augment: bool = False,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    deterministic: bool = False,
    drop_remainder: bool = False,
    repeat: bool = False,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Returns a batched `tf.data.Dataset` of `(images, labels)` for one split.

    Images are float32 in [0, 1] of shape `(batch,) + info(name).image_shape`; labels are int32
    of shape `(batch,)`. The dataset is prepared into `data_dir` first if needed (see the module
    docstring for the offline paths).

    Args:
        name: one of `DATASETS`.
        split: "train", "validation" (the hold-out at the end of tfds' train split) or "test".
        batch_size: examples per batch; with `input_context`, the global batch size.
        shuffle: shuffle files and examples (buffer of `SHUFFLE_BUFFER` examples or the split
            size, seeded with `seed`, reshuffled every epoch). Defaults to True for "train" and
            False otherwise.
        augment: random augmentation of the "train" split: pad 2 and random crop for the 28x28
            datasets; pad 4, random crop and horizontal flip for the CIFARs; random-resized-crop
            to 224 and flip for imagenet2012. The other splits are never augmented.
            imagenet2012 is always resized to 256 and center-cropped to 224 when not augmented.
        seed: seeds file order, the shuffle buffer and the augmentation.
        data_dir: where tfds keeps prepared datasets; defaults to `$TFDS_DATA_DIR`, else tfds'
            default.
        manual_dir: folder with the source files (the four Fashion-MNIST IDX files, or the
            ImageNet tars).
        limit: if given, only the first `limit` examples of the split are used.
        deterministic: make a shuffled pipeline reproducible from `seed` across runs (same
            batches, same augmentation); parallel stages then keep their order, which can be
            slower. Unshuffled pipelines always keep tfds' order.
        drop_remainder: drop the last batch if it is smaller than `batch_size`.
        repeat: repeat forever (each epoch reshuffled).
        input_context: a `tf.distribute.InputContext`; the pipeline then reads its shard
            (`input_pipeline_id` of `num_input_pipelines`) and batches the per-replica size.

    Returns:
        A prefetched `tf.data.Dataset` of `(images, labels)` batches.

    Raises:
        ValueError: for an unknown `name` or `split`, or a non-positive `batch_size`/`limit`.
        DatasetUnavailableError: if the dataset is not prepared and cannot be prepared.
    """
    import tensorflow_datasets as tfds  # imported when used: `import rlra_tf.data` stays light
    ds_info = info(name)
    if split not in SPLITS:
        raise ValueError(f"Expected split to be one of {SPLITS}, received: split={split!r}")
    batch_size = check_positive_int("batch_size", batch_size)
    if limit is not None:
        limit = check_positive_int("limit", limit)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"Expected an integer for seed, received: seed={seed!r}")
    seed = int(seed)
    if shuffle is None:
        shuffle = split == "train"

    tfds_split, num_examples = _tfds_split(name, split, limit)
    builder = _prepared_builder(name, data_dir=data_dir, manual_dir=manual_dir)
    ds = builder.as_dataset(
        split=tfds_split,
        shuffle_files=shuffle,
        as_supervised=True,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    if limit is not None:
        # tfds already read only `limit` examples; `take` also enforces it where the split
        # string is not honoured (tfds.testing.mock_data yields the same examples for any split).
        ds = ds.take(limit)
    if input_context is not None:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        num_examples = math.ceil(num_examples / input_context.num_input_pipelines)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if shuffle:
        ds = ds.shuffle(
            min(SHUFFLE_BUFFER, max(num_examples, 1)), seed=seed, reshuffle_each_iteration=True
        )
    if repeat:
        ds = ds.repeat()

    random_augment = augment and split == "train"
    preprocess = _preprocess_fn(ds_info, random_augment)
    if random_augment:
        # One stateless seed pair per example: reproducible, yet different every epoch.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))
        ds = ds.map(lambda example, rng: preprocess(*example, rng), tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda image, label: preprocess(image, label, None), tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE)

    options = tf.data.Options()
    # Parallel stages may reorder elements unless deterministic; an unshuffled split always
    # keeps its order ("first N examples", stable evaluation batches).
    options.deterministic = deterministic or not shuffle
    ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Argument checks and split arithmetic.


def _check_name(name):
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset, received: name={name!r}. Expected one of {DATASETS}")


def _tfds_split(name, split, limit=None):
    """Returns the tfds split string for our `split` and how many examples it holds."""
    ds_info, source = _INFOS[name], _SOURCES[name]
    if split == "train":
        start, size, tfds_name = 0, ds_info.num_train, "train"
    elif split == "validation":
        start, size, tfds_name = ds_info.num_train, ds_info.num_validation, "train"
    else:
        start, size, tfds_name = 0, ds_info.num_test, source.tfds_test_split
    if limit is not None:
        size = min(size, limit)
    return f"{tfds_name}[{start}:{start + size}]", size


@functools.cache
def _imagenet_class_names():
    from tensorflow_datasets.datasets.imagenet2012 import imagenet_common

    text = pathlib.Path(imagenet_common.label_names_file()).read_text()
    return tuple(line.strip() for line in text.splitlines() if line.strip())


# ---------------------------------------------------------------------------------------------
# Preprocessing and augmentation (stateless random ops, so runs are reproducible).


def _preprocess_fn(ds_info, random_augment):
    """Returns `fn(image uint8, label int64, rng (2,) or None) -> (image float32, label int32)`."""
    height, width, channels = ds_info.image_shape

    def small(image, label, rng):
        image = tf.cast(image, tf.float32) / 255.0  # (height, width, channels)
        if random_augment:
            pad = 2 if height == 28 else 4
            crop_rng, flip_rng = tf.unstack(tf.random.experimental.stateless_split(rng, 2))
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
            image = tf.image.stateless_random_crop(image, (height, width, channels), crop_rng)
            if height == 32:  # CIFAR: also flip; digits and MNIST-like images are not flipped
                image = tf.image.stateless_random_flip_left_right(image, flip_rng)
        return image, tf.cast(label, tf.int32)

    def imagenet(image, label, rng):
        image = tf.cast(image, tf.float32) / 255.0  # (height, width, 3), any size
        if random_augment:
            crop_rng, flip_rng = tf.unstack(tf.random.experimental.stateless_split(rng, 2))
            image = _random_resized_crop(image, crop_rng)
            image = tf.image.stateless_random_flip_left_right(image, flip_rng)
        else:
            image = _resize_and_center_crop(image)
        return tf.ensure_shape(image, ds_info.image_shape), tf.cast(label, tf.int32)

    return imagenet if ds_info.name == "imagenet2012" else small


def _random_resized_crop(image, rng):
    """Inception-style crop: 8% to 100% of the area, aspect ratio 3/4 to 4/3, resized to 224."""
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], shape=(1, 1, 4))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        whole_image,
        seed=rng,
        min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, size)
    return tf.image.resize(image, (IMAGENET_IMAGE_SIZE, IMAGENET_IMAGE_SIZE), antialias=True)


def _resize_and_center_crop(image):
    """Resizes the shorter side to 256 (keeping the aspect ratio), then crops the center 224."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = IMAGENET_RESIZE_SIZE / tf.reduce_min(shape)
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), IMAGENET_RESIZE_SIZE)
    image = tf.image.resize(image, new_shape, antialias=True)
    top = (new_shape[0] - IMAGENET_IMAGE_SIZE) // 2
    left = (new_shape[1] - IMAGENET_IMAGE_SIZE) // 2
    return image[top : top + IMAGENET_IMAGE_SIZE, left : left + IMAGENET_IMAGE_SIZE]


# ---------------------------------------------------------------------------------------------
# Preparing the data: already prepared, local files, or a tfds download.


def _prepared_builder(name, data_dir, manual_dir):
    """Returns a tfds builder whose data is prepared in `data_dir`, preparing it if needed."""
    import tensorflow_datasets as tfds  # imported when used: `import rlra_tf.data` stays light
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
    if manual_dir is not None:
        manual_dir = os.path.expanduser(os.fspath(manual_dir))
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    if name == "fashion_mnist" and (local_dir := _fashion_mnist_dir(manual_dir)) is not None:
        _prepare_fashion_mnist(builder, local_dir, data_dir)
    elif name == "imagenet2012":
        _prepare_imagenet(builder, manual_dir)
    else:
        _download_and_prepare(builder, manual_dir)
    # A fresh builder reads the dataset_info.json that preparation has just written.
    return tfds.builder(name, data_dir=data_dir)


def _fashion_mnist_dir(manual_dir):
    """Returns the first of `manual_dir`, `FASHION_MNIST_DIR` that holds the four files."""
    for folder in (manual_dir, FASHION_MNIST_DIR):
        if folder and all(os.path.isfile(os.path.join(folder, f)) for f in FASHION_MNIST_FILES):
            return folder
    return None


@functools.cache
def _local_fashion_mnist_builder_cls():
    """tfds' own `fashion_mnist` builder, taking its four files from a local folder.

    tfds uses a file found in `manual_dir` instead of downloading it, but still checks it
    against the registered checksums. Debian's copies carry no file name in their gzip header
    (each is 23 bytes shorter than upstream's), so those checksums fail
    (`NonMatchingChecksumError`) although the IDX data is the same. This subclass
    registers the checksums of the local files instead; everything else (features, split names,
    version, the `fashion_mnist/<version>` folder in `data_dir`) is tfds' own, so the result
    loads later with a plain `tfds.builder("fashion_mnist")`.

    Defined lazily (and once) so that importing this module does not import tfds' dataset
    modules; `skip_registration` keeps it out of tfds' registry, so the name cannot clash.
    """
    import tensorflow_datasets as tfds  # imported when used: `import rlra_tf.data` stays light
    fashion_mnist_cls = tfds.builder_cls("fashion_mnist")

    class LocalFashionMNIST(fashion_mnist_cls, skip_registration=True):
        name = "fashion_mnist"

        def __init__(self, *, local_dir, **kwargs):
            self._local_dir = local_dir
            super().__init__(**kwargs)

        @property
        def url_infos(self):
            return {
                urllib.parse.urljoin(self.URL, filename): tfds.download.checksums.compute_url_info(
                    os.path.join(self._local_dir, filename)
                )
                for filename in FASHION_MNIST_FILES
            }

    return LocalFashionMNIST


def _prepare_fashion_mnist(builder, local_dir, data_dir):
    import tensorflow_datasets as tfds  # imported when used: `import rlra_tf.data` stays light
    local_builder = _local_fashion_mnist_builder_cls()(local_dir=local_dir, data_dir=data_dir)
    config = tfds.download.DownloadConfig(manual_dir=local_dir, try_download_gcs=False)
    try:
        # The gunzipped copies go to a temporary folder, not into data_dir/downloads.
        with tempfile.TemporaryDirectory(prefix="rlra_tf_fashion_mnist_") as download_dir:
            local_builder.download_and_prepare(download_dir=download_dir, download_config=config)
    except Exception as err:  # re-raised with instructions, cause chained
        reason = f"the files in {local_dir} could not be prepared: {type(err).__name__}: {err}"
        raise DatasetUnavailableError(_unavailable_message(builder, local_dir, reason)) from err


def _prepare_imagenet(builder, manual_dir):
    manual_dir = manual_dir or os.path.join(builder.data_dir_root, "downloads", "manual")

    def check_files():
        missing = [f for f in IMAGENET_FILES if not os.path.isfile(os.path.join(manual_dir, f))]
        if missing:
            reason = f"{', '.join(missing)} not found in {manual_dir}"
            raise DatasetUnavailableError(_unavailable_message(builder, manual_dir, reason))

    _prepare_with_tfds(builder, manual_dir, check_files, "tfds could not prepare it")


def _download_and_prepare(builder, manual_dir):
    urls = list(builder.url_infos or ())

    def check_network():
        unreachable = _unreachable_hosts(urls)
        if unreachable:
            reason = f"no network: cannot connect to {', '.join(unreachable)}"
            raise DatasetUnavailableError(_unavailable_message(builder, manual_dir, reason))

    _prepare_with_tfds(builder, manual_dir, check_network, "tfds could not download it")


def _prepare_with_tfds(builder, manual_dir, check, failure):
    """Runs `builder.download_and_prepare`, turning its failures into DatasetUnavailableError.

    `check()` runs first but only once tfds is really about to prepare: it wraps the builder's
    download-manager factory, which tfds calls right before downloading. Checking earlier would
    break `tfds.testing.mock_data`, which replaces `download_and_prepare` by a no-op so that
    nothing needs to be present. The check makes failures quick: offline, tfds retries every URL
    ten times with back-off and gives up only after about 3.5 minutes.
    `_make_download_manager` is private tfds API (4.9); should it disappear, tfds is simply left
    to fail on its own.
    """
    import tensorflow_datasets as tfds  # imported when used: `import rlra_tf.data` stays light
    make_download_manager = getattr(builder, "_make_download_manager", None)
    if make_download_manager is not None:

        def checked_make_download_manager(*args, **kwargs):
            check()
            return make_download_manager(*args, **kwargs)

        builder._make_download_manager = checked_make_download_manager
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except DatasetUnavailableError:
        raise
    except Exception as err:  # re-raised with instructions, cause chained
        reason = f"{failure}: {type(err).__name__}: {err}"
        raise DatasetUnavailableError(_unavailable_message(builder, manual_dir, reason)) from err


def _unreachable_hosts(urls):
    """Returns the hosts of the http(s) `urls` that a TCP connection cannot reach."""
    if urllib.request.getproxies():
        return []  # a proxy may reach hosts that a direct connection cannot
    endpoints = set()
    for url in urls:
        parts = urllib.parse.urlparse(url)
        if parts.scheme in ("http", "https") and parts.hostname:
            endpoints.add((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    unreachable = []
    for host, port in sorted(endpoints):
        try:
            with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT):
                pass
        except OSError:
            unreachable.append(host)
    return unreachable


def _unavailable_message(builder, manual_dir, reason):
    """Says what is missing and exactly which files to put in which folder."""
    name = builder.name
    head = f"Dataset {name!r} is not prepared in {builder.data_dir} ({reason}).\n"
    if name == "fashion_mnist":
        files = "\n".join(f"  {f}" for f in FASHION_MNIST_FILES)
        return (
            f"{head}Put the four Fashion-MNIST files\n{files}\n"
            f"into {FASHION_MNIST_DIR} (Debian/Ubuntu: "
            "`sudo apt-get install dataset-fashion-mnist` does this) or into the folder passed "
            f"as manual_dir (received: manual_dir={manual_dir!r}); they are then prepared "
            "offline. Or run once with network access so that tfds downloads them."
        )
    if name == "imagenet2012":
        files = " and ".join(IMAGENET_FILES)
        return (
            f"{head}tfds cannot download ImageNet. Put {files} (from "
            f"https://image-net.org/download-images) into {manual_dir} (or pass another "
            "folder as manual_dir); tfds then prepares them into data_dir, which takes hours "
            "and about 300 GB."
        )
    return (
        f"{head}Either run once with network access (for example "
        f"`tfds build {name} --data_dir={builder.data_dir_root}`), or copy the folder "
        f"{name}/{builder.version}/ (dataset_info.json and the data files) from a machine where "
        f"tfds has prepared it into {builder.data_dir_root}, the data_dir used here (set it with "
        "data_dir=... or TFDS_DATA_DIR)."
    )
