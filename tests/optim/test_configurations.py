"""The parity sweep's size: at least 300 torch-vs-purelr configurations a run (each in x64 and f32)."""

from tests.optim import (
    test_adadelta,
    test_adagrad,
    test_adam,
    test_adamax,
    test_asgd,
    test_nadam,
    test_radam,
    test_rmsprop,
    test_rprop,
    test_sgd,
)

COUNTS = {
    "sgd": len(test_sgd.CONFIGS),
    "adam": len(test_adam.CONFIGS),
    "adamw": len(test_adam.ADAMW_CONFIGS),
    "adamax": len(test_adamax.CONFIGS),
    "nadam": len(test_nadam.CONFIGS),
    "radam": len(test_radam.CONFIGS),
    "adagrad": len(test_adagrad.CONFIGS),
    "adadelta": len(test_adadelta.CONFIGS),
    "rmsprop": len(test_rmsprop.CONFIGS),
    "rprop": len(test_rprop.CONFIGS),
    "asgd": len(test_asgd.CONFIGS),
}


def test_at_least_300_configurations():
    assert sum(COUNTS.values()) >= 300, COUNTS


def test_a_schedule_on_lr_in_part_of_every_family():
    for module in (
        test_sgd,
        test_adam,
        test_adamax,
        test_nadam,
        test_radam,
        test_adagrad,
        test_adadelta,
        test_rmsprop,
        test_rprop,
        test_asgd,
    ):
        scheduled = [config["schedule"] for config in module.CONFIGS]
        assert any(scheduled) and not all(scheduled), module.__name__
