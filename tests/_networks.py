"""Small networks for the PyTorch adapter's tests, after their published definitions.

torchvision is not installable here, so the shapes of ResNet (He et al. 2016, BasicBlock),
VGG (Simonyan & Zisserman 2015) and U-Net (Ronneberger et al. 2015) are written out, with
tiny channel counts so that every test runs in well under a second. Weights are random and
BatchNorm statistics are randomised (:func:`randomize`), so that folding and eval-mode maps
are not identities.
"""

from __future__ import annotations

import torch
from torch import nn


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters; float64; eval mode."""
    generator = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
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
