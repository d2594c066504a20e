"""Adam and AdamW with low-bit state, the twins of torchao 0.18's ``torchao.optim.Adam8bit``,
``AdamW8bit``, ``Adam4bit``, ``AdamW4bit``, ``AdamFp8``, ``AdamWFp8`` and ``_AdamW`` (float state,
for bfloat16 params with stochastic rounding).

At update ``t`` (from 1), for each param ``p`` with gradient ``g``, all in float32 whatever the
param's dtype (torchao's ``single_param_adam``)::

    p = p - (lr * weight_decay) * p                       # AdamW; Adam adds weight_decay * p to g
    m = lerp(m, g, 1 - beta1);  v = lerp(v, g * g, 1 - beta2)      # torch's lerp
    v_hat = max(v_max, v) if amsgrad else v               # v_max kept as v_hat
    p = p - lr * (m / (1 - beta1 ** t)) / (sqrt(v_hat) / sqrt(1 - beta2 ** t) + eps)

``m``, ``v`` (and ``v_max``) are stored blockwise-quantized (``purelr.optim.block_quantization``)
when the param has at least 4096 entries and ``block_size`` divides them; else in the param's
dtype. The update itself uses the float32 values before they are stored. The new param is
rounded to the param's dtype, or with ``bf16_stochastic_round`` (a bfloat16 param) rounded away
from zero with probability (low 16 bits of the float32) / 2**16 (torchao's ``_fp32_to_bf16_sr``),
the random bits drawn from the state's ``key`` (``stochastic_rounding_bits``).

Memory: a quantized leaf's update is computed elementwise from the old codes (XLA fuses it into
``optax.apply_updates``' addition); its new moments are computed again and quantized
``chunk_size`` entries at a time in a loop that rewrites the codes in place, so that the compiled
update holds no float32 copy of a leaf's moments or update (``benchmarks/low_bit_memory.py``).
``chunk_size=None`` quantizes each leaf whole; the numbers are the same to the bit.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from purelr.optim import base
from purelr.optim import block_quantization as bq
from purelr.optim import hyperparams as hp_lib
from purelr.optim.adafactor import torch_lerp
from purelr.schedules import validate
from purelr.schedules.core import divided, resolve

CHUNK_SIZE = 1 << 16  # entries of a quantized leaf requantized at a time (see ``quantized_leaf``)


class LowBitAdamState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any
    key: jax.Array | None


def stochastic_rounding_bits(key, count, leaf_index: int, shape):
    """The 16 random bits (int32 in ``[0, 2**16)``) that round the ``leaf_index``-th param at the
    update numbered ``count`` (torchao draws them with ``torch.randint(0, 1 << 16, shape)``)."""
    leaf_key = jax.random.fold_in(jax.random.fold_in(key, count), leaf_index)
    return jax.random.randint(leaf_key, shape, 0, 1 << 16, dtype=jnp.int32)


def bf16_stochastic_round(x, bits):
    """float32 ``x`` to bfloat16, rounded away from zero where ``bits`` < its low 16 bits."""
    raw = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
    truncated = raw & jnp.int32(-(1 << 16))
    rounded = jnp.where(bits < (raw & 0xFFFF), truncated + (1 << 16), truncated)
    return jax.lax.bitcast_convert_type(rounded, jnp.float32).astype(jnp.bfloat16)


def _low_bit_adam(fmt, lr, betas, eps, weight_decay, amsgrad, *, block_size, chunk_size, sr, seed, decoupled):
    """torchao's ``_AdamBase`` with state format ``fmt`` (``None``: the param's dtype)."""
    hyperparams = base.adam_hyperparams(lr, betas, eps, weight_decay)
    complements = base.one_minus(hyperparams["beta1"]), base.one_minus(hyperparams["beta2"])
    amsgrad = validate.flag("amsgrad", amsgrad)
    stochastic_round = validate.flag("bf16_stochastic_round", sr)
    seed = validate.nonnegative_int("seed", seed)
    chunk_size = None if chunk_size is None else validate.positive_int("chunk_size", chunk_size)
    if fmt is not None:
        block_size = validate.positive_int("block_size", block_size)
        if amsgrad:
            raise ValueError(
                f"amsgrad=True with {fmt} state: torchao 0.18 accepts it but fails at the first step of a "
                "quantized param (its quantized state has no maximum); use adam / adamw with amsgrad=True"
            )

    def new_buffer(p):
        return (
            bq.zeros(p.shape, fmt, block_size)
            if fmt is not None and bq.quantizes(p.shape, block_size)
            else jnp.zeros_like(p)
        )

    def quantized_leaf(arithmetic, param, grad, m_old, v_old, bits):
        """A leaf with quantized moments. Its update is an elementwise function of the old state,
        which XLA fuses into the addition of ``optax.apply_updates``; the new moments are computed
        again and quantized at most ``chunk_size`` entries (a number of blocks that divides the
        leaf's) at a time, in a loop that rewrites the codes and scales in place: one chunk's
        float32 moments are alive at a time. A chunk takes every ``loops``-th block, so that a leaf
        sharded along its first axis is updated where it lies."""
        old = (m_old, v_old)
        moments = (bq.dequantize(b, fmt, signed, param.shape) for b, signed in zip(old, (True, False)))
        update = arithmetic(param, grad, *moments, None, bits)[0]
        rows = m_old.scale.shape[0]
        step = rows if chunk_size is None else _largest_divisor(rows, chunk_size // block_size)
        loops = rows // step

        def strided(x):  # chunk i: blocks i, i + loops, i + 2 * loops, ... (a sharded leaf stays local)
            return x.reshape(step, loops, -1)

        dense = [strided(x) for x in (param, grad) + (() if bits is None else (bits,))]
        # fp8 codes travel the loop as their bytes: XLA:CPU converts a float8 loop buffer whole each step
        code_type = m_old.codes.dtype
        buffers = tuple(strided(x) for b in old for x in (_bytes(b.codes), b.scale))

        def chunk(i, buffers):
            p, g, *b = (jax.lax.dynamic_index_in_dim(x, i, 1, keepdims=False) for x in dense)
            parts = [jax.lax.dynamic_index_in_dim(x, i, 1, keepdims=False) for x in buffers]
            m, v = (
                bq.dequantize(bq.QuantizedBuffer(_bytes(parts[j], code_type), parts[j + 1][:, 0]), fmt, j == 0, p.shape)
                for j in (0, 2)
            )
            m, v = arithmetic(p, g, m, v, None, b[0] if b else None)[1:3]
            quantized = (bq.quantize(x, fmt, signed, block_size) for x, signed in ((m, True), (v, False)))
            new = [part.reshape(step, -1) for q in quantized for part in (_bytes(q.codes), q.scale)]
            return tuple(jax.lax.dynamic_update_index_in_dim(whole, part, i, 1) for whole, part in zip(buffers, new))

        buffers = chunk(0, buffers) if loops == 1 else jax.lax.fori_loop(0, loops, chunk, buffers)
        codes, scales = buffers[0::2], buffers[1::2]
        return update, *(
            bq.QuantizedBuffer(_bytes(c, code_type).reshape(b.codes.shape), s.reshape(-1))
            for b, c, s in zip(old, codes, scales)
        )

    def init_fn(params):
        return LowBitAdamState(
            count=jnp.zeros((), jnp.int32),
            hyperparams=hp_lib.initial(hyperparams),
            exp_avg=base.buffer(params, new_buffer),
            exp_avg_sq=base.buffer(params, new_buffer),
            max_exp_avg_sq=base.buffer(params, new_buffer) if amsgrad else None,
            key=jax.random.PRNGKey(seed) if stochastic_round else None,
        )

    def update_fn(grads, state, params=None):
        base.require_params(params, True, "torchao's Adam / AdamW")
        hp = hp_lib.in_force(hyperparams, state.count)
        f32 = jnp.float32
        lr, eps, weight_decay = (hp[name].astype(f32) for name in ("lr", "eps", "weight_decay"))
        beta1, beta2 = hp["beta1"].astype(f32), hp["beta2"].astype(f32)
        weight1, weight2 = (resolve(c, state.count).astype(f32) for c in complements)
        t = (state.count + 1).astype(f32)
        correction1, correction2 = 1 - beta1**t, 1 - beta2**t

        def arithmetic(param, grad, m, v, vmax, bits):
            """One update of float32 moments on any slice of a leaf: ``(update, m, v, vmax)``."""
            p, g = param.astype(f32), grad.astype(f32)
            if decoupled:
                p = p - base.multiplied(p, lr * weight_decay)
            else:
                g = g + base.multiplied(p, weight_decay)
            m = torch_lerp(m, g, weight1)
            v = torch_lerp(v, g * g, weight2)
            vmax = None if vmax is None else jnp.maximum(vmax, v)
            denom = divided(jnp.sqrt(v if vmax is None else vmax), jnp.sqrt(correction2)) + eps
            p = p - lr * divided(m, correction1) / denom
            new = p.astype(param.dtype) if bits is None else bf16_stochastic_round(p, bits)
            # a 16-bit param moves by a float32 update, which apply_updates adds exactly
            update = new.astype(f32) - param.astype(f32) if jnp.finfo(param.dtype).bits < 32 else new - param
            return update, m, v, vmax

        def leaf(index, grad, param, m_old, v_old, vmax_old):
            rounds = state.key is not None and param.dtype == jnp.bfloat16
            bits = stochastic_rounding_bits(state.key, state.count, index, param.shape) if rounds else None
            if isinstance(m_old, bq.QuantizedBuffer):
                update, m, v = quantized_leaf(arithmetic, param, grad, m_old, v_old, bits)
                return update, m, v, None
            m, v, vmax = (None if b is None else b.astype(f32) for b in (m_old, v_old, vmax_old))
            update, m, v, vmax = arithmetic(param, grad, m, v, vmax, bits)
            moments = m.astype(m_old.dtype), v.astype(v_old.dtype)
            return update, *moments, None if vmax is None else vmax.astype(vmax_old.dtype)

        treedef = jax.tree.structure(grads, is_leaf=base._is_masked)
        columns = [treedef.flatten_up_to(tree) for tree in (grads, params, state.exp_avg, state.exp_avg_sq)]  # type: ignore[attr-defined]
        columns.append(
            [None] * treedef.num_leaves if state.max_exp_avg_sq is None else treedef.flatten_up_to(state.max_exp_avg_sq)  # type: ignore[attr-defined]
        )
        rows = [
            (row[0], None, None, None) if base._is_masked(row[0]) else leaf(i, *row)
            for i, row in enumerate(zip(*columns))
        ]
        updates, exp_avg, exp_avg_sq, max_exp_avg_sq = (treedef.unflatten(list(column)) for column in zip(*rows))  # type: ignore[attr-defined]
        return updates, LowBitAdamState(
            count=optax.safe_int32_increment(state.count),
            hyperparams=hp,
            exp_avg=exp_avg,
            exp_avg_sq=exp_avg_sq,
            max_exp_avg_sq=max_exp_avg_sq if amsgrad else None,
            key=state.key,
        )

    return optax.GradientTransformation(init_fn, update_fn)


def _largest_divisor(n: int, most: int) -> int:
    """The largest divisor of ``n`` that is at most ``most`` (at least 1)."""
    return max(d for d in range(1, max(1, min(n, most)) + 1) if n % d == 0)


def _bytes(codes, dtype=jnp.uint8):
    """Quantization codes seen as ``dtype`` (both one byte an entry): uint8 to float8 and back."""
    return codes if codes.dtype == dtype else jax.lax.bitcast_convert_type(codes, dtype)


def _constructor(name: str, fmt: str | None, decoupled: bool, block_size: int | None):
    weight_decay_default = 1e-2 if decoupled else 0.0

    def make(
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=weight_decay_default,
        amsgrad=False,
        *,
        block_size=block_size,
        chunk_size=CHUNK_SIZE,
        bf16_stochastic_round=False,
        seed=0,
    ) -> optax.GradientTransformation:
        return _low_bit_adam(
            fmt,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            block_size=block_size,
            chunk_size=chunk_size,
            sr=bf16_stochastic_round,
            seed=seed,
            decoupled=decoupled,
        )

    state = "float32 (the param's dtype)" if fmt is None else f"{fmt} blockwise (blocks of {block_size})"
    make.__name__ = make.__qualname__ = name
    make.__doc__ = (
        f"Twin of torchao 0.18's ``torchao.optim.{_ORIGINALS[name]}``: {'AdamW' if decoupled else 'Adam'} with "
        f"{state} state (see the module docstring). Every number (``betas`` one by one) may be a schedule; "
        "``seed`` seeds the random bits of ``bf16_stochastic_round``; ``chunk_size`` (entries, whole blocks) is how "
        "much of a quantized leaf is requantized at a time (``None``: the whole leaf)."
    )
    return make


_ORIGINALS = {
    "adam_8bit": "Adam8bit",
    "adamw_8bit": "AdamW8bit",
    "adam_4bit": "Adam4bit",
    "adamw_4bit": "AdamW4bit",
    "adam_fp8": "AdamFp8",
    "adamw_fp8": "AdamWFp8",
    "adamw_torchao": "_AdamW",
}

adam_8bit = _constructor("adam_8bit", "8bit", False, 256)
adamw_8bit = _constructor("adamw_8bit", "8bit", True, 256)
adam_4bit = _constructor("adam_4bit", "4bit", False, 128)
adamw_4bit = _constructor("adamw_4bit", "4bit", True, 128)
adam_fp8 = _constructor("adam_fp8", "fp8", False, 256)
adamw_fp8 = _constructor("adamw_fp8", "fp8", True, 256)
adamw_torchao = _constructor("adamw_torchao", None, True, None)
