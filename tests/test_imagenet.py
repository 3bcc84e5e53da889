"""ImageNet scale (issue 6): Bi-Real ResNet-18 and binary AlexNet, the ImageNet
pipeline on `tfds.testing.mock_data`, and LNS for larq-zoo models.

Exports use smaller inputs where the architecture allows it: a conv's binary
kernel, padding and quantizers, which decide whether LCE converts it, do not
depend on the input size.
"""

import json

import lns_larq  # noqa: F401  # isort: skip  (Keras 2 before TensorFlow)
import larq as lq
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lns_larq import export, imagenet, lns, models, training
from lns_larq.keras_utils import all_layers, is_binarized_conv
from lns_larq.quantizers import quantized_kernel


def binary_convs(model):
    return [layer for layer in all_layers(model) if is_binarized_conv(layer)]


def consumers(layer):
    """The layers that take `layer`'s output."""
    return [node.outbound_layer for node in layer._outbound_nodes]


# ------------------------------------------------------------------ Bi-Real ResNet-18


def test_resnet18_bireal_structure():
    model = models.get("resnet18_bireal", quantizer="xnor")
    convs = binary_convs(model)
    assert len(convs) == 16
    assert model.output_shape == (None, 1000)
    for conv in convs:
        assert conv.pad_values == 1.0 and conv.padding == "same"
        assert isinstance(conv.input_quantizer, lq.quantizers.SteSign)
        assert isinstance(conv.kernel_quantizer, lq.quantizers.MagnitudeAwareSign)
        # conv -> BN -> PReLU -> add (the real-valued shortcut of every conv)
        (bn,) = consumers(conv)
        (prelu,) = consumers(bn)
        assert isinstance(bn, tf.keras.layers.BatchNormalization)
        assert isinstance(prelu, tf.keras.layers.PReLU)
        assert prelu.alpha.shape == (1, 1, conv.filters) and np.all(prelu.alpha.numpy() == 0.25)
        assert isinstance(consumers(prelu)[0], tf.keras.layers.Add)
    # Full precision: the stem, the three downsampling shortcuts and the classifier.
    float_convs = [l for l in model.layers if type(l) is tf.keras.layers.Conv2D]
    assert [l.name for l in float_convs] == [
        "conv1", "stage2_block1_conv1_down", "stage3_block1_conv1_down", "stage4_block1_conv1_down",
    ]
    assert type(model.get_layer("logits")) is tf.keras.layers.Dense
    # ResNet-18's 11.7 M weights, with 1x1 downsampling convs and 3,840 PReLU slopes.
    assert 11.5e6 < model.count_params() < 12.0e6
    dorefa = models.get("resnet18_bireal", quantizer="dorefa", input_shape=(64, 64, 3), num_classes=10)
    assert all(type(c.kernel_quantizer).__name__ == "DoReFaSign" for c in binary_convs(dorefa))


def test_resnet18_bireal_lns_forward_and_backward_at_224():
    """The paper's mapping (conv3, width 2) on every binary conv, one 224 x 224
    batch of 2 through the network and back."""
    model = models.get("resnet18_bireal_lns", quantizer="xnor")
    mapped = lns.lns_layers(model)
    assert len(mapped) == 16
    assert all(layer.kernel_quantizer.width == 2.0 and layer.kernel_quantizer.scale == "channel"
               for layer in mapped)
    x = tf.random.normal((2, 224, 224, 3))
    y = tf.constant([3, 999])
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        aux = tf.add_n(model.losses)
        loss = ce + aux
    assert logits.shape == (2, 1000)
    assert len(model.losses) == 16  # one noisy-supervision term per LNS conv
    assert np.isfinite(loss.numpy())
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.name for w, g in zip(model.trainable_weights, grads) if g is None]
    assert not missing, missing
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)
    # Every weight of every mapping network gets a non-zero gradient. (Mapping
    # weights share names across layers, "conv2d/kernel:0": match by identity.)
    for layer in mapped:
        own = {w.ref() for w in layer.kernel_quantizer.trainable_weights}
        grads_of_layer = [g for w, g in zip(model.trainable_weights, grads) if w.ref() in own]
        assert len(grads_of_layer) == len(own) and all(np.any(g.numpy() != 0) for g in grads_of_layer)


@pytest.mark.parametrize("name", ["resnet18_bireal", "resnet18_bireal_lns"])
def test_resnet18_bireal_exports_every_binary_conv(name):
    model = models.get(name, quantizer="xnor", input_shape=(64, 64, 3), num_classes=10,
                       **({"width": 0.5} if name.endswith("_lns") else {}))
    report = export.export_tflite(model, None, float_reference=False)
    assert report.binary_layers == 16
    assert report.bconv_ops == 16
    assert report.op_counts.get("PRELU", 0) == 16


# ------------------------------------------------------------------------- AlexNet


