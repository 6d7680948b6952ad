"""sppdet: SPP-net object detection (He et al., 2014) on torchvision trunks."""

__version__ = "0.2.0"
