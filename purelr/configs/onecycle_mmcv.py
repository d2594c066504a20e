# A OneCycle recipe (MMCV OneCycleLrUpdaterHook with its cyclic momentum), AdamW, iteration-based.
optimizer = dict(type="AdamW", lr=0.0003, betas=(0.95, 0.99), weight_decay=0.01)
optimizer_config = dict(grad_clip=dict(max_norm=10, norm_type=2))
lr_config = dict(
    policy="OneCycle",
    max_lr=0.003,
    pct_start=0.3,
    anneal_strategy="cos",
    div_factor=10.0,
    final_div_factor=1e4,
    three_phase=False,
)
momentum_config = dict(policy="OneCycle", base_momentum=0.85, max_momentum=0.95, pct_start=0.3)
runner = dict(type="IterBasedRunner", max_iters=20000)
