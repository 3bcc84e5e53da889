"""ImageNet (ILSVRC 2012) through tensorflow-datasets, with the standard pipeline.

tensorflow-datasets' `imagenet2012` cannot download the images: it builds its
TFRecords once from the two archives `ILSVRC2012_img_train.tar` and
`ILSVRC2012_img_val.tar`, placed by hand in `manual_dir` (default
`<data_dir>/downloads/manual`). Later runs read the prepared records in `data_dir`.

Training: Inception-style random-resized crop (area 8-100 % of the image, aspect
ratio 3/4-4/3, as PyTorch's `RandomResizedCrop`, which the paper uses) resized to
224 x 224, random horizontal flip. Evaluation: resize the shorter side to 256,
centre crop 224 x 224 (the paper's single-crop evaluation on the validation
set). Both normalise with the ImageNet RGB mean and standard deviation.

```python
source = lns_larq.imagenet.load(data_dir="~/tensorflow_datasets", manual_dir="~/ilsvrc2012")
train, validation = lns_larq.imagenet.pipelines(source, batch_size=256)
```
"""

import dataclasses

import tensorflow as tf

from lns_larq.data import DataError
from lns_larq.errors import first_line

NAME = "imagenet2012"
NUM_CLASSES = 1000
IMAGE_SIZE = 224
RESIZE_SIZE = 256
# ImageNet RGB statistics in [0, 255] (torchvision's, as the paper's PyTorch code).
MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)

__all__ = ["ImageNet", "load", "pipelines", "preprocess_eval", "preprocess_train"]


@dataclasses.dataclass
class ImageNet:
    """A prepared `imagenet2012` builder and the sizes a training run needs."""

    builder: object
    image_size: int = IMAGE_SIZE
    num_classes: int = NUM_CLASSES

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.image_size, self.image_size, 3)

    def num_examples(self, split: str) -> int | None:
        """Images in `split` ("train", "validation"); `None` if tfds does not know."""
        splits = self.builder.info.splits
        return splits[split].num_examples if split in splits else None


def load(data_dir: str | None = None, manual_dir: str | None = None, image_size: int = IMAGE_SIZE) -> ImageNet:
    """The `imagenet2012` dataset, prepared from the archives in `manual_dir` the
    first time (this takes hours and ~150 GB in `data_dir`), then reused.

    # Raises
        DataError: if the dataset is not prepared and the archives are not found.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(NAME, data_dir=data_dir)
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    except (AssertionError, OSError, ValueError, tf.errors.OpError) as e:
        raise DataError(
            f"{NAME}: not prepared in data_dir {data_dir or '~/tensorflow_datasets'} and "
            f"cannot be built: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar "
            f"in --manual_dir (default <data_dir>/downloads/manual) ({first_line(e)})."
        ) from None
    return ImageNet(builder, image_size=image_size)


def _normalize(image):
    return (tf.cast(image, tf.float32) - MEAN_RGB) / STDDEV_RGB


def preprocess_train(image_bytes: tf.Tensor, image_size: int = IMAGE_SIZE, seed: int | None = None) -> tf.Tensor:
    """JPEG bytes -> a random-resized crop, flipped at random, normalised.

    The crop covers 8-100 % of the image's area with an aspect ratio in [3/4, 4/3];
    after 10 failed attempts it is the whole image. Only the crop is decoded
    (`decode_and_crop_jpeg`), which is what keeps the input pipeline fast.
    """
    shape = tf.io.extract_jpeg_shape(image_bytes)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
        seed=seed,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.io.decode_and_crop_jpeg(image_bytes, window, channels=3)
    image = tf.image.resize(image, (image_size, image_size), method="bilinear")
    image = tf.image.random_flip_left_right(image, seed=seed)
    return _normalize(image)


def preprocess_eval(image_bytes: tf.Tensor, image_size: int = IMAGE_SIZE, resize_size: int | None = None) -> tf.Tensor:
    """JPEG bytes -> shorter side resized to `resize_size`, centre `image_size` crop,
    normalised. `resize_size` defaults to 256 / 224 of `image_size` (256 for 224)."""
    resize_size = resize_size or round(image_size * RESIZE_SIZE / IMAGE_SIZE)
    image = tf.io.decode_jpeg(image_bytes, channels=3)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    scale = resize_size / tf.cast(tf.minimum(height, width), tf.float32)
    new_height = tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32)
    new_width = tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32)
    image = tf.image.resize(image, tf.stack([new_height, new_width]), method="bilinear")
    top = (new_height - image_size) // 2
    left = (new_width - image_size) // 2
    image = image[top : top + image_size, left : left + image_size]
    return _normalize(tf.ensure_shape(image, (image_size, image_size, 3)))


def pipelines(source: ImageNet, batch_size: int = 256, seed: int = 0, train_subset: int = 0,
              shuffle_buffer: int = 10_000, drop_remainder: bool = False) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """`(train, validation)` `tf.data` pipelines of `(image, label)` batches.

    `batch_size` is the global batch: under a `tf.distribute` strategy, Keras splits
    each batch over the replicas (and shards the input files over the workers).
    Training batches always have `batch_size` images (the incomplete last batch is
    dropped); `drop_remainder` does the same for validation (TPUs need it).

    # Arguments
        source: `load()`'s `ImageNet`.
        batch_size: Global batch size.
        seed: Seed of the file order, the shuffle and the augmentation.
        train_subset: Train on the first N training images only (0: all).
        shuffle_buffer: Images in the training shuffle buffer.
        drop_remainder: Drop the incomplete last validation batch.
    """
    import tensorflow_datasets as tfds

    size = source.image_size
    split = f"train[:{train_subset}]" if train_subset else "train"
    train = source.builder.as_dataset(
        split=split,
        shuffle_files=True,
        as_supervised=True,
        decoders={"image": tfds.decode.SkipDecoding()},  # decode only the crop
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )
    train = (
        train.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        .map(lambda x, y: (preprocess_train(x, size), y), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    validation = source.builder.as_dataset(
        split="validation",
        shuffle_files=False,
        as_supervised=True,
        decoders={"image": tfds.decode.SkipDecoding()},
    )
    validation = (
        validation.map(lambda x, y: (preprocess_eval(x, size), y), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size, drop_remainder=drop_remainder)
        .prefetch(tf.data.AUTOTUNE)
    )
    return train, validation
