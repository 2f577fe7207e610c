"""Every architecture edgecnn knows, as plain data (no torch import).

params / macs are for the default configuration and input size, without training-only auxiliary
heads; `tests/test_zoo_specs.py` recomputes them for every entry. Reference accuracies are ImageNet-1K
validation top-1/top-5 (%) unless `acc_source` says otherwise.
"""

from __future__ import annotations

from edgecnn.zoo.registry import ModelSpec, register

_TV = "edgecnn.zoo.torchvision_models"


def _tv(name, family, params, macs, acc1, acc5, weights_enum, *, resize=256, **kw) -> None:
    register(
        ModelSpec(
            name=name,
            family=family,
            builder=f"{_TV}:{name}",
            params=params,
            macs=macs,
            resize_size=resize,
            acc1=acc1,
            acc5=acc5,
            acc_source=f"torchvision {weights_enum}",
            torchvision_weights=name,
            source="torchvision.models",
            **kw,
        )
    )


# --- torchvision definitions (pretrained state dicts load unchanged) ---------------------------------
_tv(
    "alexnet",
    "alexnet",
    61_100_840,
    714_188_480,
    56.522,
    79.066,
    "AlexNet_Weights.IMAGENET1K_V1",
    min_input_size=64,
)
_tv("vgg11", "vgg", 132_863_336, 7_609_090_048, 69.020, 88.628, "VGG11_Weights.IMAGENET1K_V1")
_tv("vgg13", "vgg", 133_047_848, 11_308_466_176, 69.928, 89.246, "VGG13_Weights.IMAGENET1K_V1")
_tv("vgg16", "vgg", 138_357_544, 15_470_264_320, 71.592, 90.382, "VGG16_Weights.IMAGENET1K_V1")
_tv("vgg19", "vgg", 143_667_240, 19_632_062_464, 72.376, 90.876, "VGG19_Weights.IMAGENET1K_V1")
_tv("vgg11_bn", "vgg", 132_868_840, 7_609_090_048, 70.370, 89.810, "VGG11_BN_Weights.IMAGENET1K_V1")
_tv("vgg13_bn", "vgg", 133_053_736, 11_308_466_176, 71.586, 90.374, "VGG13_BN_Weights.IMAGENET1K_V1")
_tv("vgg16_bn", "vgg", 138_365_992, 15_470_264_320, 73.360, 91.516, "VGG16_BN_Weights.IMAGENET1K_V1")
_tv("vgg19_bn", "vgg", 143_678_248, 19_632_062_464, 74.218, 91.842, "VGG19_BN_Weights.IMAGENET1K_V1")
_tv(
    "googlenet",
    "googlenet",
    6_624_904,
    1_498_376_192,
    69.778,
    89.530,
    "GoogLeNet_Weights.IMAGENET1K_V1",
    aux_prefixes=("aux1.", "aux2."),
)
_tv(
    "inception_v3",
    "inception",
    23_834_568,
    5_713_216_096,
    77.294,
    93.450,
    "Inception_V3_Weights.IMAGENET1K_V1",
    resize=342,
    input_size=(299, 299),
    min_input_size=75,
    aux_prefixes=("AuxLogits.",),
)
_tv("resnet18", "resnet", 11_689_512, 1_814_073_344, 69.758, 89.078, "ResNet18_Weights.IMAGENET1K_V1")
_tv("resnet34", "resnet", 21_797_672, 3_663_761_408, 73.314, 91.420, "ResNet34_Weights.IMAGENET1K_V1")
_tv(
    "resnet50",
    "resnet",
    25_557_032,
    4_089_184_256,
    80.858,
    95.434,
    "ResNet50_Weights.IMAGENET1K_V2",
    resize=232,
)
_tv(
    "resnet101",
    "resnet",
    44_549_160,
    7_801_405_440,
    81.886,
    95.780,
    "ResNet101_Weights.IMAGENET1K_V2",
    resize=232,
)
_tv(
    "resnet152",
    "resnet",
    60_192_808,
    11_513_626_624,
    82.284,
    96.002,
    "ResNet152_Weights.IMAGENET1K_V2",
    resize=232,
)
_tv(
    "wide_resnet50_2",
    "wide_resnet",
    68_883_240,
    11_398_021_120,
    81.602,
    95.758,
    "Wide_ResNet50_2_Weights.IMAGENET1K_V2",
    resize=232,
)
_tv(
    "resnext50_32x4d",
    "resnext",
    25_028_904,
    4_230_479_872,
    81.198,
    95.340,
    "ResNeXt50_32X4D_Weights.IMAGENET1K_V2",
    resize=232,
)
_tv("densenet121", "densenet", 7_978_856, 2_834_161_664, 74.434, 91.972, "DenseNet121_Weights.IMAGENET1K_V1")
_tv(
    "mobilenet_v2",
    "mobilenet",
    3_504_872,
    300_774_272,
    72.154,
    90.822,
    "MobileNet_V2_Weights.IMAGENET1K_V2",
    resize=232,
)
_tv(
    "mobilenet_v3_small",
    "mobilenet",
    2_542_856,
    56_510_400,
    67.668,
    87.402,
    "MobileNet_V3_Small_Weights.IMAGENET1K_V1",
)
_tv(
    "mobilenet_v3_large",
    "mobilenet",
    5_483_032,
    216_589_760,
    75.274,
    92.566,
    "MobileNet_V3_Large_Weights.IMAGENET1K_V2",
    resize=232,
)
_tv(
    "efficientnet_b0",
    "efficientnet",
    5_288_548,
    385_814_752,
    77.692,
    93.532,
    "EfficientNet_B0_Weights.IMAGENET1K_V1",
)
_tv(
    "convnext_tiny",
    "convnext",
    28_589_128,
    4_455_531_264,
    82.520,
    96.146,
    "ConvNeXt_Tiny_Weights.IMAGENET1K_V1",
    resize=236,
)
_tv(
    "fcn_resnet50",
    "fcn",
    32_957_013,
    142_725_772_800,
    None,
    None,
    "FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1 (COCO val, VOC labels: mIoU 60.5)",
    task="segmentation",
    num_classes=21,
    input_size=(520, 520),
    resize=520,
    aux_prefixes=("aux_classifier.",),
)

