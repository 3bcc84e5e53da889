"""Binary ResNet-20 for CIFAR-10 (16-32-64 channels, 3 stages of 3 basic blocks).

The variant of IR-Net/LNS-era papers: a Bi-Real shortcut around every binary 3x3
conv, the first conv, the downsampling shortcuts and the classifier in full
precision. Binary convs use `pad_values=1.0` so that Larq Compute Engine converts
them to `LceBconv2d`.
"""

from typing import Any

import larq as lq
import tensorflow as tf

from lns_larq.quantizers import WEIGHT_QUANTIZERS


def binary_conv_kwargs(quantizer: str | None) -> dict:
    """Keyword arguments of a binary `QuantConv2D` for a baseline weight quantizer."""
    if quantizer is None:
        return dict(padding="same", use_bias=False)
    if quantizer not in WEIGHT_QUANTIZERS:
        raise ValueError(
            f"Unknown quantizer {quantizer!r}; choose one of {sorted(WEIGHT_QUANTIZERS)}."
        )
    return dict(
        padding="same",
        pad_values=1.0,
        use_bias=False,
        input_quantizer="ste_sign",
        kernel_quantizer=WEIGHT_QUANTIZERS[quantizer][0],
        kernel_constraint="weight_clip",
    )


def _bn(name):
    return tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def bireal_stages(x: tf.Tensor, stages: tuple[int, ...], blocks: int, conv_kwargs: dict, prelu: bool = False,
                  relu: bool = False, hardtanh: bool = False, pool_padding: str = "valid") -> tf.Tensor:
    """Stages of basic blocks with a shortcut around every 3x3 conv (Bi-Real).

    Stage s > 1 starts with a stride-2 conv whose shortcut is a full-precision
    average pool + 1x1 conv + BN. `prelu` adds a PReLU after each conv's BN (Bi-Real
    + PReLU), `relu` a ReLU after each addition (the full-precision reference),
    `hardtanh` a hardtanh after each addition (IR-Net's block).
    """
    for s, channels in enumerate(stages, start=1):
        for b in range(1, blocks + 1):
            for c in (1, 2):
                name = f"stage{s}_block{b}_conv{c}"
                downsample = s > 1 and b == 1 and c == 1
                shortcut = x
                if downsample:
                    shortcut = tf.keras.layers.AveragePooling2D(2, padding=pool_padding, name=f"{name}_pool")(x)
                    shortcut = tf.keras.layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_down")(shortcut)
                    shortcut = _bn(f"{name}_down_bn")(shortcut)
                y = lq.layers.QuantConv2D(
                    channels, 3, strides=2 if downsample else 1, name=name, **conv_kwargs
                )(x)
                y = _bn(f"{name}_bn")(y)
                if prelu:
                    y = tf.keras.layers.PReLU(
                        tf.keras.initializers.Constant(0.25), shared_axes=[1, 2], name=f"{name}_prelu"
                    )(y)
                x = tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])
                if relu:
                    x = tf.keras.layers.ReLU(name=f"{name}_relu")(x)
                if hardtanh:
                    x = tf.keras.layers.Activation(lq.activations.hard_tanh, name=f"{name}_hardtanh")(x)
    return x


def resnet20(quantizer: str | None = "dorefa", num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3),
             stages: tuple[int, ...] = (16, 32, 64), blocks: int = 3, prelu: bool = False,
             hardtanh: bool = False, name: str = "resnet20") -> tf.keras.Model:
    """Binary ResNet-20. `quantizer`: `"dorefa"`, `"xnor"`, `"binarynet"`, or `None`
    for the same network in full precision; `prelu`: a PReLU after each binary
    conv's BN (`resnet20_prelu`); `hardtanh`: a hardtanh after the first conv's BN
    and after each addition (`resnet20_hardtanh`)."""
    conv_kwargs = binary_conv_kwargs(quantizer)
    inputs = tf.keras.Input(input_shape, name="image")
    x = tf.keras.layers.Conv2D(stages[0], 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = _bn("conv1_bn")(x)
    if quantizer is None:
        x = tf.keras.layers.ReLU(name="conv1_relu")(x)
    elif hardtanh:
        x = tf.keras.layers.Activation(lq.activations.hard_tanh, name="conv1_hardtanh")(x)
    x = bireal_stages(x, stages, blocks, conv_kwargs, prelu=prelu, relu=quantizer is None, hardtanh=hardtanh)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf.keras.layers.Dense(num_classes, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name=f"{name}_{quantizer}" if quantizer else f"{name}_fp")


def resnet8(quantizer: str | None = "dorefa", num_classes: int = 10,
            input_shape: tuple[int, int, int] = (32, 32, 3)) -> tf.keras.Model:
    """Binary ResNet-8: ResNet-20 with one block per stage (6 binary convs instead of
    18). It traces and trains about three times faster: the tiny protocol and quick
    trials use it; results in the paper's tables are ResNet-20."""
    return resnet20(quantizer, num_classes=num_classes, input_shape=input_shape, blocks=1, name="resnet8")


def resnet20_prelu(quantizer: str | None = "dorefa", num_classes: int = 10,
                   input_shape: tuple[int, int, int] = (32, 32, 3)) -> tf.keras.Model:
    """Binary ResNet-20 with a PReLU after every binary conv's BN, as the paper's
    ImageNet baseline ("Bi-Real + PReLU", Sec. 4.3) has: 18 PReLUs, 672 more
    parameters (one slope per channel). The paper's CIFAR-10 ResNet-20 names no
    PReLU; this variant is the candidate baseline in case the plain one falls
    short of the paper's 85 % under its own SGD recipe (docs/recipe.md)."""
    return resnet20(quantizer, num_classes=num_classes, input_shape=input_shape, prelu=True,
                    name="resnet20_prelu")


def resnet20_hardtanh(quantizer: str | None = "dorefa", num_classes: int = 10,
                      input_shape: tuple[int, int, int] = (32, 32, 3)) -> tf.keras.Model:
    """Binary ResNet-20 with IR-Net's bound on the residual stream: a hardtanh,
    clip(x, -1, 1), after the first conv's BN and after every addition
    (`htqin/IR-Net`, `CIFAR-10/ResNet20/1w1a/resnet.py`). Every sign then sees
    inputs in [-1, 1], where `ste_sign` passes its gradient; in `resnet20` the
    stream widens along each stage and most inputs lie outside it
    (docs/recipe.md, "What the sign activations see"). No parameter is added.
    The candidate to test that cause should the 400-epoch baseline fall short."""
    return resnet20(quantizer, num_classes=num_classes, input_shape=input_shape, hardtanh=True,
                    name="resnet20_hardtanh")


def resnet20_fp(num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3),
                **kwargs: Any) -> tf.keras.Model:
    """Full-precision ResNet-20 (same topology, ReLU after every addition)."""
    return resnet20(None, num_classes=num_classes, input_shape=input_shape, **kwargs)
