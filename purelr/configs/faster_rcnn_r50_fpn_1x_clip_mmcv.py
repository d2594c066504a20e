# A Faster R-CNN-style 1x schedule with gradient clipping and parameter-wise settings: no weight
# decay on norm layers, twice the lr and no decay on biases, a tenth of the lr on the backbone.
_base_ = "./_base_/schedule_1x.py"
optimizer = dict(
    type="SGD",
    lr=0.02,
    momentum=0.9,
    weight_decay=0.0001,
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_lr_mult=2.0, bias_decay_mult=0.0, custom_keys={"backbone": dict(lr_mult=0.1)}
    ),
)
optimizer_config = dict(_delete_=True, grad_clip=dict(max_norm=35, norm_type=2))
