"""MMEngine's config language, one feature a test, each read by purelr and by MMEngine 0.10.7's own
``Config.fromfile`` from the same hand-written files: the dicts are equal (imported names compare
as the dotted strings MMEngine's ``to_dict`` gives them)."""

import textwrap

import pytest
from mmengine.config import Config

from purelr.recipes.config import ConfigError, load_config
from purelr.recipes.pyconfig import Imported

SCHEDULE = """
    optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
    param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
                       dict(type='MultiStepLR', by_epoch=True, begin=0, end=12, milestones=[8, 11], gamma=0.1)]
    train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    backend_args = None
    train_pipeline = [dict(type='LoadImageFromFile', backend_args=backend_args), dict(type='Resize', scale=(1333, 800))]
    model = dict(backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='BN', requires_grad=True)))
"""


def write(directory, files: dict):
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return directory / list(files)[-1]


def as_mmengine(value):
    if isinstance(value, Imported):
        return value.name
    if isinstance(value, dict):
        return {key: as_mmengine(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(as_mmengine(item) for item in value)
    return value


def assert_reads_as_mmengine(path, **options):
    ours = as_mmengine(load_config(path, **options))
    theirs = Config.fromfile(str(path)).to_dict()
    assert ours == theirs
    return ours


def test_base_variable_substitution(tmp_path):
    cfg = assert_reads_as_mmengine(
        write(
            tmp_path,
            {
                "_base_/schedule.py": SCHEDULE,
                "run.py": """
        _base_ = './_base_/schedule.py'
        train_dataloader = dict(dataset=dict(pipeline={{_base_.train_pipeline}}), batch_size=2)
        optim_wrapper = dict(optimizer=dict(momentum={{_base_.optim_wrapper.optimizer.lr}}))
        work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
    """,
            },
        )
    )
    assert cfg["train_dataloader"]["dataset"]["pipeline"][1] == dict(type="Resize", scale=(1333, 800))
    assert cfg["optim_wrapper"]["optimizer"]["momentum"] == 0.02 and cfg["work_dir"] == "./work_dirs/run"


def test_base_variable_substitution_in_yaml(tmp_path):
    assert_reads_as_mmengine(
        write(
            tmp_path,
            {
                "base.py": SCHEDULE,
                "run.yaml": """
        _base_: base.py
        train_cfg: {{_base_.train_cfg}}
        optim_wrapper: {clip_grad: {max_norm: 35}}
    """,
            },
        )
    )


def test_bare_base_references(tmp_path):
    cfg = assert_reads_as_mmengine(
        write(
            tmp_path,
            {
                "_base_/schedule.py": SCHEDULE,
                "run.py": """
        _base_ = ['./_base_/schedule.py']
        model = dict(backbone=dict(depth=_base_.model.backbone.depth * 2, norm_cfg=dict(type='SyncBN')))
        train_pipeline = _base_.train_pipeline + [dict(type='PackDetInputs')]
        max_epochs = _base_.train_cfg.max_epochs * 3
        train_cfg = dict(max_epochs=max_epochs)
        param_scheduler = [_base_.param_scheduler[0], dict(type='CosineAnnealingLR', T_max=max_epochs)]
    """,
            },
        )
    )
    assert cfg["train_cfg"]["max_epochs"] == 36 and cfg["model"]["backbone"]["depth"] == 100


def test_delete_replaces_the_base_dict(tmp_path):
    cfg = assert_reads_as_mmengine(
        write(
            tmp_path,
            {
                "base.py": SCHEDULE,
                "run.py": """
        _base_ = 'base.py'
        optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))
        model = dict(backbone=dict(norm_cfg=dict(_delete_=True, type='GN', num_groups=32)))
        extra = dict(_delete_=True, a=1)
    """,
            },
        )
    )
    assert cfg["optim_wrapper"] == dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4))
    assert cfg["extra"] == dict(_delete_=True, a=1)  # MMEngine keeps it where the base has no such key


def test_environment_and_file_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("PURELR_TEST_EPOCHS", "7")
    cfg = assert_reads_as_mmengine(
        write(
            tmp_path,
            {
                "run.py": """
        train_cfg = dict(max_epochs={{'$PURELR_TEST_EPOCHS:12'}}, val_interval={{'$PURELR_TEST_UNSET:2'}})
        name = '{{ fileBasename }}{{ fileExtname }}'
    """
            },
        )
    )
    assert cfg["train_cfg"] == dict(max_epochs=7, val_interval=2) and cfg["name"] == "run.py.py"


