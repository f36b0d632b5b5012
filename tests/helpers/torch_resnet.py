"""torchvision's ResNet18 in PyTorch, module for module (tests only; needs `torch`).

torchvision itself does not import beside the CPU build of torch this project's machines carry
(its compiled ops are missing), and the model needs none of them: this is
`torchvision.models.resnet.ResNet(BasicBlock, [2, 2, 2, 2])` written out with `torch.nn`, with the
same attribute names, so its `state_dict()` has torchvision's (and timm's) keys: `conv1.weight`,
`bn1.running_var`, `layer2.0.downsample.0.weight`, `fc.bias`, ... BatchNorm eps 1e-5, momentum
0.1 (PyTorch's convention), as torchvision.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = 64
        for s, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            blocks = [BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes)]
            setattr(self, f"layer{s}", nn.Sequential(*blocks))
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomised(seed: int = 0, num_classes: int = 1000) -> ResNet18:
    """A ResNet18 with its own random weights and non-trivial BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = ResNet18(num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.05, 2.0)
    return model.eval()
