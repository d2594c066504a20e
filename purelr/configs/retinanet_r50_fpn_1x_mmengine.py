# MMDetection 3.x RetinaNet R-50-FPN 1x. MMEngine's LinearLR with end=500 reaches the full lr at
# iteration 499, one iteration before MMCV's warmup does; the curves agree from iteration 500 on.
_base_ = "./_base_/schedule_1x_mmengine.py"
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001))