def test_lazy_config_with_read_base_and_imported_types(tmp_path):
    cfg = assert_reads_as_mmengine(
        write(
            tmp_path,
            {
                "_base_/schedule.py": """
            from torch.optim import SGD
            from mmengine.optim.scheduler import LinearLR
            optim_wrapper = dict(optimizer=dict(type=SGD, lr=0.02, momentum=0.9), clip_grad=None)
            param_scheduler = [dict(type=LinearLR, start_factor=0.001, by_epoch=False, begin=0, end=500)]
            train_cfg = dict(max_epochs=12)
        """,
                "_base_/runtime.py": "default_scope = None\nlog_level = 'INFO'\n",
                "models/run.py": """
            from mmengine.config import read_base
            with read_base():
                from .._base_.schedule import *
                from .._base_.runtime import log_level
            from mmengine.optim.scheduler import MultiStepLR
            from torch.optim import AdamW
            optim_wrapper.update(dict(optimizer=dict(type=AdamW, lr=0.01)))
            param_scheduler.append(dict(type=MultiStepLR, milestones=[8, 11], by_epoch=True))
            train_cfg.max_epochs = 24
        """,
            },
        )
    )
    assert cfg["optim_wrapper"]["optimizer"] == dict(type="torch.optim.AdamW", lr=0.01, momentum=0.9)
    assert "SGD" not in cfg and "log_level" in cfg and "default_scope" not in cfg
    assert load_config(tmp_path / "models/run.py")["param_scheduler"][1]["type"] == Imported(
        "mmengine.optim.scheduler.MultiStepLR"
    )


def test_scoped_base_resolves_against_the_named_root(tmp_path):
    write(tmp_path / "mmdet_configs", {"_base_/schedules/schedule_1x.py": SCHEDULE})
    run = write(
        tmp_path / "mine",
        {
            "run.py": """
        _base_ = 'mmdet::_base_/schedules/schedule_1x.py'
        train_cfg = dict(max_epochs=24)
    """
        },
    )
    cfg = load_config(run, scopes={"mmdet": str(tmp_path / "mmdet_configs")})
    local = load_config(
        write(
            tmp_path / "mmdet_configs",
            {
                "run.py": """
        _base_ = '_base_/schedules/schedule_1x.py'
        train_cfg = dict(max_epochs=24)
    """
            },
        )
    )
    assert cfg == local
    with pytest.raises(ConfigError, match=r"names the scope 'mmdet': give its config root.*--scope mmdet=PATH"):
        load_config(run)


def test_trust_runs_what_the_subset_refuses_as_mmengine_does(tmp_path):
    path = write(
        tmp_path,
        {
            "run.py": """
        def scaled(lr, factor=2):
            return lr * factor
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=scaled(0.01), momentum=0.9))
        name = '.'.join(['a', 'b']).__len__()
        milestones = list(map(lambda epoch: epoch * 2, [4, 6]))
    """
        },
    )
    with pytest.raises(
        ConfigError, match=r"run.py, line 2: calling scaled, defined here by the config, is not evaluated.*trust=True"
    ):
        load_config(path)
    assert as_mmengine(load_config(path, trust=True)) == Config.fromfile(str(path)).to_dict()


