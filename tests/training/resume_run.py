"""The training run of the resume test, shared by the test and the fresh process it starts:
``python -m tests.training.resume_run DIR NAME...`` restores the named optimizers' checkpoints from
``DIR/<name>`` and saves what it read (every leaf, its dtype and the tree structure) as ``DIR/restored.npz``."""

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from purelr import optim
from purelr.training import checkpoint
from tests.optim import torch_reference as ref

STEPS = 12
OPTIMIZERS = dict(
    sgd=lambda: optim.sgd(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    adam=lambda: optim.adam(1e-2, amsgrad=True),
    adamw=lambda: optim.adamw(1e-2),
    adamax=lambda: optim.adamax(),
    nadam=lambda: optim.nadam(decoupled_weight_decay=True, weight_decay=0.1),
    radam=lambda: optim.radam(),
    adagrad=lambda: optim.adagrad(0.1, lr_decay=0.01),
    adadelta=lambda: optim.adadelta(),
    rmsprop=lambda: optim.rmsprop(centered=True, momentum=0.5),
    rprop=lambda: optim.rprop(),
    asgd=lambda: optim.asgd(t0=3),
    adafactor=lambda: optim.adafactor(),
    muon=lambda: optax.multi_transform(  # muon takes matrices only
        {"muon": optim.muon(adjust_lr_fn="match_rms_adamw"), "other": optim.adamw()},
        lambda params: jax.tree.map(lambda p: "muon" if p.ndim == 2 else "other", params),
    ),
    lbfgs=lambda: optim.lbfgs(0.5, max_iter=3, history_size=4, line_search_fn="strong_wolfe"),
    rmsprop_tf=lambda: optim.rmsprop_tf(momentum=0.9, caution=True),
    lamb=lambda: optim.lamb(1e-2, trust_clip=True),
    lamb_grad_clip=lambda: optax.chain(optim.lamb_grad_clip(0.5), optim.lamb(1e-2, max_grad_norm=None)),
    lars=lambda: optim.lars(0.1, momentum=0.9, weight_decay=1e-3),
    lion=lambda: optim.lion(weight_decay=0.1),
    adam_8bit=lambda: optim.adam_8bit(1e-2, block_size=64),
    adamw_8bit=lambda: optim.adamw_8bit(1e-2, block_size=64),
    adam_4bit=lambda: optim.adam_4bit(1e-2, block_size=64),
    adamw_4bit=lambda: optim.adamw_4bit(1e-2, block_size=64),
    adam_fp8=lambda: optim.adam_fp8(1e-2, block_size=64),
    adamw_fp8=lambda: optim.adamw_fp8(1e-2, block_size=64),
    adamw_torchao=lambda: optim.adamw_torchao(1e-2, bf16_stochastic_round=True),
    sgdw=lambda: optim.sgdw(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    nadamw=lambda: optim.nadamw(),
    timm_adafactor=lambda: optim.timm_adafactor(min_dim_size_to_factor=2, betas=(0.9, 0.999)),
    adabelief=lambda: optim.adabelief(1e-2),
    adamp=lambda: optim.adamp(1e-2),
    adan=lambda: optim.adan(1e-2),
    adopt=lambda: optim.adopt(1e-2),
    laprop=lambda: optim.laprop(1e-2),
    madgrad=lambda: optim.madgrad(1e-2),
    mars=lambda: optim.mars(1e-2),
    novograd=lambda: optim.novograd(1e-2),
    sgdp=lambda: optim.sgdp(0.05, momentum=0.9),
    lookahead=lambda: optim.lookahead(optim.adamw(1e-2)),
    fused_adam=lambda: optim.fused_adam(1e-2, weight_decay=0.01),
    fused_lamb=lambda: optim.fused_lamb(1e-2, weight_decay=0.01, bias_correction=False),
    hf_adafactor=lambda: optim.hf_adafactor(),
    mmpretrain_lars=lambda: optim.mmpretrain_lars(0.1, momentum=0.9, weight_decay=1e-3),
    mmpretrain_lamb=lambda: optim.mmpretrain_lamb(1e-2),
    mmpretrain_adan=lambda: optim.mmpretrain_adan(1e-2, max_grad_norm=1.0, no_prox=True, foreach=False),
    soap=lambda: optim.soap(precondition_frequency=3, storage_dtype="float64"),
    adafactor_big_vision=lambda: optim.adafactor_big_vision(1e-2, min_dim_size_to_factor=2, clipping_threshold=1.0),
    kron=lambda: optim.kron(1e-2, preconditioner_update_probability=0.5),  # draws from its state's key
    adahessian=lambda: optim.adahessian(0.05, update_each=2),  # draws from its state's key
    prodigy=lambda: optim.prodigy(weight_decay=0.01, use_bias_correction=True, slice_p=2),
    dadapt_adam=lambda: optim.dadapt_adam(weight_decay=0.01, decouple=True),
    dadapt_sgd=lambda: optim.dadapt_sgd(momentum=0.9),
    dadapt_adagrad=lambda: optim.dadapt_adagrad(momentum=0.5),
    dadapt_adan=lambda: optim.dadapt_adan(),
    dadapt_lion=lambda: optim.dadapt_lion(0.01, weight_decay=0.1),
    adamw_legacy=lambda: optim.adamw_legacy(1e-2, amsgrad=True, caution=True),
    nadam_legacy=lambda: optim.nadam_legacy(weight_decay=1e-3),
    radam_legacy=lambda: optim.radam_legacy(1e-2, weight_decay=1e-3),
    schedule_free_wrapper=lambda: optim.schedule_free_wrapper(optim.adamw(1e-2), weight_decay_at_y=0.01),
    schedule_free_wrapper_reference=lambda: optim.schedule_free_wrapper_reference(optim.sgd(0.05, momentum=0.5), r=1.0),
    timm_muon=lambda: optim.timm_muon(1e-2, algo="adamuon", nesterov=True),
    single_device_muon=lambda: optax.multi_transform(  # matrices only
        {"muon": optim.single_device_muon(weight_decay=0.1), "other": optim.adamw()},
        lambda params: jax.tree.map(lambda p: "muon" if p.ndim == 2 else "other", params),
    ),
    muon_with_aux_adam=lambda: optim.muon_with_aux_adam(lambda path, p: p.ndim == 2, adam_lr=1e-2),
    sgd_schedule_free=lambda: optim.sgd_schedule_free(0.05, warmup_steps=5, weight_decay=1e-3),
    adamw_schedule_free=lambda: optim.adamw_schedule_free(1e-2, warmup_steps=5, r=1.0),
    adamw_schedule_free_paper=lambda: optim.adamw_schedule_free_paper(1e-2, warmup_steps=3, weight_decay=0.01),
    radam_schedule_free=lambda: optim.radam_schedule_free(1e-2, silent_sgd_phase=False),
    sgd_schedule_free_reference=lambda: optim.sgd_schedule_free_reference(0.05, weight_decay=1e-3),
    adamw_schedule_free_reference=lambda: optim.adamw_schedule_free_reference(1e-2, weight_decay=0.1, decay_at_z=True),
    sgd_schedule_free_closure=lambda: optim.sgd_schedule_free_closure(0.05),
    adamw_schedule_free_closure=lambda: optim.adamw_schedule_free_closure(1e-2, weight_decay=0.01),
    radam_schedule_free_closure=lambda: optim.radam_schedule_free_closure(1e-2),
    psgd_kron=lambda: optim.psgd_kron(1e-2, preconditioner_update_probability=0.5),  # draws from its state's key
)


# The default test's sample: a state of each kind (plain buffers, a multi_transform, LBFGS's
# history, low-bit blocks, bfloat16 with stochastic rounding, a PRNG key, global scalars,
# schedule-free's z, a wrapper around another's state); the nightly test resumes every optimizer.
SAMPLE = (
    "adam",
    "muon",
    "lbfgs",
    "adamw_8bit",
    "adamw_4bit",
    "adamw_torchao",
    "kron",
    "prodigy",
    "dadapt_adan",
    "adamw_schedule_free",
    "schedule_free_wrapper",
    "lookahead",
    "timm_muon",
    "muon_with_aux_adam",
)


def start():
    return jax.tree.map(jnp.asarray, ref.PARAMS)


@functools.lru_cache(maxsize=None)
def _step(name, x64):
    """One jitted update per optimizer (compiled once for both halves of the run)."""
    optimizer = OPTIMIZERS[name]()
    data = jax.tree.map(jnp.asarray, ref.MLP_DATA)

    @jax.jit
    def step(params, state, k):
        batch = jax.tree.map(lambda a: a[k], data)
        loss, grads = jax.value_and_grad(ref.jax_loss)(params, batch, 1.0)
        extra = dict(value=loss, value_fn=lambda p: ref.jax_loss(p, batch, 1.0)) if name == "lbfgs" else {}
        extra = dict(value_fn=lambda p: ref.jax_loss(p, batch, 1.0)) if name == "adahessian" else extra
        updates, state = optimizer.update(grads, state, params, **extra)
        return optax.apply_updates(params, updates), state

    return step


def steps(name, params, state, first, last):
    step = _step(name, jax.config.jax_enable_x64)
    for k in range(first, last):
        params, state = step(params, state, k)
    return params, state


def like(name):
    params = start()
    return {"params": params, "opt_state": OPTIMIZERS[name]().init(params)}


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    directory, names = sys.argv[1], sys.argv[2:]
    out = {}
    for name in names:
        restored = checkpoint.restore(f"{directory}/{name}", like(name))
        tree = (restored["params"], restored["opt_state"])
        out[f"{name}/structure"] = np.array(str(jax.tree.structure(tree)))
        leaves = jax.tree.leaves(tree)
        out[f"{name}/dtypes"] = np.array([str(x.dtype) for x in leaves])  # npz keeps bfloat16 as void
        out.update({f"{name}/{i}": np.asarray(x) for i, x in enumerate(leaves)})
    np.savez(f"{directory}/restored.npz", **out)
