# MMDetection 2.x RetinaNet R-50-FPN 1x: the 1x schedule with lr 0.01 (8 GPUs x 2 images).
_base_ = "./_base_/schedule_1x.py"
optimizer = dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0001)
