"""Binary AlexNet for ImageNet, DoReFa-Net style (LNS Table 5).

The layout of DoReFa-Net's AlexNet: batch normalisation after every conv and
fully connected layer, the first conv and the classifier in full precision (paper
Sec. 4.3, "we do not quantize the first convolutional layer and the last fully
connected layer"), binary weights and activations everywhere else, and a
layer-wise weight scale (DoReFa) by default.

```python
model = lns_larq.models.get("alexnet")              # DoReFa baseline
lns = lns_larq.models.get("alexnet_lns", width=1)  # LNS on its four binary convs
```
"""

import larq as lq
import tensorflow as tf

from lns_larq.models.resnet import _bn, binary_conv_kwargs


def alexnet(quantizer="dorefa", num_classes=1000, input_shape=(224, 224, 3)):
    r"""Binary AlexNet.

    Structure (224 x 224 input; "binary" = \(\mathrm{sign}(x) \circledast Q(W)\)):

    | layer | op | output |
    |---|---|---|
    | conv1 | 11x11/4 conv, 96, valid, full precision -> BN -> 3x3/2 max pool | 27 x 27 |
    | conv2 | binary 5x5 conv, 256 -> BN -> 3x3/2 max pool | 14 x 14 |
    | conv3, conv4 | binary 3x3 conv, 384 -> BN | 14 x 14 |
    | conv5 | binary 3x3 conv, 256 -> BN -> 3x3/2 max pool (valid) | 6 x 6 |
    | fc6, fc7 | binary dense, 4096 -> BN | 4096 |
    | logits | dense, full precision | `num_classes` |

    Binary convs pad with +1 (`pad_values=1.0`), which is what LCE's
    `LceBconv2d` computes, so all four convert. Pooling follows batch
    normalisation so that LCE can fold it into the binary conv. The conv1 output
    has no ReLU: the next layer takes its sign, and sign(ReLU(x)) would be +1
    everywhere. The binary dense layers (fc6, fc7) deploy as LCE-quantized inputs
    to a float `FULLY_CONNECTED`; `lnsify` maps the convs only (a conv3 mapping of
    fc6's 9216-wide filters would have about 6 * 10^9 parameters).

    # Arguments
        quantizer: `"dorefa"` (default: layer-wise mean |W|), `"xnor"`
            (channel-wise), `"binarynet"` (no scale), or `None` for the same network
            in full precision (ReLU after every BN but the last).
        num_classes: Number of classes (logits, no softmax).
        input_shape: Image shape; at least 43 x 43 for the three pools.
    """
    conv_kwargs = binary_conv_kwargs(quantizer)
    dense_kwargs = {k: v for k, v in conv_kwargs.items() if k not in ("padding", "pad_values")}

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
    x = tf.keras.layers.Flatten(name="flatten")(x)
    for name in ("fc6", "fc7"):
        x = lq.layers.QuantDense(4096, name=name, **dense_kwargs)(x)
        x = activation(_bn(f"{name}_bn")(x), name)
    outputs = tf.keras.layers.Dense(num_classes, name="logits")(x)
    return tf.keras.Model(inputs, outputs, name=f"alexnet_{quantizer}" if quantizer else "alexnet_fp")