# --- written here from the papers ----------------------------------------------------------------------
register(
    ModelSpec(
        name="lenet5",
        family="lenet",
        builder="edgecnn.zoo.lenet:lenet5",
        params=61_706,
        macs=416_520,
        input_size=(32, 32),
        resize_size=None,
        in_chans=1,
        num_classes=10,
        mean=(0.1307,),
        std=(0.3081,),
        source="LeCun et al. 1998, Gradient-based learning applied to document recognition",
        acc1=99.05,
        acc_source="LeCun et al. 1998 (MNIST test, 0.95% error)",
        fixed_input=True,
        min_input_size=32,
    )
)
register(
    ModelSpec(
        name="alexnet2012",
        family="alexnet",
        builder="edgecnn.zoo.alexnet2012:alexnet2012",
        params=62_378_344,
        macs=1_135_256_096,
        input_size=(227, 227),
        source="Krizhevsky et al. 2012 (single-tower layout)",
        acc1=59.3,
        acc5=81.8,
        acc_source="Krizhevsky et al. 2012, Table 2 (1 CNN, val)",
        fixed_input=True,
        min_input_size=227,
    )
)
register(
    ModelSpec(
        name="zfnet",
        family="alexnet",
        builder="edgecnn.zoo.alexnet2012:zfnet",
        params=107_627_624,
        macs=2_476_704_896,
        source="Zeiler & Fergus 2014, Fig. 3 with conv3-5 of 512-1024-512",
        acc1=62.5,
        acc5=84.0,
        acc_source="Zeiler & Fergus 2014, Table 2 (1 convnet, layers 3-5 widened, val)",
        fixed_input=True,
        min_input_size=224,
    )
)
register(
    ModelSpec(
        name="xception",
        family="xception",
        builder="edgecnn.zoo.xception:xception",
        params=22_855_952,
        macs=8_357_403_496,
        input_size=(299, 299),
        resize_size=333,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        source="Chollet 2017, Xception: Deep Learning with Depthwise Separable Convolutions",
        acc1=79.0,
        acc5=94.5,
        acc_source="Chollet 2017, Table 1",
        min_input_size=64,
    )
)
register(
    ModelSpec(
        name="se_resnet50",
        family="se_resnet",
        builder="edgecnn.zoo.se_resnet:se_resnet50",
        params=28_088_024,
        macs=4_091_699_200,
        source="Hu et al. 2018, Squeeze-and-Excitation Networks",
        acc1=76.71,
        acc5=93.38,
        acc_source="Hu et al. 2018, Table 2 (single crop, val)",
    )
)
register(
    ModelSpec(
        name="unet",
        family="unet",
        builder="edgecnn.zoo.unet:unet",
        params=31_030_658,
        macs=150_428_424_448,
        task="segmentation",
        input_size=(572, 572),
        resize_size=None,
        in_chans=1,
        num_classes=2,
        mean=(0.5,),
        std=(0.5,),
        source="Ronneberger et al. 2015, U-Net (valid convs; padding='same' option)",
        min_input_size=188,
    )
)
