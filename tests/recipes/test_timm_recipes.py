"""Published timm training recipes through ``purelr.build(dict(timm=ARGS))`` against timm's train.py.

Each recipe is the whole argument set its source publishes (command line, config file or paper
hyperparameters), in train.py's argument names (``--decay-epochs 2.4`` -> ``decay_epochs=2.4``),
data, augmentation and loss arguments included (purelr ignores them, ``ignored_keys``); ``world``
is the number of processes it ran on (train.py's ``world_size``, for the lr from ``lr_base``).
``group_matcher`` / ``no_weight_decay_list`` stand for the timm model's ``group_matcher()`` /
``no_weight_decay()`` on the twin. Each runs for 3 epochs on the ResNet or ViT twin of
``tests/recipes/twins.py`` through train.py's own ``train_one_epoch`` (``run_train_py``: timm
1.0.31's ``create_optimizer_v2``, ``create_scheduler_v2``, ``ModelEmaV3``, ``dispatch_clip_grad``)
and through ``purelr.build``: params, EMA params and every update's lrs agree to 1e-10 (x64).

``NEEDS_TIMM_OPTIMIZERS`` holds the recipes whose optimizer (``lamb``, ``rmsproptf``) is twinned
by another change: they are not run yet; once ``purelr.recipes.timm.SUPPORTED`` has their name,
``test_recipe_matches_train_py`` runs them unchanged (move them into ``RECIPES``).
"""

import pytest

from purelr.recipes import timm as timm_recipe
from tests.recipes.test_timm_train import assert_same_run, run_purelr, run_train_py

