"""The default warm start reproduces the pretrained network (issue 20)."""

import logging

import numpy as np
import pytest

import lns_larq
from lns_larq import models
from lns_larq.lns import labels_as_weights, layer_agreement, warm_start
from lns_larq.quantizers import mapping_network

STRIDE_2 = ("stage2_block1_conv1", "stage3_block1_conv1")


@pytest.fixture(scope="module")
def shipped_lns():
    """The shipped ResNet-20 (90 epochs on CIFAR-10) converted to LNS, random mappings."""
    return lns_larq.lnsify(models.get("resnet20", weights="cifar10"))


@pytest.fixture(scope="module")
def pipelines(cifar):
    """Normalised as the shipped weights were trained: 10,000 training images held out."""
    from lns_larq import data

    return data.pipelines(cifar, batch_size=100, validation_size=10000)


@pytest.fixture(scope="module")
def test_batch(pipelines):
    return next(iter(pipelines[2].unbatch().batch(500)))


def _logits(model, x):
    return model.predict(x, batch_size=250, verbose=0)


def _train(pipelines):
    return pipelines[0].repeat()


def test_default_warm_start_reproduces_the_pretrained_network(shipped_lns, pipelines, test_batch):
    """From trained weights, every layer (the stride-2 convs included) agrees with
    sign(W), and the mapped network predicts what the labels' network predicts.
    The stop at 1 - rho (0.995 overall) left 3-4 % of the stride-2 convs' weights
    wrong and fails the per-layer bound; a stop at 0.999 per layer left 14 weights
    wrong, which changed 8 % of the predictions."""
    model = shipped_lns
    images, labels = test_batch
    with labels_as_weights(model):
        reference = _logits(model, images)
    stop = warm_start(model, _train(pipelines), epochs=1, steps_per_epoch=400, verbose=0)
    assert stop.stopped_at is not None and stop.stopped_at < 400  # stopped by agreement, not the cap
    per_layer = layer_agreement(model)
    assert set(STRIDE_2) <= set(per_layer)
    assert min(per_layer.values()) == 1.0, per_layer
    mapped = _logits(model, images)
    # The same binary kernels (+-s) on both paths: the logits agree to float32
    # round-off of the same convolutions, and so do the top-1 predictions.
    np.testing.assert_allclose(mapped, reference, atol=1e-4)
    np.testing.assert_array_equal(mapped.argmax(1), reference.argmax(1))


def test_stop_at_one_minus_rho_leaves_the_stride_2_convs_behind(pipelines):
    """The same warm start stopped at the old default (1 - rho of all weights,
    no per-layer bound) does not meet the per-layer bound: the test above would
    fail on it."""
    model = lns_larq.lnsify(models.get("resnet20", weights="cifar10"))
    stop = warm_start(model, _train(pipelines), epochs=1, steps_per_epoch=400,
                      stop_agreement=0.995, layer_agreement=0, verbose=0)
    assert stop.stopped_at is not None
    assert min(layer_agreement(model).values()) < 0.999


def test_step_cap_warns_once_naming_the_lagging_layers(pipelines, caplog):
    model = lns_larq.lnsify(models.get("resnet8", num_classes=10, input_shape=(32, 32, 3)))
    with caplog.at_level(logging.WARNING, logger="lns_larq.lns"):
        stop = warm_start(model, _train(pipelines), epochs=1, steps_per_epoch=5, verbose=0)
    assert stop.stopped_at is None
    warnings = [r for r in caplog.records if r.name == "lns_larq.lns"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "\n" not in message and "step cap (5 steps)" in message
    lagging = [name for name, a in layer_agreement(model).items() if a < 1.0]
    assert lagging and all(name in message for name in lagging)


def test_mapping_capacity_per_filter_follows_the_filter_count():
    """A conv that doubles its channels (c_out = 2 c_in) gets a mapping twice as
    wide, so each of its filters has the capacity a filter of a c_in -> c_in conv
    has; a conv that narrows keeps the width of its input."""
    def hidden(filters, c_in=16):
        return mapping_network("conv3", (3, 3, c_in), width=2.0, filters=filters).layers[0].filters

    assert hidden(16) == 32 and hidden(32) == 64 and hidden(8) == 32
    # At most twice: a layer with 16x the filters (AlexNet's fc6 and fc7) would
    # otherwise get a hidden conv 256x the size.
    assert hidden(24) == 48 and hidden(256) == 64
    assert mapping_network("mlp", (3, 3, 16), width=2.0, filters=32).layers[1].units == 2 * 2 * 144
