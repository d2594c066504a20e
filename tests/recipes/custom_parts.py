"""A user's module registering its own optimizer, as a config's custom_imports names it."""

import purelr
from purelr.optim import sgd


@purelr.register_optimizer("HalfSGD")
def half_sgd(lr, **kwargs):
    """SGD at half the configured lr (a stand-in for a team's own optimizer)."""
    return sgd(lr=(lambda step: 0.5 * lr(step)) if callable(lr) else 0.5 * lr, **kwargs)