@pytest.mark.parametrize(
    "files,message",
    [
        (
            {"base.py": "a = 1\n", "run.py": "_base_ = 'base.py'\nb = {{_base_.missing}}\n"},
            r"run.py: \{\{_base_.missing\}\}: the bases define no 'missing' there",
        ),
        (
            {"base.py": "a = dict(b=1)\n", "run.py": "_base_ = 'base.py'\nb = {{_base_.a.c}}\n"},
            r"\{\{_base_.a.c\}\}: the bases define no 'c' there",
        ),
        (
            {"base.py": "a = 1\n", "run.py": "_base_ = 'base.py'\nb = _base_.missing\n"},
            r"run.py, line 2: _base_ has no key 'missing' \(it has \['a'\]\)",
        ),
        (
            {"base.py": "a = 1\n", "run.py": "_base_ = 'base.py'\na = dict(b=1)\n"},
            r"run.py: a is a dict here but a int in its base; set _delete_=True to replace it",
        ),
        ({"run.py": "x = {{'$PURELR_SURELY_UNSET:'}}\n"}, r"environment variable 'PURELR_SURELY_UNSET' is not set"),
        (
            {"run.py": "from mmengine.config import read_base\nwith read_base():\n    from .nowhere import *\n"},
            r"run.py, line 3: read_base\(\) imports 'nowhere', but .*nowhere.py is not a file",
        ),
        (
            {
                "base.py": "a = 1\n",
                "run.py": "from mmengine.config import read_base\nwith read_base():\n    from .base import b\n",
            },
            r"run.py, line 3: 'base' defines no \['b'\]",
        ),
        (
            {"run.py": "from mmengine.config import read_base\nwith read_base():\n    from mmdet.configs.x import *\n"},
            r"read_base\(\) imports 'mmdet.configs.x': give the config root of 'mmdet'",
        ),
        ({"run.py": "_base_ = 'other::x.py'\n"}, r"names the scope 'other'"),
        ({"run.py": "x = 1 / 0\n"}, r"run.py: does not load: ZeroDivisionError"),
        ({"run.py": "_base_ = 1\n"}, r"_base_ must be a file name or a list of them, got 1"),
    ],
)
def test_loader_errors_name_the_file_the_key_and_the_value(tmp_path, files, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, files))


def test_a_lazy_config_builds_the_curve_of_its_string_typed_twin(tmp_path):
    """``type=SGD`` / ``type=LinearLR`` imported (never imported for real) build what the names do."""
    import jax.numpy as jnp
    import numpy as np

    from purelr.cli.curves import config_curves

    lazy = write(
        tmp_path,
        {
            "lazy.py": """
        from mmengine.optim.scheduler import LinearLR, MultiStepLR
        from torch.optim.sgd import SGD
        optim_wrapper = dict(optimizer=dict(type=SGD, lr=0.02, momentum=0.9, weight_decay=1e-4))
        param_scheduler = [dict(type=LinearLR, start_factor=0.001, by_epoch=False, begin=0, end=50),
                           dict(type=MultiStepLR, by_epoch=True, begin=0, end=12, milestones=[8, 11])]
        train_cfg = dict(max_epochs=12)
    """
        },
    )
    named = write(
        tmp_path,
        {
            "named.py": """
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4))
        param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
                           dict(type='MultiStepLR', by_epoch=True, begin=0, end=12, milestones=[8, 11])]
        train_cfg = dict(max_epochs=12)
    """
        },
    )
    params = {"w": jnp.ones(3)}
    ours, theirs = (config_curves(path, epoch_len=20, params=params) for path in (lazy, named))
    assert ours.values.keys() == theirs.values.keys()
    for key in ours.values:
        np.testing.assert_array_equal(ours.values[key], theirs.values[key])


@pytest.mark.parametrize("world_size,batch_size,base_batch_size", [(8, 2, 16), (4, 2, 16), (1, 3, 7), (16, 2, 16)])
def test_auto_scale_lr_scales_as_mmengine_runner(world_size, batch_size, base_batch_size):
    """MMEngine 0.10.7's own ``Runner.scale_lr`` on an OptimWrapper (the runner's other state is
    not read by it) against the lr ``purelr.build`` reads; ``enable=False`` scales nothing."""
    import logging
    import types

    import torch
    from mmengine.optim import OptimWrapper
    from mmengine.runner import Runner

    from purelr.recipes.build import read_recipe

    cfg = dict(
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.02, momentum=0.9)),
        train_cfg=dict(max_epochs=12),
        train_dataloader=dict(batch_size=batch_size),
        auto_scale_lr=dict(enable=True, base_batch_size=base_batch_size),
    )
    wrapper = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02, momentum=0.9))
    runner = types.SimpleNamespace(
        world_size=world_size,
        _train_dataloader=cfg["train_dataloader"],
        param_schedulers=None,
        logger=logging.getLogger("test"),
    )
    Runner.scale_lr(runner, wrapper, cfg["auto_scale_lr"])
    assert read_recipe(cfg, world_size=world_size).hyperparams["lr"] == wrapper.optimizer.param_groups[0]["lr"]
    disabled = dict(cfg, auto_scale_lr=dict(enable=False, base_batch_size=base_batch_size))
    assert read_recipe(disabled).hyperparams["lr"] == 0.02


