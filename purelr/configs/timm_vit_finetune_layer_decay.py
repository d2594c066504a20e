# A ViT fine-tune as in timm / BEiT / MAE: AdamW with layer-wise lr decay 0.65, per-update cosine
# after 5 warmup epochs. group_matcher is timm's VisionTransformer.group_matcher (regexes matched
# against flax dotted names): patch embedding and tokens form layer 0, block i layer i + 1, the
# final norm joins the last block, the head comes last.
timm = dict(
    model="vit_base_patch16_224",
    opt="adamw",
    lr=5e-4,
    weight_decay=0.05,
    opt_betas=(0.9, 0.999),
    opt_eps=1e-8,
    layer_decay=0.65,
    group_matcher=dict(
        stem=r"^cls_token|^pos_embed|^patch_embed|^embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))]
    ),
    no_weight_decay_list=["pos_embed", "cls_token"],
    sched="cosine",
    epochs=100,
    warmup_epochs=5,
    warmup_lr=1e-6,
    min_lr=1e-6,
    sched_on_updates=True,
)
