"""Parameter groups of the optimizers with global sums (purelr.optim.global_groups): one
transformation over the whole tree, the groups' overrides per leaf, clear errors."""

import jax.numpy as jnp
import pytest

from purelr import optim

PARAMS = {"a": jnp.ones(3), "b": jnp.ones(2)}
LABELS = {"a": "x", "b": "y"}


@pytest.mark.parametrize(
    "make, kwargs, message",
    [
        (optim.prodigy, dict(groups={"x": {}, "y": {}}), "give groups and param_labels together"),
        (optim.prodigy, dict(groups={"x": {"lr": 0.5}, "y": {}}, param_labels=LABELS), "a group's lr may only be 0"),
        (optim.prodigy, dict(groups={"x": {"momentum": 0.5}, "y": {}}, param_labels=LABELS), "unknown key 'momentum'"),
        (optim.dadapt_adagrad, dict(groups={"x": {"lr": 0.0}, "y": {}}, param_labels=LABELS), "unknown key 'lr'"),
        (optim.dadapt_lion, dict(groups={"x": {"eps": 1e-8}, "y": {}}, param_labels=LABELS), "unknown key 'eps'"),
        (optim.dadapt_adam, dict(groups={"x": {"eps": -1.0}, "y": {}}, param_labels=LABELS), "groups['x']['eps']"),
        (optim.prodigy, dict(growth_rate=0.0), "Invalid growth_rate: 0.0"),
        (optim.prodigy, dict(slice_p=0), "slice_p"),
    ],
)
def test_rejects_bad_groups(make, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=None) as error:
        make(**kwargs)
    assert message in str(error.value), str(error.value)


def test_unknown_label_is_refused_at_init():
    optimizer = optim.dadapt_adam(groups={"x": {}}, param_labels=LABELS)
    with pytest.raises(ValueError, match="'y', which is not a key of groups"):
        optimizer.init(PARAMS)


def test_groups_are_one_transformation_with_global_sums():
    """Two groups that differ in weight decay only: the same ``d`` for every leaf (one estimate),
    and the group without decay moves as it would with ``weight_decay=0`` everywhere."""
    grads = {"a": jnp.asarray([0.3, -0.2, 0.1]), "b": jnp.asarray([0.5, -0.4])}
    grouped = optim.prodigy(weight_decay=0.1, groups={"x": {}, "y": {"weight_decay": 0.0}}, param_labels=LABELS)
    plain = optim.prodigy(weight_decay=0.0)
    state, plain_state = grouped.init(PARAMS), plain.init(PARAMS)
    for _ in range(3):
        updates, state = grouped.update(grads, state, PARAMS)
        plain_updates, plain_state = plain.update(grads, plain_state, PARAMS)
    assert state.d.shape == () and float(state.d) == float(plain_state.d)  # decoupled decay leaves d alone
    assert jnp.allclose(updates["b"], plain_updates["b"]) and not jnp.allclose(updates["a"], plain_updates["a"])
    assert float(state.hyperparams["groups"]["y"]["weight_decay"]) == 0.0


def test_torch_style_param_groups_build_one_transformation():
    """``purelr.params.groups.param_groups`` gives Prodigy's groups to the one transformation
    (``GLOBAL_SUMS``): the same updates as ``groups=`` / ``param_labels=`` by hand."""
    from purelr.params.groups import param_groups

    grads = {"a": jnp.asarray([0.3, -0.2, 0.1]), "b": jnp.asarray([0.5, -0.4])}
    built = param_groups(
        optim.prodigy, PARAMS, [{"params": "a"}, {"params": "b", "weight_decay": 0.0}], weight_decay=0.1
    )
    direct = optim.prodigy(
        weight_decay=0.1, groups={"group0": {}, "group1": {"weight_decay": 0.0}}, param_labels=LABELS2
    )
    state, direct_state = built.init(PARAMS), direct.init(PARAMS)
    for _ in range(3):
        updates, state = built.update(grads, state, PARAMS)
        direct_updates, direct_state = direct.update(grads, direct_state, PARAMS)
    assert type(state).__name__ == "ProdigyState"
    for name in PARAMS:
        assert jnp.array_equal(updates[name], direct_updates[name])
    with pytest.raises(ValueError, match="frozen, frozen_until and schedules"):
        param_groups(optim.prodigy, PARAMS, [{"params": "a"}, {"params": "b", "frozen": True}])


LABELS2 = {"a": "group0", "b": "group1"}
