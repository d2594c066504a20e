"""examples/sharded.py: the train step over 8 host devices (``XLA_FLAGS`` set before jax loads,
so in a fresh process), data-parallel and fully sharded, against one device, for both recipes
(300 float32 updates).

Bound: the sharded step computes the same sums (the loss over the batch, BatchNorm's batch
statistics, the clipping norm) in another order, a float32 rounding of ~6e-8 relative per sum,
carried along 300 updates; measured ~1e-6 relative on the losses and the final params.
``SHARDED_RTOL`` (2e-5) is that with a ten-fold margin; a wrong sharding of the state or of the
batch statistics (per-device BatchNorm) would differ by far more. Every optimizer state leaf laid
out like a param must carry that param's sharding (the run raises otherwise), and the fully
sharded run must split params over the devices.
Measured for the AdamW recipe: losses ~1.6e-7, params ~3.3e-7.
"""

import pytest

from tests import last_json_line

SHARDED_RTOL = 2e-5
STATE_LEAVES = {"retinanet_1x": 7, "timm_adamw": 14}  # SGD momentum; AdamW's two moments, 7 params


@pytest.mark.parametrize("recipe", sorted(STATE_LEAVES))
def test_sharded_runs_match_one_device(recipe):
    result = last_json_line(["examples.sharded", "--json", "--recipe", recipe], devices=8, timeout=300)
    assert result["devices"] == 8
    for layout in ("data_parallel", "fully_sharded"):
        found = result[layout]
        assert found["losses"] <= SHARDED_RTOL and found["params"] <= SHARDED_RTOL, (recipe, layout, found)
        assert found["state_leaves"] == STATE_LEAVES[recipe], (recipe, layout, found)
    assert result["fully_sharded"]["split_params"] >= 5 and result["data_parallel"]["split_params"] == 0
    print(recipe, result)
