# timm train.py's ResNet recipe: --opt sgd (Nesterov) --lr 0.4 --weight-decay 1e-4 --sched cosine
# --epochs 100 --warmup-epochs 5 --warmup-lr 1e-5 --min-lr 1e-6; no weight decay on biases / norms.
timm = dict(
    opt="sgd",
    lr=0.4,
    momentum=0.9,
    weight_decay=1e-4,
    sched="cosine",
    epochs=100,
    warmup_epochs=5,
    warmup_lr=1e-5,
    min_lr=1e-6,
)
