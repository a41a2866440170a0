import torch

from engine.model import BUILD_NETWORK_REGISTRY

__all__ = ['TinySegNet']


@BUILD_NETWORK_REGISTRY.register()
class TinySegNet(torch.nn.Module):
    def __init__(self, in_channels=3, num_classes=2, width=8):
        super(TinySegNet, self).__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(width, num_classes, 1),
        )

    def forward(self, x):
        return self.body(x)
