"""Small networks for the PyTorch adapter's tests, after their published definitions.

torchvision is not installable here, so the shapes of ResNet (He et al. 2016, BasicBlock),
VGG (Simonyan & Zisserman 2015) and U-Net (Ronneberger et al. 2015) are written out, with
tiny channel counts so that every test runs in well under a second. Weights are random and
BatchNorm statistics are randomised (:func:`randomize`), so that folding and eval-mode maps
are not identities.
"""

from __future__ import annotations

import collections

import torch
import torch.fx
from torch import nn


def largest_ratio(model: nn.Module, shape: tuple, pairs: int = 32) -> float:
    """The largest ``||f(x) - f(y)|| / ||x - y||`` over random pairs: a lower bound of the
    Lipschitz constant, which a network bound must not be below."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = torch.randn((pairs, *shape), dtype=torch.float64, generator=generator)
        y = x + torch.randn(x.shape, dtype=torch.float64, generator=generator)
        ratio = (model(x) - model(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
    return float(ratio.max())


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters; float64; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._NormBase) and (
                    module.running_mean is not None):  # BatchNorm, SyncBatchNorm, InstanceNorm
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator,
                                                      dtype=torch.float64))
                module.running_var.copy_(torch.rand(n, generator=generator,
                                                    dtype=torch.float64) + 0.5)
                if module.affine:
                    module.weight.copy_(torch.randn(n, generator=generator, dtype=torch.float64))
                    module.bias.copy_(torch.randn(n, generator=generator, dtype=torch.float64))
    return model.eval()


class BasicBlock(nn.Module):
    """ResNet's BasicBlock: two 3x3 convolutions with BatchNorm, and the identity shortcut
    (a strided 1x1 convolution with BatchNorm when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class TinyResNet(nn.Module):
    """A stem, one block at stride 1, one at stride 2, global average pooling, a classifier."""

    def __init__(self, channels: int = 4, classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(channels, channels))
        self.layer2 = nn.Sequential(BasicBlock(channels, 2 * channels, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * channels, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tiny_vgg(channels: int = 4, size: int = 8, classes: int = 3) -> nn.Sequential:
    """VGG's pattern: 3x3 convolutions and ReLUs, 2x2 max pooling, a dropout classifier."""
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        ),
        nn.Flatten(),
        nn.Linear(2 * channels * (size // 4) ** 2, 16), nn.ReLU(), nn.Dropout(),
        nn.Linear(16, classes),
    )


def tiny_vgg_avg(channels: int = 4, size: int = 8, classes: int = 3) -> nn.Sequential:
    """:func:`tiny_vgg` with average pooling: every module linear or 1-Lipschitz."""
    model = tiny_vgg(channels, size, classes)
    model[0][3] = nn.AvgPool2d(2)
    model[0][6] = nn.AvgPool2d(2)
    return model


class TinyUNet(nn.Module):
    """U-Net's shape at one level: encode, downsample, bottleneck, a transposed convolution
    up, concatenation with the skip connection, decode, a 1x1 output convolution."""

    def __init__(self, channels: int = 4, out_channels: int = 2):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                 nn.ReLU())
        self.down = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(nn.Conv2d(channels, 2 * channels, 3, padding=1),
                                        nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * channels, channels, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x):
        skip = self.enc(x)
        x = self.up(self.bottleneck(self.down(skip)))
        return self.out(self.dec(torch.cat([skip, x], dim=1)))


def linear_cnn(channels: int = 3, size: int = 8, classes: int = 5) -> nn.Sequential:
    """A CNN with no activation: every module linear (a nested Sequential included)."""
    return nn.Sequential(
        nn.Conv2d(2, channels, 3, padding=1, padding_mode="reflect"),
        nn.BatchNorm2d(channels),
        nn.AvgPool2d(2),
        nn.Sequential(nn.Conv2d(channels, channels, 3, padding="same", groups=channels),
                      nn.ZeroPad2d((1, 0, 0, 1))),
        nn.ConvTranspose2d(channels, 2, 3, stride=2, padding=1, output_padding=1),
        nn.Dropout(),
        nn.Flatten(),
        nn.Linear(2 * (2 * (size // 2 + 1)) ** 2, classes),
    )


# ---------------------------------------------------------------------------------------------
# Published architectures, at full or reduced width (torchvision is not installable here)
# ---------------------------------------------------------------------------------------------
class ResNetBlock(nn.Module):
    """torchvision's ``BasicBlock`` (expansion 1): conv3x3-BN-ReLU-conv3x3-BN, plus the
    identity or the ``downsample`` shortcut (1x1 convolution with the block's stride, BN),
    then ReLU; the shortcut is computed after the residual branch, as torchvision does."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` with ``BasicBlock`` (He et al. 2016): a 7x7 stride-2 stem with
    BN, ReLU and 3x3 stride-2 max pooling, four stages of blocks (the first block of stages
    2-4 at stride 2), global adaptive average pooling, ``torch.flatten`` and a classifier."""

    def __init__(self, layers=(2, 2, 2, 2), width: int = 64, classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = width
        for i, blocks in enumerate(layers):
            out = width * 2**i
            stage = [ResNetBlock(channels, out, 1 if i == 0 else 2)]
            stage += [ResNetBlock(out, out) for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            channels = out
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18(width: int = 64, classes: int = 1000) -> ResNet:
    """ResNet-18: BasicBlock, [2, 2, 2, 2] (``width=64`` is torchvision's)."""
    return ResNet((2, 2, 2, 2), width, classes)


VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]  # configuration A


def vgg11(width: int = 64, hidden: int = 4096, classes: int = 1000,
          batch_norm: bool = False) -> nn.Sequential:
    """VGG-11 (Simonyan & Zisserman 2015, configuration A) as torchvision builds it: 3x3
    convolutions with padding 1 and ReLU, 2x2 max pooling, adaptive average pooling to 7x7,
    and the dropout classifier; channels scaled by ``width / 64``."""
    layers: list[nn.Module] = []
    channels = 3
    for v in VGG11:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        out = int(v) * width // 64
        layers.append(nn.Conv2d(channels, out, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        channels = out
    return nn.Sequential(
        nn.Sequential(*layers),
        nn.AdaptiveAvgPool2d((7, 7)),
        nn.Flatten(),
        nn.Sequential(nn.Linear(channels * 49, hidden), nn.ReLU(True), nn.Dropout(),
                      nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
                      nn.Linear(hidden, classes)))


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) at two levels, with padded convolutions: double
    convolutions with BN and ReLU, 2x2 max pooling down, 2x2 stride-2 transposed convolutions
    up, each concatenated with its skip connection along channels, a 1x1 output."""

    def __init__(self, in_channels: int = 1, classes: int = 2, width: int = 4):
        super().__init__()
        self.enc1 = _double_conv(in_channels, width)
        self.enc2 = _double_conv(width, 2 * width)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(2 * width, 4 * width)
        self.up2 = nn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
        self.dec2 = _double_conv(4 * width, 2 * width)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec1 = _double_conv(2 * width, width)
        self.out = nn.Conv2d(width, classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bottleneck(self.pool(e2))
        d2 = self.dec2(torch.cat([e2, self.up2(b)], dim=1))
        d1 = self.dec1(torch.cat([e1, self.up1(d2)], dim=1))
        return self.out(d1)


def linearized(model: nn.Module) -> nn.Module:
    """The model with every ReLU replaced by ``nn.Identity`` and every max pooling by the
    average pooling of the same window: a network whose forward is affine."""
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU):
            setattr(model, name, nn.Identity())
        elif isinstance(child, nn.MaxPool2d):
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
        else:
            linearized(child)
    return model


class Crossed(nn.Module):
    """A convolution and a BatchNorm side by side: the BatchNorm normalizes the input, not the
    convolution's output, so folding must not pair them."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

    def forward(self, x):
        return self.conv(x) + self.bn(x)


Pair = collections.namedtuple("Pair", "logits features")


class SeveralOutputs(nn.Module):
    """A convolution ``y = a(x)`` and ``z = b(y)``, returned as ``kind`` says: several outputs
    as a tuple, a dict (torchvision's segmentation models return ``{"out": ...}``), a nested
    list, a namedtuple, one output repeated, or with a value that is no tensor."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 2, 1)

    def forward(self, x):
        y = self.a(x)
        z = self.b(y)
        return {"tuple": lambda: (z, y), "dict": lambda: {"out": z, "aux": y},
                "dict with input": lambda: {"out": z, "aux": [y, x]},
                "nested list": lambda: [z, (y,)], "namedtuple": lambda: Pair(z, 2 * y),
                "repeated": lambda: (y, y), "one in a dict": lambda: {"out": z},
                "with a number": lambda: (z, 3)}[self.kind]()


class SkipAroundBatchNorm(nn.Module):
    """``relu(bn(y)) + y`` with ``y = conv(x)``: the convolution's output is read twice
    (``through``: the BatchNorm reads it through that module, which returns its input)."""

    def __init__(self, through: nn.Module | None = None, channels: int = 4):
        super().__init__()
        c = channels
        self.conv, self.bn = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.through = through or nn.Sequential()

    def forward(self, x):
        y = self.conv(x)
        z = torch.relu(self.bn(self.through(y))) + y
        return self.bn2(self.conv2(z))  # a fold that stays


class Swish(nn.Module):
    """lukemelas EfficientNet-PyTorch's activation: a module of the user's, without
    submodules, computing a product of two values of the signal."""

    def forward(self, x):
        return x * torch.sigmoid(x)


class SwishResidual(nn.Module):
    """``x + act(conv(x))`` with ``act`` a :class:`Swish`."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, dtype=torch.float64)
        self.act = Swish()

    def forward(self, x):
        return x + self.act(self.conv(x))


def stochastic_depth(input, p: float, mode: str, training: bool = True):
    """torchvision.ops.stochastic_depth, as torchvision defines it (its name and module too,
    by which sparseconv reads it: torchvision is not installable here): in training, each
    sample's (``"row"``) or the batch's (``"batch"``) branch dropped with probability ``p``
    and the rest scaled by ``1 / (1 - p)``; else the identity."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if mode not in ("batch", "row"):
        raise ValueError(f"mode has to be either 'batch' or 'row', but got {mode}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device)
    noise = noise.bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


stochastic_depth.__module__ = "torchvision.ops.stochastic_depth"
torch.fx.wrap("stochastic_depth")  # (as torchvision does: one call in torch.fx's graph)


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth."""

    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, input):
        return stochastic_depth(input, self.p, self.mode, self.training)


class DroppedResidual(nn.Module):
    """``x + sd(act(conv(x)))``: torchvision's ConvNeXt and EfficientNet blocks' residual
    branch, dropped by a :class:`StochasticDepth` in training (``act`` the identity: a
    linear network)."""

    def __init__(self, act: nn.Module, p: float = 0.1, mode: str = "row"):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, dtype=torch.float64)
        self.act = act
        self.sd = StochasticDepth(p, mode)

    def forward(self, x):
        return x + self.sd(self.act(self.conv(x)))
