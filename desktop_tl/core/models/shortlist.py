"""The architectures the app offers first, with a sentence each for a non-programmer."""

from __future__ import annotations

SHORTLIST: tuple[str, ...] = (
    "efficientnet_lite0",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "convnext_nano",
    "convnext_tiny",
    "vit_small_patch16_224",
    "regnety_008",
)

DESCRIPTIONS = {
    "efficientnet_lite0": "EfficientNet-Lite0: small and fast on a CPU; ImageNet weights ship with the app",
    "mobilenetv3_small_100": "MobileNetV3 Small: the tiniest and fastest, for quick tries on modest laptops",
    "mobilenetv3_large_100": "MobileNetV3 Large: small and fast on a CPU",
    "resnet18": "ResNet-18: classic, robust baseline; fast on a CPU",
    "resnet34": "ResNet-34: deeper classic ResNet; moderate speed on a CPU",
    "resnet50": "ResNet-50: the standard strong baseline; slow on a CPU, fine on a GPU",
    "efficientnet_b0": "EfficientNet-B0: accurate for its small size; fast on a CPU",
    "convnext_nano": "ConvNeXt Nano: modern CNN with good accuracy; medium speed",
    "convnext_tiny": "ConvNeXt Tiny: modern CNN with strong accuracy; best with a GPU",
    "vit_small_patch16_224": "ViT Small/16: vision transformer; best with a GPU and a few thousand images",
    "regnety_008": "RegNetY-800MF: efficient CNN; fast on a CPU",
}
