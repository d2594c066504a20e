"""load_config (_base_, _delete_, .py/.json/.yaml), the registry with custom_imports, bad configs."""

import importlib.util
import json
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import purelr
from purelr.recipes.config import ConfigError, load_config

PARAMS = {"conv": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_base_files_merge_as_mmcv_merges(tmp_path):
    write(
        tmp_path / "_base_/schedule.py",
        """
        optimizer = dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4, paramwise_cfg=dict(norm_decay_mult=0.0))
        lr_config = dict(policy='step', step=[8, 11])
        runner = dict(type='EpochBasedRunner', max_epochs=12)
    """,
    )
    write(tmp_path / "_base_/clip.json", json.dumps({"optimizer_config": {"grad_clip": {"max_norm": 35}}}))
    config = write(
        tmp_path / "model.py",
        """
        import math
        _base_ = ['./_base_/schedule.py', './_base_/clip.json']
        optimizer = dict(lr=0.01, paramwise_cfg=dict(_delete_=True, bias_lr_mult=2.0))
        lr_config = dict(step=[16, 22])
        runner = dict(max_epochs=24)
        helper = math.pi
    """,
    )
    cfg = load_config(config)
    assert cfg["optimizer"] == dict(
        type="SGD", lr=0.01, momentum=0.9, weight_decay=1e-4, paramwise_cfg=dict(bias_lr_mult=2.0)
    )
    assert cfg["lr_config"] == dict(policy="step", step=[16, 22])
    assert cfg["runner"] == dict(type="EpochBasedRunner", max_epochs=24)
    assert cfg["optimizer_config"] == {"grad_clip": {"max_norm": 35}}
    assert "math" not in cfg and cfg["helper"] == pytest.approx(3.14159, rel=1e-5)


def test_yaml_config_with_a_single_base(tmp_path):
    write(tmp_path / "base.yaml", "optim_wrapper:\n  optimizer: {type: AdamW, lr: 0.001, weight_decay: 0.05}\n")
    config = write(tmp_path / "run.yaml", "_base_: base.yaml\noptim_wrapper:\n  clip_grad: {max_norm: 1.0}\n")
    cfg = load_config(config)
    assert cfg["optim_wrapper"] == {
        "optimizer": {"type": "AdamW", "lr": 0.001, "weight_decay": 0.05},
        "clip_grad": {"max_norm": 1.0},
    }
    assert isinstance(purelr.build(config, PARAMS), optax.GradientTransformation)


@pytest.mark.parametrize(
    "files,target,message",
    [
        ({}, "missing.py", "config file not found"),
        ({"bad.py": "optimizer = dict(type='SGD'\n"}, "bad.py", r"bad.py: does not parse"),
        ({"bad.json": "{'a': 1}"}, "bad.json", r"bad.json: does not parse"),
        ({"bad.toml": "a = 1"}, "bad.toml", r"must end in one of"),
        ({"a.py": "_base_ = './b.py'\n", "b.py": "_base_ = './a.py'\n"}, "a.py", r"_base_ cycle: a.py -> b.py -> a.py"),
        ({"a.py": "_base_ = './nowhere.py'\n"}, "a.py", r"_base_ file './nowhere.py' not found"),
        (
            {"a.py": "_base_ = ['./b.py', './c.py']\n", "b.py": "x = 1\n", "c.py": "x = 2\n"},
            "a.py",
            r"keys \['x'\] are defined by more than one _base_ file",
        ),
        ({"a.yaml": "- 1\n- 2\n"}, "a.yaml", "must hold a mapping"),
    ],
)
def test_config_file_errors_name_the_file(tmp_path, files, target, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / target)


def test_custom_optimizer_registered_through_custom_imports():
    sys.modules.pop("tests.recipes.custom_parts", None)
    cfg = dict(
        custom_imports=dict(imports=["tests.recipes.custom_parts"], allow_failed_imports=False),
        optimizer=dict(type="HalfSGD", lr=0.2, momentum=0.9),
        lr_config=dict(policy="step", step=[1]),
        runner=dict(max_epochs=2),
    )
    transform = purelr.build(cfg, PARAMS, epoch_len=3)
    reference = purelr.build(dict(cfg, optimizer=dict(type="SGD", lr=0.1, momentum=0.9)), PARAMS, epoch_len=3)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    for tx in (transform, reference):
        state, params = tx.init(PARAMS), PARAMS
        for _ in range(5):
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        tx.result = params
    jax.tree.map(np.testing.assert_allclose, transform.result, reference.result)


def test_custom_imports_failures():
    with pytest.raises(ImportError, match="custom_imports.imports: cannot import 'no_such_module_xyz'"):
        purelr.build(
            dict(custom_imports=dict(imports=["no_such_module_xyz"]), optimizer=dict(type="SGD", lr=0.1)), PARAMS
        )
    with pytest.warns(UserWarning, match="no_such_module_xyz"):
        purelr.build(
            dict(
                custom_imports=dict(imports=["no_such_module_xyz"], allow_failed_imports=True),
                optimizer=dict(type="SGD", lr=0.1),
            ),
            PARAMS,
        )


def test_an_uninstalled_model_zoo_in_custom_imports_is_skipped_and_named_when_a_part_is_missing():
    """MMSegmentation's poolformer configs import ``mmcls.models`` (a backbone): a JAX user without
    mmcls builds the optimizer; a part the zoo would register is reported with the import."""
    from purelr.recipes import registry

    imports = dict(imports=["mmcls.models"], allow_failed_imports=False)
    assert importlib.util.find_spec("mmcls") is None
    purelr.build(dict(custom_imports=imports, optimizer=dict(type="SGD", lr=0.1)), PARAMS)
    assert "mmcls.models" in registry.NOT_INSTALLED
    with pytest.raises(
        ValueError,
        match=r"unknown optimizer type 'ZooSGD'.*custom_imports named \['mmcls.models'\], "
        r"not installed: a part they register needs a purelr twin",
    ):
        purelr.build(dict(custom_imports=imports, optimizer=dict(type="ZooSGD", lr=0.1)), PARAMS)


def test_registering_a_taken_name_needs_force():
    purelr.register_optimizer("TwiceSGD")(lambda lr: optax.sgd(lr))
    with pytest.raises(KeyError, match="'TwiceSGD' is already registered"):
        purelr.register_optimizer("TwiceSGD")(lambda lr: optax.sgd(2 * lr))
    purelr.register_optimizer("TwiceSGD", force=True)(lambda lr: optax.sgd(2 * lr))


@pytest.mark.parametrize(
    "cfg,kwargs,error,message",
    [
        (dict(runner=dict(max_epochs=1)), {}, ValueError, r"needs 'optimizer' \(MMDetection 2.x\), 'optim_wrapper'"),
        (
            dict(optimizer=dict(type="SDG", lr=0.1)),
            {},
            ValueError,
            r"optimizer.type: unknown optimizer type 'SDG'; did you mean \['SGD'",
        ),
        (dict(optimizer=dict(type="SGD")), {}, ValueError, "optimizer.lr is missing"),
        (
            dict(optimizer=dict(type="SGD", lr=0.1, constructor="MyConstructor")),
            {},
            ValueError,
            "constructor: unknown constructor type 'MyConstructor'",
        ),
        (
            dict(optimizer=dict(type="SGD", lr=0.1), lr_config=dict(policy="Stepp", step=[1])),
            {"epoch_len": 5},
            ValueError,
            "Stepp",
        ),
        (
            dict(
                optimizer=dict(type="SGD", lr=0.1),
                lr_config=dict(policy="step", step=[8, 11]),
                runner=dict(max_epochs=12),
            ),
            {},
            ValueError,
            "epoch_len",
        ),
        (
            dict(
                optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
                param_scheduler=[dict(type="MultiStepLR", milestones=[8, 11], by_epoch=True)],
                train_cfg=dict(max_epochs=12),
            ),
            {},
            ValueError,
            "epoch_len",
        ),
        (
            dict(
                optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
                param_scheduler=[dict(type="CosineLRR", T_max=3)],
            ),
            {"epoch_len": 5},
            ValueError,
            "CosineLRR",
        ),
        (
            dict(optim_wrapper=dict(type="AmpOptimWrapper", loss_scale="static", optimizer=dict(type="SGD", lr=0.1))),
            {},
            ValueError,
            r"optim_wrapper.loss_scale must be one of \['dynamic'\], got 'static'",
        ),
        (
            dict(optimizer=dict(type="SGD", lr=0.1), optimizer_config=dict(grad_clip=dict(norm_type=2))),
            {},
            ValueError,
            "optimizer_config.grad_clip.max_norm is missing",
        ),
        (
            dict(optimizer=dict(type="SGD", lr=0.1), optimizer_config=dict(type="Fp16OptimizerHok")),
            {},
            ValueError,
            "optimizer_config.type must be one of",
        ),
    ],
)
def test_bad_configs_name_key_and_value(cfg, kwargs, error, message):
    with pytest.raises(error, match=message):
        purelr.build(cfg, PARAMS, **kwargs)