BINARY_ALEXNET = ["conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]


def test_alexnet_structure():
    model = models.get("alexnet")
    assert model.output_shape == (None, 1000)
    assert model.get_layer("conv5_pool").output_shape == (None, 6, 6, 256)  # 9216 into fc6
    # DoReFa-Net's AlexNet with dense fc6/fc7 has these parameters: as convs they
    # have the same weights.
    assert model.count_params() == 62_407_048
    convs = binary_convs(model)
    assert [c.name for c in convs] == BINARY_ALEXNET
    for conv in convs:
        assert type(conv.kernel_quantizer).__name__ == "DoReFaSign"  # layer-wise scale
        assert isinstance(conv.input_quantizer, lq.quantizers.SteSign)
    assert all(conv.pad_values == 1.0 for conv in convs[:4])
    # fc6 and fc7: valid convs whose kernels cover their whole input.
    assert model.get_layer("fc6").kernel.shape == (6, 6, 256, 4096)
    assert model.get_layer("fc7").kernel.shape == (4, 4, 256, 4096)
    assert model.get_layer("fc7_bn").output_shape == (None, 1, 1, 4096)
    # First and last layers in full precision.
    assert type(model.get_layer("conv1")) is tf.keras.layers.Conv2D
    assert type(model.get_layer("logits")) is tf.keras.layers.Dense
    lns_model = models.get("alexnet_lns", width=0.5)
    assert [l.name for l in lns.lns_layers(lns_model)] == BINARY_ALEXNET


def test_alexnet_fc6_fc7_are_dense_layers_on_the_flattened_features():
    # 99 x 99 images: a 2 x 2 x 256 map into fc6 (a 2x2 kernel, neither 1x1 nor 6x6).
    model = models.get("alexnet", input_shape=(99, 99, 3), num_classes=10)
    assert model.get_layer("conv5_pool").output_shape == (None, 2, 2, 256)
    rng = np.random.RandomState(0)
    for name, features in (("fc6", rng.standard_normal((3, 2, 2, 256))),
                           ("fc7", rng.standard_normal((3, 4, 4, 256)))):
        layer = model.get_layer(name)
        features = features.astype(np.float32)
        kernel = quantized_kernel(layer).numpy()
        # y_j = sum_i K'_ij sign(flat(x))_i with K' the kernel reshaped to (H W C, 4096).
        expected = np.sign(features).reshape(3, -1) @ kernel.reshape(-1, 4096)
        got = layer(features).numpy()
        assert got.shape == (3, 1, 1, 4096)
        np.testing.assert_allclose(got.reshape(3, 4096), expected, rtol=1e-5, atol=1e-4)


# AlexNet's export, plain and LNS, is tested at the paper's 224 x 224 in
# test_export.py (test_alexnet_at_224_exports_every_binary_layer_as_lce_bconv).


# ------------------------------------------------------------------ ImageNet pipeline


def _jpeg(height, width, left=(255, 0, 0), right=(0, 0, 255)):
    """JPEG bytes of an image whose left half is `left` and right half `right`."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = left
    image[:, width // 2 :] = right
    return tf.io.encode_jpeg(image, quality=100)


def _unnormalize(image):
    return image.numpy() * np.array(imagenet.STDDEV_RGB) + np.array(imagenet.MEAN_RGB)


def test_eval_preprocessing_resizes_256_and_centre_crops_224():
    # 300 x 600 -> 256 x 512; the centre 224 columns are 144..367: half red, half blue.
    image = _unnormalize(imagenet.preprocess_eval(_jpeg(300, 600)))
    assert image.shape == (224, 224, 3)
    assert np.allclose(image[:, :100].mean(axis=(0, 1)), [255, 0, 0], atol=8)
    assert np.allclose(image[:, 124:].mean(axis=(0, 1)), [0, 0, 255], atol=8)
    # A tall image: the crop keeps the central rows, all of one colour per half.
    tall = _unnormalize(imagenet.preprocess_eval(_jpeg(900, 300)))
    assert tall.shape == (224, 224, 3)


def test_train_preprocessing_random_resized_crop_and_flip():
    jpeg = _jpeg(240, 320)
    tf.random.set_seed(1)
    crops = [_unnormalize(imagenet.preprocess_train(jpeg)) for _ in range(24)]
    assert all(c.shape == (224, 224, 3) for c in crops)
    red_left = [c[:, 0, 0].mean() > 128 for c in crops]
    # Left column red in an unflipped crop of the left half, blue in a flipped one
    # of the right half (or a flipped whole image): both occur.
    assert any(red_left) and not all(red_left)
    # Different crops: the fraction of red pixels varies from crop to crop.
    red = [float((c[..., 0] > 128).mean()) for c in crops]
    assert max(red) - min(red) > 0.3


@pytest.fixture()
def mock_imagenet(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        yield str(tmp_path / "tfds")


def test_imagenet_pipeline_on_mock_data(mock_imagenet):
    source = imagenet.load(data_dir=mock_imagenet)
    train, validation = imagenet.pipelines(source, batch_size=4, seed=0)
    x, y = next(iter(train))
    assert x.shape == (4, 224, 224, 3) and x.dtype == tf.float32
    assert y.dtype == tf.int64 and np.all((0 <= y.numpy()) & (y.numpy() < 1000))
    # Normalised with the ImageNet statistics: [0, 255] maps into about [-2.2, 2.7].
    assert -2.2 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 2.7
    assert float(tf.math.reduce_std(x)) > 0.1
    batches = list(validation)
    assert [b[0].shape[0] for b in batches] == [4, 2]  # 6 images, last batch kept
    assert batches[0][0].shape[1:] == (224, 224, 3)
    assert list(imagenet.pipelines(source, 4, drop_remainder=True)[1].map(lambda a, b: tf.shape(a)[0])) == [4]


def test_imagenet_training_run_on_mock_data(mock_imagenet, tmp_path):
    """`dataset="imagenet2012"` routes to the ImageNet pipeline and reports top-5."""
    config = training.TrainConfig(
        model="resnet18_bireal", quantizer="xnor", dataset="imagenet2012", data_dir=mock_imagenet,
        epochs=1, steps_per_epoch=1, batch_size=2, lr=0.01, output_dir=str(tmp_path / "run"), verbose=0,
    )
    metrics = training.run(config)
    # Top-1 and top-5 recomputed from the saved model's logits on the validation split.
    model = tf.keras.models.load_model(str(tmp_path / "run" / "model.keras"), compile=False)
    _, validation = imagenet.pipelines(imagenet.load(data_dir=mock_imagenet), batch_size=2)
    logits, labels = [], []
    for x, y in validation:
        logits.append(model(x, training=False).numpy())
        labels.append(y.numpy())
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    top5 = np.mean([y in np.argsort(row)[-5:] for row, y in zip(logits, labels)])
    assert metrics["test_accuracy"] == pytest.approx(np.mean(np.argmax(logits, 1) == labels), abs=1e-6)
    assert metrics["test_top5_accuracy"] == pytest.approx(top5, abs=1e-6)
    with open(tmp_path / "run" / "metrics.json") as f:
        assert json.load(f)["test_top5_accuracy"] == metrics["test_top5_accuracy"]
    with pytest.raises(training.ConfigError, match="validation_size is for CIFAR-10"):
        training.TrainConfig(dataset="imagenet2012", validation_size=100).validate()


def test_imagenet_without_archives_is_one_clear_error(tmp_path):
    with pytest.raises(imagenet.DataError, match="ILSVRC2012_img_train.tar"):
        imagenet.load(data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "nothing"))


# -------------------------------------------------------------- larq-zoo + lnsify


@pytest.mark.parametrize("name", ["QuickNetSmall", "BiRealNet"])
def test_lnsify_larq_zoo_model_trains_and_exports(name, mock_imagenet):
    import larq_zoo

    zoo = getattr(larq_zoo.sota, name, None) or getattr(larq_zoo.literature, name)
    base = zoo(input_shape=(64, 64, 3), weights=None, num_classes=1000)
    n_binary = len(binary_convs(base))
    assert n_binary == 16
    model = lns_larq.lnsify(base, width=0.5)
    assert len(lns.lns_layers(model)) == n_binary

    # A few fit steps on mock ImageNet at 64 x 64 (zoo models end in a softmax).
    source = imagenet.load(data_dir=mock_imagenet, image_size=64)
    train, _ = imagenet.pipelines(source, batch_size=2)
    mapping = [w for l in lns.lns_layers(model) for w in l.kernel_quantizer.trainable_weights]
    before = [w.numpy() for w in mapping]
    model.compile(tf.keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    history = model.fit(train.repeat(), steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(np.any(w.numpy() != b) for w, b in zip(mapping, before)), "the mappings did not train"

    report = export.export_tflite(model, None, float_reference=False)
    assert report.binary_layers == n_binary
    assert report.bconv_ops == n_binary


def test_alexnet_lns_mappings_stay_below_the_network_at_the_papers_width():
    # fc6 and fc7 have 16x the filters of their input channels; a mapping widened by
    # that ratio had 642 M weights each at width 2 (ten times AlexNet). Widened by
    # at most 2, as ResNet's stride-2 convs are, the six mappings have 60.7 M.
    model = models.get("alexnet_lns")
    mapping = {l.name: l.kernel_quantizer.network.count_params() for l in lns.lns_layers(model)}
    assert sum(mapping.values()) < 62_407_048  # the binary AlexNet's own parameters
    assert mapping["fc6"] == 9 * (2 * 256 * 1024 + 1024 * 1024) + 2 * 2 * 6 * 6 * 1024 + 256
