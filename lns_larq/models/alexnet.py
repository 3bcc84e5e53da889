"""Binary AlexNet for ImageNet, DoReFa-Net style (LNS Table 5).

The layout of DoReFa-Net's AlexNet: batch normalisation after every conv and
fully connected layer, the first conv and the classifier in full precision (paper
Sec. 4.3, "we do not quantize the first convolutional layer and the last fully
connected layer"), binary weights and activations everywhere else, and a
layer-wise weight scale (DoReFa) by default.

```python
model = lns_larq.models.get("alexnet")              # DoReFa baseline
lns = lns_larq.models.get("alexnet_lns", width=1)  # LNS on its six binary layers
```
"""

import larq as lq
import tensorflow as tf

from lns_larq.models.resnet import _bn, binary_conv_kwargs


def alexnet(quantizer: str | None = "dorefa", num_classes: int = 1000,
            input_shape: tuple[int, int, int] = (224, 224, 3)) -> tf.keras.Model:
    r"""Binary AlexNet.

    Structure (224 x 224 input; "binary" = \(\mathrm{sign}(x) \circledast Q(W)\)):

    | layer | op | output |
    |---|---|---|
    | conv1 | 11x11/4 conv, 96, valid, full precision -> BN -> 3x3/2 max pool | 27 x 27 |
    | conv2 | binary 5x5 conv, 256 -> BN -> 3x3/2 max pool | 14 x 14 |
    | conv3, conv4 | binary 3x3 conv, 384 -> BN | 14 x 14 |
    | conv5 | binary 3x3 conv, 256 -> BN -> 3x3/2 max pool (valid) | 6 x 6 |
    | fc6 | binary dense, 4096 -> BN: a 6x6 valid conv on the 6 x 6 x 256 map | 1 x 1 x 4096 |
    | fc7 | binary dense, 4096 -> BN: a 4x4 valid conv on fc6's output as 4 x 4 x 256 | 1 x 1 x 4096 |
    | logits | flatten -> dense, full precision | `num_classes` |

    Binary convs pad with +1 (`pad_values=1.0`), which is what LCE's
    `LceBconv2d` computes, so all six convert. Pooling follows batch
    normalisation so that LCE can fold it into the binary conv. The conv1 output
    has no ReLU: the next layer takes its sign, and sign(ReLU(x)) would be +1
    everywhere.

    fc6 and fc7 are dense layers written as convolutions, because LCE has no
    binary dense op (a binary `QuantDense` deploys as a float `FULLY_CONNECTED`).
    A valid conv whose kernel covers its whole \(H\times W\times C\) input is the
    dense layer on the flattened input, weight for weight:

    \[
    y_j = \sum_{h,w,c} K_{hwcj}\, x_{hwc} = \sum_i K'_{ij}\, \mathrm{flat}(x)_i,
    \qquad K' = \mathrm{reshape}(K, (HWC, 4096))
    \]

    so each becomes an `LceBconv2d`, and a trained `QuantDense` kernel loads into it
    by a reshape. fc7's input could be a 1 x 1 x 4096 map (a 1x1 conv), but `lnsify`
    maps every binary conv, and the paper's conv3 mapping sees a filter as a
    \(k\times k\times c\) image with hidden width \(wc\): \(9c^2(2w + w^2)\)
    weights, 1.2 * 10^9 for \(c = 4096\) at \(w = 2\). As 4 x 4 x 256 images
    (c = 256, like conv3's and fc6's filters) fc7's mapping has 4.7 * 10^6, and its
    three 3x3 convs still see the whole filter (a 7 x 7 receptive field).

    The fc6 and fc7 mappings run on 4096 filters each, so they dominate the cost
    of `alexnet_lns`'s mapping networks (`docs/design.md`). `width` scales both
    (its hidden convs cost \(\propto 2w + w^2\)).

    # Arguments
        quantizer: `"dorefa"` (default: layer-wise mean |W|), `"xnor"`
            (channel-wise), `"binarynet"` (no scale), or `None` for the same network
            in full precision (ReLU after every BN but the last).
        num_classes: Number of classes (logits, no softmax).
        input_shape: Image shape; at least 43 x 43 for the three pools.
    """
    conv_kwargs = binary_conv_kwargs(quantizer)
    fc_kwargs = {**conv_kwargs, "padding": "valid"}  # the kernel covers the input: no padding
    fc_kwargs.pop("pad_values", None)

    def activation(x, name):
        return tf.keras.layers.ReLU(name=f"{name}_relu")(x) if quantizer is None else x

    inputs = tf.keras.Input(input_shape, name="image")
    x = tf.keras.layers.Conv2D(96, 11, strides=4, use_bias=False, name="conv1")(inputs)
    x = activation(_bn("conv1_bn")(x), "conv1")
    x = tf.keras.layers.MaxPool2D(3, strides=2, padding="same", name="conv1_pool")(x)
    for name, filters, size, pool in (
        ("conv2", 256, 5, "same"),
        ("conv3", 384, 3, None),
        ("conv4", 384, 3, None),
        ("conv5", 256, 3, "valid"),
    ):
        x = lq.layers.QuantConv2D(filters, size, name=name, **conv_kwargs)(x)
        x = activation(_bn(f"{name}_bn")(x), name)
        if pool:
            x = tf.keras.layers.MaxPool2D(3, strides=2, padding=pool, name=f"{name}_pool")(x)
    x = lq.layers.QuantConv2D(4096, x.shape[1:3], name="fc6", **fc_kwargs)(x)
    x = activation(_bn("fc6_bn")(x), "fc6")
    x = tf.keras.layers.Reshape((4, 4, 256), name="fc7_reshape")(x)
    x = lq.layers.QuantConv2D(4096, 4, name="fc7", **fc_kwargs)(x)
    x = activation(_bn("fc7_bn")(x), "fc7")
    x = tf.keras.layers.Flatten(name="flatten")(x)
    outputs = tf.keras.layers.Dense(num_classes, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name=f"alexnet_{quantizer}" if quantizer else "alexnet_fp")