VIT_MATCHER = dict(stem=r"^cls_token|^pos_embed|^embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])
VIT_MODEL = dict(group_matcher=VIT_MATCHER, no_weight_decay_list=["pos_embed", "cls_token"])
TRAINING_SCRIPT = "timm docs, hfdocs/source/training_script.mdx (Training Examples)"

# name: (source, twin, world, batches per epoch, train.py arguments)
RECIPES = {
    "seresnet34": (
        f"{TRAINING_SCRIPT}, 'To train an SE-ResNet34 on ImageNet ... 4 GPUs'", "resnet", 4, 5,
        dict(model="seresnet34", sched="cosine", epochs=150, warmup_epochs=5, lr=0.4, reprob=0.5, remode="pixel",
             batch_size=256, amp=True, workers=4)),
    "seresnext26t_32x4d": (
        f"{TRAINING_SCRIPT}, 'SE-ResNeXt-26-D and SE-ResNeXt-26-T' (2 GPUs)", "resnet", 2, 5,
        dict(model="seresnext26t_32x4d", lr=0.1, warmup_epochs=5, epochs=160, weight_decay=1e-4, sched="cosine",
             reprob=0.4, remode="pixel", batch_size=112)),
    "resnet50_jsd": (
        f"{TRAINING_SCRIPT}, 'ResNet50 with JSD loss and RandAugment' (2 GPUs; --jsd is now --jsd-loss)",
        "resnet", 2, 5,
        dict(batch_size=64, model="resnet50", sched="cosine", epochs=200, lr=0.05, amp=True, remode="pixel",
             reprob=0.6, aug_splits=3, aa="rand-m9-mstd0.5-inc1", resplit=True, split_bn=True, jsd_loss=True,
             dist_bn="reduce")),
    "resnext50_32x4d_ra": (
        f"{TRAINING_SCRIPT}, 'ResNeXt-50 32x4d w/ RandAugment' (8 GPUs)", "resnet", 8, 5,
        dict(model="resnext50_32x4d", lr=0.6, warmup_epochs=5, epochs=240, weight_decay=1e-4, sched="cosine",
             reprob=0.4, recount=3, remode="pixel", aa="rand-m7-mstd0.5-inc1", batch_size=192, workers=6, amp=True,
             dist_bn="reduce")),
    "resnet50_torchvision_v2": (
        "torchvision's ResNet-50 IMAGENET1K_V2 recipe (blog 'How to Train State-Of-The-Art Models Using "
        "TorchVision's Latest Primitives', 2021; 8 GPUs x 128; warmup from 0.01 of the lr)", "resnet", 8, 5,
        dict(model="resnet50", opt="momentum", lr=0.5, momentum=0.9, weight_decay=2e-5, sched="cosine", epochs=600,
             warmup_epochs=5, warmup_lr=0.005, batch_size=128, smoothing=0.1, mixup=0.2, cutmix=1.0, reprob=0.1,
             model_ema=True, model_ema_decay=0.99998, train_interpolation="bilinear")),
    "resnet50_bag_of_tricks": (
        "Bag of Tricks (He et al. 2019, arXiv:1812.01187, sections 3-5): NAG, lr 0.1 per 256 images "
        "(batch 1024), 5 warmup epochs from 0, cosine over 120 epochs, no bias decay, label smoothing", "resnet", 8, 5,
        dict(model="resnet50", opt="nesterov", lr_base=0.1, lr_base_size=256, batch_size=128, weight_decay=1e-4,
             sched="cosine", epochs=120, warmup_epochs=5, warmup_lr=0.0, smoothing=0.1)),
    "deit_base": (
        "DeiT-B (Touvron et al. 2021, arXiv:2012.12877, Table 9; facebookresearch/deit main.py: "
        "lr 5e-4 * batch / 512, 16 GPUs x 64)", "vit", 16, 5,
        dict(model="deit_base_patch16_224", batch_size=64, opt="adamw", opt_eps=1e-8, lr_base=5e-4, lr_base_size=512,
             lr_base_scale="linear", weight_decay=0.05, sched="cosine", epochs=300, warmup_epochs=5, warmup_lr=1e-6,
             min_lr=1e-5, decay_rate=0.1, smoothing=0.1, mixup=0.8, cutmix=1.0, reprob=0.25,
             aa="rand-m9-mstd0.5-inc1", drop_path=0.1, color_jitter=0.4, train_interpolation="bicubic",
             model_ema=True, model_ema_decay=0.99996, **VIT_MODEL)),
    "convnext_tiny": (
        "ConvNeXt-T (Liu et al. 2022; facebookresearch/ConvNeXt TRAINING.md, single machine: 8 GPUs x 128, "
        "--update_freq 4, lr 4e-3, --model_ema true; main.py defaults: 300 epochs, 20 warmup, wd 0.05)", "resnet", 8, 6,
        dict(model="convnext_tiny", drop_path=0.1, batch_size=128, lr=4e-3, grad_accum_steps=4, model_ema=True,
             model_ema_decay=0.9999, opt="adamw", opt_eps=1e-8, weight_decay=0.05, epochs=300, warmup_epochs=20,
             min_lr=1e-6, smoothing=0.1, mixup=0.8, cutmix=1.0, reprob=0.25, aa="rand-m9-mstd0.5-inc1",
             sched_on_updates=True)),
    "swin_tiny": (
        "Swin-T (Liu et al. 2021; microsoft/Swin-Transformer config.py defaults and "
        "configs/swin/swin_tiny_patch4_window7_224.yaml: lr 5e-4 per 512 images, 8 GPUs x 128)", "vit", 8, 5,
        dict(model="swin_tiny_patch4_window7_224", batch_size=128, opt="adamw", opt_eps=1e-8, opt_betas=[0.9, 0.999],
             lr_base=5e-4, lr_base_size=512, lr_base_scale="linear", warmup_lr=5e-7, min_lr=5e-6,
             weight_decay=0.05, epochs=300, warmup_epochs=20, clip_grad=5.0, clip_mode="norm", drop_path=0.2,
             sched="cosine", sched_on_updates=True, smoothing=0.1, mixup=0.8, cutmix=1.0,
             aa="rand-m9-mstd0.5-inc1", reprob=0.25, **VIT_MODEL)),
    "swin_base_384_finetune": (
        "Swin-B 384 fine-tune (microsoft/Swin-Transformer configs/swin/"
        "swin_base_patch4_window12_384_finetune.yaml: 30 epochs, 5 warmup, lr 2e-5 per 512 images, wd 1e-8)",
        "vit", 8, 5,
        dict(model="swin_base_patch4_window12_384", img_size=384, batch_size=64, opt="adamw", opt_eps=1e-8,
             lr_base=2e-5, lr_base_size=512, lr_base_scale="linear", warmup_lr=2e-8, min_lr=2e-7,
             weight_decay=1e-8, epochs=30, warmup_epochs=5, clip_grad=5.0, drop_path=0.2, sched_on_updates=True,
             smoothing=0.1, **VIT_MODEL)),
    "beit_base_finetune": (
        "BEiT-B fine-tune (Bao et al. 2022; microsoft/unilm beit/get_started_for_image_classification.md: "
        "8 GPUs x 128, lr 4e-3, layer decay 0.65, 100 epochs, 20 warmup)", "vit", 8, 5,
        dict(model="beit_base_patch16_224", batch_size=128, lr=4e-3, warmup_epochs=20, epochs=100, layer_decay=0.65,
             drop_path=0.1, weight_decay=0.05, mixup=0.8, cutmix=1.0, num_classes=1000, opt="adamw", opt_eps=1e-8,
             min_lr=1e-6, warmup_lr=1e-6, sched_on_updates=True, **VIT_MODEL)),
    "mae_vit_base_finetune": (
        "MAE ViT-B fine-tune (He et al. 2022; facebookresearch/mae FINETUNE.md: 4 nodes x 8 GPUs x 32, "
        "blr 5e-4 per 256 images, layer decay 0.65, 100 epochs, 5 warmup from 0)", "vit", 32, 5,
        dict(model="vit_base_patch16_224", batch_size=32, epochs=100, lr_base=5e-4, lr_base_size=256,
             lr_base_scale="linear", layer_decay=0.65, weight_decay=0.05, drop_path=0.1, mixup=0.8, cutmix=1.0,
             reprob=0.25, opt="adamw", warmup_epochs=5, warmup_lr=0.0, min_lr=1e-6, smoothing=0.1,
             aa="rand-m9-mstd0.5-inc1", sched_on_updates=True, **VIT_MODEL)),
    "nfnet_f0": (
        "NFNet-F0 (Brock et al. 2021, arXiv:2102.06171, section 4 and appendix: Nesterov SGD, lr 0.1 per 256 "
        "images at batch 4096, wd 2e-5, AGC 0.01 without the classifier, 360 epochs, 5 warmup, EMA 0.99999)",
        "resnet", 32, 5,
        dict(model="dm_nfnet_f0", opt="sgd", momentum=0.9, lr_base=0.1, lr_base_size=256, batch_size=128,
             weight_decay=2e-5, clip_grad=0.01, clip_mode="agc", epochs=360, warmup_epochs=5, sched="cosine",
             model_ema=True, model_ema_decay=0.99999, smoothing=0.1, drop=0.2, drop_path=0.25)),
    "vit_augreg_pretrain": (
        "ViT AugReg (Steiner et al. 2021, arXiv:2106.10270, section 3: Adam with decoupled wd 0.1, lr 1e-3, "
        "batch 4096, global clip 1.0, 300 epochs, 10k warmup steps ~ 32 ImageNet-1k epochs)", "vit", 32, 5,
        dict(model="vit_base_patch16_224", opt="adamw", lr=1e-3, weight_decay=0.1, opt_betas=[0.9, 0.999],
             clip_grad=1.0, batch_size=128, epochs=300, warmup_epochs=32, warmup_lr=0.0, sched="cosine",
             sched_on_updates=True, drop=0.1, drop_path=0.1, mixup=0.2, aa="rand-m10-mstd0.5", **VIT_MODEL)),
    "vit_augreg_finetune": (
        "ViT AugReg fine-tune (Steiner et al. 2021, arXiv:2106.10270, section 3.3: SGD momentum 0.9, no weight "
        "decay, global clip 1.0, batch 512, lr 0.03, cosine)", "vit", 4, 5,
        dict(model="vit_base_patch16_384", img_size=384, opt="momentum", momentum=0.9, lr=0.03, weight_decay=0.0,
             clip_grad=1.0, batch_size=128, epochs=20, warmup_epochs=1, warmup_lr=0.0, sched="cosine",
             sched_on_updates=True, **VIT_MODEL)),
}

RSB = "ResNet Strikes Back (Wightman et al. 2021, arXiv:2110.00476, Table 1; 8 GPUs x 256, BCE loss)"
EFFICIENTNET = dict(sched="step", decay_epochs=2.4, decay_rate=0.97, opt="rmsproptf", opt_eps=0.001, warmup_lr=1e-6,
                    weight_decay=1e-5, aa="rand-m9-mstd0.5", remode="pixel", amp=True)
NEEDS_TIMM_OPTIMIZERS = {
    "resnet50_rsb_a1": (
        f"{RSB}, A1", "resnet", 8, 5,
        dict(model="resnet50", opt="lamb", lr=5e-3, weight_decay=0.01, epochs=600, warmup_epochs=5, sched="cosine",
             batch_size=256, bce_loss=True, bce_target_thresh=0.2, smoothing=0.0, mixup=0.1, cutmix=1.0,
             aa="rand-m7-mstd0.5-inc1", reprob=0.0, drop_path=0.05, amp=True)),
    "resnet50_rsb_a2": (
        f"{RSB}, A2", "resnet", 8, 5,
        dict(model="resnet50", opt="lamb", lr=5e-3, weight_decay=0.02, epochs=300, warmup_epochs=5, sched="cosine",
             batch_size=256, bce_loss=True, bce_target_thresh=0.2, smoothing=0.0, mixup=0.1, cutmix=1.0,
             aa="rand-m7-mstd0.5-inc1", reprob=0.0, drop_path=0.05, amp=True)),
    "resnet50_rsb_a3": (
        f"{RSB}, A3 (160 px)", "resnet", 8, 5,
        dict(model="resnet50", opt="lamb", lr=8e-3, weight_decay=0.02, epochs=100, warmup_epochs=5, sched="cosine",
             batch_size=256, img_size=160, bce_loss=True, bce_target_thresh=0.2, smoothing=0.0, mixup=0.1,
             cutmix=1.0, aa="rand-m6-mstd0.5-inc1", reprob=0.0, amp=True)),
    "efficientnet_b2_ra": (
        f"{TRAINING_SCRIPT}, 'EfficientNet-B2 with RandAugment' (2 GPUs)", "resnet", 2, 5,
        dict(model="efficientnet_b2", batch_size=128, epochs=450, workers=8, drop=0.3, drop_path=0.2,
             model_ema=True, model_ema_decay=0.9999, reprob=0.2, lr=0.016, **EFFICIENTNET)),
    "efficientnet_b0_ra": (
        f"{TRAINING_SCRIPT}, 'EfficientNet-B0 with RandAugment' (2 GPUs)", "resnet", 2, 5,
        dict(model="efficientnet_b0", batch_size=384, epochs=450, workers=8, drop=0.2, drop_path=0.2,
             model_ema=True, model_ema_decay=0.9999, reprob=0.2, lr=0.048, **EFFICIENTNET)),
    "efficientnet_es_ra": (
        f"{TRAINING_SCRIPT}, 'EfficientNet-ES (EdgeTPU-Small) with RandAugment' (8 GPUs, no EMA)", "resnet", 8, 5,
        dict(model="efficientnet_es", batch_size=128, epochs=450, workers=8, drop=0.2, drop_path=0.2, reprob=0.2,
             lr=0.064, **EFFICIENTNET)),
    "mixnet_xl_ra": (
        f"{TRAINING_SCRIPT}, 'MixNet-XL with RandAugment' (2 GPUs)", "resnet", 2, 5,
        dict(model="mixnet_xl", batch_size=128, epochs=450, workers=8, drop=0.3, drop_path=0.2, model_ema=True,
             model_ema_decay=0.9999, reprob=0.3, lr=0.016, dist_bn="reduce", **{**EFFICIENTNET, "decay_rate": 0.969})),
    "mobilenetv3_large_100": (
        f"{TRAINING_SCRIPT}, 'MobileNetV3-Large-100' (2 GPUs; its lr noise starts at epoch 252, after the "
        "epochs run here: timm draws it from torch's generator)", "resnet", 2, 5,
        dict(model="mobilenetv3_large_100", batch_size=512, epochs=600, workers=7, drop=0.2, drop_path=0.2,
             model_ema=True, model_ema_decay=0.9999, reprob=0.2, lr=0.064, lr_noise=[0.42, 0.9],
             **{**EFFICIENTNET, "decay_rate": 0.973})),
}
HEADS = {"resnet": "fc", "vit": "head"}
EPOCHS = 3


def runnable():
    """The recipes whose optimizer purelr twins now: all of ``RECIPES``, and those of
    ``NEEDS_TIMM_OPTIMIZERS`` whose name has been added to ``SUPPORTED`` since."""
    waiting = {name: recipe for name, recipe in NEEDS_TIMM_OPTIMIZERS.items()
               if recipe[4]["opt"].lower().split("_")[-1] in timm_recipe.SUPPORTED}
    return {**RECIPES, **waiting}


def test_at_least_fifteen_published_recipes():
    assert len(RECIPES) + len(NEEDS_TIMM_OPTIMIZERS) >= 15 and len(RECIPES) >= 15
    for name, (source, twin, world, epoch_len, args) in {**RECIPES, **NEEDS_TIMM_OPTIMIZERS}.items():
        assert source and twin in HEADS and world >= 1 and epoch_len >= 1, name
        timm_recipe.train_args(args)  # every key is a train.py argument (or purelr's model keys)
        assert timm_recipe.ignored_keys(args), name  # whole argument sets: data / augmentation keys too


@pytest.mark.parametrize("name", sorted(runnable()))
def test_recipe_matches_train_py(name):
    """3 epochs of the recipe, train.py's loop against ``purelr.build``: params, EMA params and the
    lrs of every update, x64 <= 1e-10."""
    _, twin, world, epoch_len, args = runnable()[name]
    expected = run_train_py(args, twin, epoch_len=epoch_len, epochs=EPOCHS, world_size=world)
    actual = run_purelr(args, twin, epoch_len=epoch_len, epochs=EPOCHS, world_size=world, head=HEADS[twin])
    assert_same_run(expected, actual)
