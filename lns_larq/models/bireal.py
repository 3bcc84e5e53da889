"""Bi-Real ResNet-18 for ImageNet with a PReLU after every binary conv (LNS Table 3).

The paper's ResNet-18 baseline is "Bireal-Net + PReLU": the ResNet-18 of Bi-Real
Net (Liu et al., 2018), a real-valued shortcut around every binary 3x3 conv, with
a PReLU inserted after every binary conv. The stem conv, the downsampling shortcuts
and the classifier are full precision, as in the paper (Sec. 4.3). Binary convs use
`pad_values=1.0` so that Larq Compute Engine converts them to `LceBconv2d`.

```python
model = lns_larq.models.get("resnet18_bireal", quantizer="xnor")
lns = lns_larq.models.get("resnet18_bireal_lns", quantizer="xnor", width=0.5)
```
"""

import tensorflow as tf

from lns_larq.models.resnet import _bn, binary_conv_kwargs, bireal_stages


def resnet18_bireal(
    quantizer: str | None = "xnor",
    num_classes: int = 1000,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    stages: tuple[int, ...] = (64, 128, 256, 512),
    blocks: int = 2,
) -> tf.keras.Model:
    r"""Binary Bi-Real ResNet-18 with PReLU.

    Structure (ImageNet, 224 x 224 input):

    - stem, full precision: 7x7/2 conv (64) -> BN -> 3x3/2 max pool (56 x 56);
    - 4 stages of 64, 128, 256, 512 channels, `blocks` basic blocks each, i.e.
      4 binary 3x3 convs per stage and 16 in all. Every binary conv \(k\) has its
      own shortcut (Bi-Real):

      \[
      x_{k+1} = \mathrm{PReLU}\big(\mathrm{BN}(\mathrm{sign}(x_k) \circledast
      Q(W_k))\big) + \mathrm{shortcut}(x_k)
      \]

      with the identity as shortcut, except at the first conv of stages 2-4, which
      has stride 2 and a full-precision shortcut 2x2 average pool -> 1x1 conv -> BN;
    - global average pool -> dense classifier (full precision, logits).

    The PReLU has one slope per channel (shared over height and width), starting
    at 0.25 as PyTorch's (Keras' default, 0, would start as a ReLU).

    # Arguments
        quantizer: Weight quantizer of the binary convs: `"xnor"` (default:
            channel-wise mean |W|, Bi-Real's magnitude-aware sign), `"dorefa"`
            (layer-wise, Table 4's ResNet-18), `"binarynet"` (no scale), or `None`
            for the same network in full precision.
        num_classes: Number of classes (logits, no softmax).
        input_shape: Image shape; any size >= 32 x 32 works.
        stages: Channels of the four stages.
        blocks: Basic blocks (two convs each) per stage.
    """
    conv_kwargs = binary_conv_kwargs(quantizer)
    inputs = tf.keras.Input(input_shape, name="image")
    x = tf.keras.layers.Conv2D(
        stages[0], 7, strides=2, padding="same", use_bias=False, name="conv1"
    )(inputs)
    x = _bn("conv1_bn")(x)
    x = tf.keras.layers.MaxPool2D(3, strides=2, padding="same", name="conv1_pool")(x)
    x = bireal_stages(x, stages, blocks, conv_kwargs, prelu=True, pool_padding="same")
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf.keras.layers.Dense(num_classes, name="logits")(x)
    name = f"resnet18_bireal_{quantizer}" if quantizer else "resnet18_bireal_fp"
    return tf.keras.Model(inputs, outputs, name=name)