@pytest.mark.parametrize(
    "samples,world_size,base,expected",
    [
        (2, 8, 16, 0.02),  # equal sizes: MMDetection 2.x leaves the lr as it is
        (4, 8, 16, (32 / 16) * 0.02),
        (2, 1, 16, (2 / 16) * 0.02),
        (3, 3, 7, (9 / 7) * 0.02),
    ],
)
def test_auto_scale_lr_scales_as_mmdetection_2(samples, world_size, base, expected):
    """MMDetection 2.28.2's ``mmdet.apis.train.auto_scale_lr`` (not importable here: it needs mmdet's
    models): ``cfg.optimizer.lr = (num_gpus * data.train_dataloader.samples_per_gpu / base) * lr``."""
    from purelr.recipes.build import read_recipe

    cfg = dict(
        optimizer=dict(type="SGD", lr=0.02, momentum=0.9),
        runner=dict(max_epochs=12),
        data=dict(samples_per_gpu=99, train_dataloader=dict(samples_per_gpu=samples)),
        auto_scale_lr=dict(enable=True, base_batch_size=base),
    )
    assert read_recipe(cfg, world_size=world_size).hyperparams["lr"] == expected


def test_auto_scale_lr_needs_the_world_size():
    from purelr.recipes.build import read_recipe

    cfg = dict(
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.02)),
        train_cfg=dict(max_epochs=1),
        train_dataloader=dict(batch_size=2),
        auto_scale_lr=dict(enable=True, base_batch_size=16),
    )
    with pytest.raises(ValueError, match=r"auto_scale_lr.enable=True .* give the number of processes.*--world-size N"):
        read_recipe(cfg)
    with pytest.raises(TypeError, match=r"train_dataloader.batch_size must be an integer, got None"):
        read_recipe(dict(cfg, train_dataloader={}), world_size=8)
    with pytest.raises(TypeError, match=r"auto_scale_lr.base_batch_size must be a number, got None"):
        read_recipe(dict(cfg, auto_scale_lr=dict(enable=True)), world_size=8)


@pytest.mark.parametrize(
    "section,loop,message",
    [
        (
            "train_cfg",
            dict(type="EpochBasedTrainLoop", by_epoch=True, max_epochs=2),
            r"train_cfg: only one of type and by_epoch",
        ),
        (
            "train_cfg",
            dict(by_epoch=True, max_iters=2),
            r"train_cfg: by_epoch=True counts its length in max_epochs, got max_iters=2",
        ),
        (
            "train_cfg",
            dict(type="IterBasedTrainLoop", max_epochs=2),
            r"type='IterBasedTrainLoop' counts its length in max_iters",
        ),
        ("train_cfg", dict(by_epoch="yes", max_epochs=2), r"train_cfg.by_epoch must be True or False, got 'yes'"),
        (
            "runner",
            dict(type="IterBasedRunner", max_epochs=2),
            r"runner: type='IterBasedRunner' counts its length in max_iters",
        ),
    ],
)
def test_conflicting_run_settings_name_the_keys(section, loop, message):
    from purelr.recipes.build import read_recipe

    optimizer = dict(type="SGD", lr=0.1)
    cfg = {"optim_wrapper": dict(optimizer=optimizer)} if section == "train_cfg" else {"optimizer": optimizer}
    with pytest.raises((ValueError, TypeError), match=message):
        read_recipe({**cfg, section: loop}, epoch_len=3)


@pytest.mark.parametrize(
    "loop",
    [
        dict(by_epoch=True, max_epochs=4),
        dict(type="EpochBasedTrainLoop", max_epochs=4),
        dict(by_epoch=False, max_iters=12),
        dict(type="IterBasedTrainLoop", max_iters=12),
    ],
)
def test_train_loop_forms_give_the_run_length(loop):
    from purelr.recipes.build import read_recipe

    recipe = read_recipe(dict(optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)), train_cfg=loop), epoch_len=3)
    assert recipe.max_iters == 12


def test_an_imported_name_where_a_value_is_needed_names_the_key_and_the_import(tmp_path):
    import jax.numpy as jnp

    import purelr

    path = write(
        tmp_path,
        {
            "run.py": """
        from mmengine.config import read_base
        from my_project.settings import BASE_LR
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=BASE_LR, momentum=0.9))
        train_cfg = dict(by_epoch=True, max_epochs=2)
    """
        },
    )
    with pytest.raises(
        (TypeError, ValueError),
        match=r"optim_wrapper.optimizer.lr must be a number, got <imported my_project.settings.BASE_LR>",
    ):
        purelr.build(path, {"w": jnp.zeros(2)}, epoch_len=3)
