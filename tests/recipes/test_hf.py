"""Hugging Face Trainer recipes end to end: ``purelr.build(dict(hf=args), ...)`` against a real
``transformers.Trainer`` (5.24.0), side by side.

For each published recipe (``RECIPES``: the ``TrainingArguments`` of Hugging Face's example scripts'
README command lines and the alignment-handbook's recipe files, each named with its source):

- the lr of every optimizer update of the whole run, ``purelr.recipes.hf.lr_schedule`` against the
  Trainer's own step count and scheduler (``purelr.references.hf.lr_curve``): x64, 1e-12, with a
  floor of 8 units of the peak (transformers' ``0.5 * (1 + cos)`` cancels at a cosine's end:
  measured 0.2 units, run_mae's last of 5600 updates, 4e-13 of a 4.7e-6 peak);
- the first ``UPDATES`` updates (or all, where the run is shorter) of a real ``Trainer.train()`` on a tiny torch model (a linear
  layer, an ``nn.LayerNorm`` named ``ln_1``, so excluded from decay by its type only, one named
  ``LayerNorm``, a head) against the built transformation on the same flax-named params and
  batches: every param after every update, 1e-10 (x64) / 1e-5 (float32) with the trajectory floor.
  ``epoch_len`` is 7 batches, so accumulation of 2 and 4 meets an epoch's remainder.

Recipe fields that set no optimization (data, logging, saving, bf16...) are kept, to show that
they are ignored; a 4.x ``warmup_ratio`` is read as 5.x's fractional ``warmup_steps``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch import nn

import purelr
from purelr.recipes import hf as recipes_hf
from purelr.references import hf as reference
from tests.bad_inputs import assert_purelr_rejects
from tests.parity import (
    OPTIMIZER_RTOL,
    SCHEDULE_RTOL,
    assert_schedule_matches,
    relative_error,
    rounding_floor,
    trajectory_floor,
)

HANDBOOK = "huggingface/alignment-handbook"
EXAMPLES = "huggingface/transformers examples/pytorch"
RECIPES = {
    "zephyr-7b-beta-sft": (
        f"{HANDBOOK} recipes/zephyr-7b-beta/sft/config_full.yaml",
        dict(
            bf16=True,
            do_eval=True,
            eval_strategy="epoch",
            gradient_accumulation_steps=1,
            gradient_checkpointing=True,
            hub_model_id="zephyr-7b-sft-full",
            learning_rate=2.0e-05,
            log_level="info",
            logging_steps=5,
            lr_scheduler_type="cosine",
            max_seq_length=2048,
            max_steps=-1,
            num_train_epochs=1,
            overwrite_output_dir=True,
            per_device_train_batch_size=16,
            seed=42,
            warmup_ratio=0.1,
        ),
    ),
    "zephyr-7b-beta-dpo": (
        f"{HANDBOOK} recipes/zephyr-7b-beta/dpo/config_full.yaml",
        dict(
            bf16=True,
            beta=0.01,
            do_eval=True,
            eval_strategy="steps",
            eval_steps=100,
            gradient_accumulation_steps=2,
            learning_rate=5.0e-7,
            lr_scheduler_type="cosine",
            max_length=1024,
            max_prompt_length=512,
            num_train_epochs=1,
            optim="adamw_torch",
            per_device_train_batch_size=8,
            seed=42,
            warmup_ratio=0.1,
        ),
    ),
    "smollm2-sft": (
        f"{HANDBOOK} recipes/smollm2/sft/config.yaml",
        dict(
            bf16=True,
            gradient_accumulation_steps=4,
            learning_rate=3.0e-04,
            lr_scheduler_type="cosine",
            max_length=8192,
            max_steps=-1,
            num_train_epochs=2,
            per_device_train_batch_size=4,
            save_strategy="no",
            warmup_ratio=0.1,
        ),
    ),
    "starchat2-15b-sft": (
        f"{HANDBOOK} recipes/starchat2-15b/sft/config_v0.1.yaml",
        dict(
            bf16=True,
            gradient_accumulation_steps=2,
            learning_rate=2.0e-05,
            lr_scheduler_type="cosine",
            max_length=2048,
            num_train_epochs=3,
            per_device_train_batch_size=8,
            warmup_ratio=0.1,
        ),
    ),
    "smollm3-sft": (
        f"{HANDBOOK} recipes/smollm3/sft/sft.yaml",
        dict(
            assistant_only_loss=True,
            bf16=True,
            gradient_accumulation_steps=2,
            learning_rate=2.0e-05,
            lr_scheduler_type="cosine_with_min_lr",
            lr_scheduler_kwargs=dict(min_lr_rate=0.1),
            packing=True,
            max_grad_norm=0.2,
            num_train_epochs=5,
            per_device_train_batch_size=1,
            use_liger_kernel=True,
            warmup_ratio=0.03,
            average_tokens_across_devices=True,
        ),
    ),
    "run_glue-mrpc": (
        f"{EXAMPLES}/text-classification/README.md (run_glue.py, bert-base-cased, MRPC)",
        dict(
            model_name_or_path="google-bert/bert-base-cased",
            task_name="mrpc",
            do_train=True,
            do_eval=True,
            max_seq_length=128,
            per_device_train_batch_size=32,
            learning_rate=2e-5,
            num_train_epochs=3,
        ),
    ),
    "run_qa-squad": (
        f"{EXAMPLES}/question-answering/README.md (run_qa.py, bert-base-uncased, SQuAD)",
        dict(
            model_name_or_path="google-bert/bert-base-uncased",
            dataset_name="squad",
            do_train=True,
            do_eval=True,
            per_device_train_batch_size=12,
            learning_rate=3e-5,
            num_train_epochs=2,
            max_seq_length=384,
            doc_stride=128,
        ),
    ),
    "run_speech_recognition_ctc": (
        f"{EXAMPLES}/speech-recognition/README.md (wav2vec2 CTC, Common Voice)",
        dict(
            num_train_epochs=15,
            per_device_train_batch_size=16,
            gradient_accumulation_steps=2,
            learning_rate=3e-4,
            warmup_steps=500,
            eval_strategy="steps",
            save_steps=400,
            eval_steps=100,
            layerdrop=0.0,
            save_total_limit=3,
            freeze_feature_encoder=True,
            gradient_checkpointing=True,
            fp16=True,
            group_by_length=True,
            do_train=True,
            do_eval=True,
        ),
    ),
    "run_mae": (
        f"{EXAMPLES}/image-pretraining/README.md (run_mae.py, cifar10; learning_rate = "
        f"base_learning_rate * total batch 8 / 256, as run_mae.py sets it)",
        dict(
            remove_unused_columns=False,
            label_names=["pixel_values"],
            mask_ratio=0.75,
            norm_pix_loss=True,
            do_train=True,
            do_eval=True,
            base_learning_rate=1.5e-4,
            learning_rate=1.5e-4 * 8 / 256,
            lr_scheduler_type="cosine",
            weight_decay=0.05,
            num_train_epochs=800,
            warmup_ratio=0.05,
            per_device_train_batch_size=8,
            logging_strategy="steps",
            logging_steps=10,
            evaluation_strategy="epoch",
            save_strategy="epoch",
            load_best_model_at_end=True,
            save_total_limit=3,
            seed=1337,
        ),
    ),
    "run_image_classification-beans": (
        f"{EXAMPLES}/image-classification/README.md (run_image_classification.py, beans)",
        dict(
            dataset_name="beans",
            remove_unused_columns=False,
            do_train=True,
            do_eval=True,
            learning_rate=2e-5,
            num_train_epochs=5,
            per_device_train_batch_size=8,
            logging_strategy="steps",
            logging_steps=10,
            eval_strategy="epoch",
            save_strategy="epoch",
            load_best_model_at_end=True,
            save_total_limit=3,
            seed=1337,
        ),
    ),
}
# purelr's optim names beyond the recipes' AdamW, with optim_args the Trainer parses (hand-picked)
OPTIMS = {
    "adamw_torch_fused": dict(
        optim="adamw_torch_fused",
        learning_rate=3e-3,
        weight_decay=0.1,
        adam_beta2=0.98,
        adam_epsilon=1e-6,
        lr_scheduler_type="linear",
        warmup_steps=3,
    ),
    "sgd": dict(
        optim="sgd",
        learning_rate=0.05,
        weight_decay=1e-3,
        optim_args="momentum=0.9, nesterov=True",
        lr_scheduler_type="cosine_with_restarts",
        lr_scheduler_kwargs=dict(num_cycles=2),
    ),
    "adagrad": dict(
        optim="adagrad",
        learning_rate=0.05,
        weight_decay=1e-2,
        optim_args="lr_decay=0.01,eps=1e-8",
        lr_scheduler_type="polynomial",
        lr_scheduler_kwargs=dict(power=2.0, lr_end=1e-4),
    ),
    "rmsprop": dict(
        optim="rmsprop",
        learning_rate=1e-3,
        weight_decay=1e-2,
        gradient_accumulation_steps=4,
        optim_args="momentum=0.5,alpha=0.9,centered=true",
        lr_scheduler_type="inverse_sqrt",
        warmup_steps=2,
    ),
    "adafactor": dict(
        optim="adafactor",
        learning_rate=1e-2,
        weight_decay=0.01,
        max_grad_norm=0.5,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=0.2,
    ),
    "lion_32bit": dict(
        optim="lion_32bit",
        learning_rate=1e-3,
        weight_decay=0.1,
        adam_beta1=0.95,
        adam_beta2=0.98,
        lr_scheduler_type="warmup_stable_decay",
        lr_scheduler_kwargs=dict(num_decay_steps=5, decay_type="1-sqrt", min_lr_ratio=0.1),
    ),
    "schedule_free_adamw": dict(
        optim="schedule_free_adamw",
        learning_rate=3e-3,
        weight_decay=0.1,
        adam_beta1=0.8,
        warmup_steps=3,
        lr_scheduler_type="constant",
        optim_args="weight_lr_power=1.5, r=0.5",
    ),
    "schedule_free_sgd": dict(
        optim="schedule_free_sgd",
        learning_rate=0.05,
        weight_decay=1e-3,
        warmup_steps=2,
        lr_scheduler_type="linear",
        gradient_accumulation_steps=2,
    ),
    "schedule_free_radam": dict(
        optim="schedule_free_radam",
        learning_rate=1e-2,
        weight_decay=0.01,
        adam_beta2=0.9,
        lr_scheduler_type="cosine",
        optim_args="r=1.0",
    ),
    "adamw_torch_8bit": dict(
        optim="adamw_torch_8bit",
        learning_rate=3e-3,
        weight_decay=0.1,
        adam_epsilon=1e-6,
        lr_scheduler_type="linear",
        warmup_steps=3,
    ),
    "adamw_torch_4bit": dict(
        optim="adamw_torch_4bit",
        learning_rate=1e-3,
        weight_decay=0.01,
        optim_args="block_size=128,bf16_stochastic_round=false",
        lr_scheduler_type="cosine",
    ),
}
FLOAT32_STEPS = ("lion_32bit", "adamw_torch_8bit", "adamw_torch_4bit")
# accumulation with an epoch's remainder, clipping, min_lr, a warmup longer than the run, weight decay
TRAINED_BY_DEFAULT = ("smollm3-sft", "run_speech_recognition_ctc", "run_mae")
EXAMPLES_N, BATCH = 13, 2
EPOCH_LEN = -(-EXAMPLES_N // BATCH)  # 7 batches, the last of one example
UPDATES = 12
LAYER_NORMS = ["ln_1", "LayerNorm"]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(3, 4)
        self.ln_1 = nn.LayerNorm(4)
        self.LayerNorm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x, labels):
        h = self.LayerNorm(self.ln_1(torch.tanh(self.dense(x))))
        return {"loss": ((self.head(h) - labels) ** 2).mean()}


def _layer_norm(h, p):
    mean = jnp.mean(h, -1, keepdims=True)
    var = jnp.mean((h - mean) ** 2, -1, keepdims=True)
    return (h - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def jax_loss(params, x, y):
    h = jnp.tanh(x @ params["dense"]["kernel"] + params["dense"]["bias"])
    h = _layer_norm(_layer_norm(h, params["ln_1"]), params["LayerNorm"])
    return jnp.mean((h @ params["head"]["kernel"] + params["head"]["bias"] - y) ** 2)


FLAX_NAMES = {
    "dense.weight": ("dense", "kernel"),
    "dense.bias": ("dense", "bias"),
    "ln_1.weight": ("ln_1", "scale"),
    "ln_1.bias": ("ln_1", "bias"),
    "LayerNorm.weight": ("LayerNorm", "scale"),
    "LayerNorm.bias": ("LayerNorm", "bias"),
    "head.weight": ("head", "kernel"),
    "head.bias": ("head", "bias"),
}


def as_flax(named):
    tree = {}
    for name, (module, leaf) in FLAX_NAMES.items():
        value = named[name].detach().numpy()
        tree.setdefault(module, {})[leaf] = value.T if leaf == "kernel" else value
    return tree


def problem(x64):
    dtype = torch.float64 if x64 else torch.float32
    generator = torch.Generator().manual_seed(0)
    data = [
        {
            "x": torch.randn(3, generator=generator, dtype=dtype),
            "labels": torch.randn(2, generator=generator, dtype=dtype),
        }
        for _ in range(EXAMPLES_N)
    ]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(1)
        model = Tiny()
        with torch.no_grad():  # norms away from their (1, 0) start, so that their decay shows
            for norm in (model.ln_1, model.LayerNorm):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.5, 0.5)
    finally:
        torch.set_default_dtype(previous)
    return model, data


def purelr_run(args, params, data, x64, updates):
    """The built transformation over the Trainer's batches (in order, epoch after epoch) until
    ``updates`` updates: the params after each."""
    transform = purelr.build(dict(hf=args), params, epoch_len=EPOCH_LEN, layer_norms=LAYER_NORMS)
    accumulation = args.get("gradient_accumulation_steps", 1)

    @jax.jit
    def step(params, state, x, y):
        grads = jax.grad(jax_loss)(params, x, y)
        updates, state = transform.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    dtype = np.float64 if x64 else np.float32
    batches = [data[i : i + BATCH] for i in range(0, EXAMPLES_N, BATCH)]
    state, trajectory = transform.init(params), []
    while len(trajectory) < updates:
        for i, batch in enumerate(batches):
            x = jnp.asarray(np.stack([b["x"].numpy() for b in batch]), dtype)
            y = jnp.asarray(np.stack([b["labels"].numpy() for b in batch]), dtype)
            params, state = step(params, state, x, y)
            if (i + 1) % accumulation == 0 or i == EPOCH_LEN - 1:
                trajectory.append(params)
            if len(trajectory) == updates:
                break
    return trajectory


def check_training(args, precision):
    x64 = precision == "x64"
    model, data = problem(x64)
    params = jax.tree.map(jnp.asarray, as_flax(dict(model.named_parameters())))
    updates = min(UPDATES, recipes_hf.training_steps(recipes_hf.training_arguments(args), EPOCH_LEN))
    expected, _ = reference.train(args, model, data, batch_size=BATCH, updates=updates)
    actual = purelr_run(args, params, data, x64, updates)
    assert len(expected) == len(actual) == updates
    worst = 0.0
    for k, (mine, theirs) in enumerate(zip(actual, expected)):
        theirs = as_flax(theirs)
        for module, leaves in theirs.items():
            for leaf, value in leaves.items():
                error = relative_error(mine[module][leaf], value, floor=trajectory_floor(precision))
                assert error <= OPTIMIZER_RTOL[precision], f"update {k}: {module}.{leaf} off by {error:.3g}"
                worst = max(worst, error)
    return worst


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_schedule_matches_the_trainer(name):
    """The lr of every update of the recipe's whole run (x64, 1e-12)."""
    args = RECIPES[name][1]
    expected = reference.lr_curve(args, EPOCH_LEN)
    with jax.enable_x64(True):
        schedule = recipes_hf.lr_schedule(recipes_hf.training_arguments(args), EPOCH_LEN)(args["learning_rate"])
        actual = np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(len(expected))))
        assert_schedule_matches(
            actual,
            np.asarray(expected),
            "x64",
            context=f"{name} ({RECIPES[name][0]})",
            floor=rounding_floor(SCHEDULE_RTOL["x64"], 8),
        )
    assert SCHEDULE_RTOL["x64"] == 1e-12


def _nightly_but(names, default):
    return [pytest.param(name, marks=[] if name in default else [pytest.mark.nightly]) for name in names]


@pytest.mark.parametrize("name", _nightly_but(RECIPES, TRAINED_BY_DEFAULT))
def test_recipe_trains_like_the_trainer(name):
    """``UPDATES`` updates of a real ``Trainer.train()`` (x64, 1e-10); ``TRAINED_BY_DEFAULT`` by
    default, every recipe with ``-m nightly``."""
    with jax.enable_x64(True):
        check_training(RECIPES[name][1], "x64")


@pytest.mark.parametrize(
    "name",
    _nightly_but(
        [name for name in OPTIMS if name not in FLOAT32_STEPS],
        ("adamw_torch_fused", "adafactor", "rmsprop"),
    ),
)
def test_optim_trains_like_the_trainer_x64(name):
    """Each supported ``optim`` name with its ``optim_args`` (x64; three by default, all with
    ``-m nightly``; ``schedule_free_adamw``'s trained params by default in
    ``test_schedule_free_eval_params_are_the_trainers``). ``FLOAT32_STEPS`` are left out:
    bitsandbytes' Lion and torchao's AdamW8bit / AdamW4bit keep their state and compute in float32 whatever the params' dtype (Lion: measured 1e-7)."""
    with jax.enable_x64(True):
        check_training(OPTIMS[name], "x64")


@pytest.mark.parametrize("name", _nightly_but(OPTIMS, ("adafactor", "lion_32bit")))
def test_optim_trains_like_the_trainer_f32(name):
    """Each supported ``optim`` name in float32 (two by default, all with ``-m nightly``)."""
    with jax.enable_x64(False):
        check_training(OPTIMS[name], "f32")


def test_schedule_free_eval_params_are_the_trainers():
    """After ``UPDATES`` updates of ``schedule_free_adamw`` the model's params equal the built
    transformation's, and the Trainer's ``evaluate()`` calls ``optimizer.eval()``: they then equal
    ``schedule_free_eval_params`` of its state (x64, 1e-10)."""
    import tempfile

    import transformers

    from purelr.optim import schedule_free_eval_params

    args = OPTIMS["schedule_free_adamw"]
    with jax.enable_x64(True):
        model, data = problem(True)
        params = jax.tree.map(jnp.asarray, as_flax(dict(model.named_parameters())))
        transform = purelr.build(dict(hf=args), params, epoch_len=EPOCH_LEN, layer_norms=LAYER_NORMS)
        state = transform.init(params)
        step = jax.jit(lambda p, s, x, y: transform.update(jax.grad(jax_loss)(p, x, y), s, p))
        for k in range(UPDATES):
            batch = data[(k % EPOCH_LEN) * BATCH : (k % EPOCH_LEN + 1) * BATCH]
            x, y = (jnp.asarray(np.stack([b[key].numpy() for b in batch])) for key in ("x", "labels"))
            updates, state = step(params, state, x, y)
            params = optax.apply_updates(params, updates)
        mine = schedule_free_eval_params(state, params)
        with tempfile.TemporaryDirectory() as output_dir:
            arguments = reference.training_arguments(
                args, output_dir, per_device_train_batch_size=BATCH, max_steps=UPDATES
            )
            trainer = transformers.Trainer(model=model, args=arguments, train_dataset=data, eval_dataset=data[:2])
            trainer.train()
            trained = jax.tree.map(np.copy, as_flax(dict(model.named_parameters())))
            trainer.evaluate()
        for what, ours, theirs in [
            ("trained", params, trained),
            ("eval", mine, as_flax(dict(model.named_parameters()))),
        ]:
            for module, leaves in theirs.items():
                for leaf, value in leaves.items():
                    error = relative_error(ours[module][leaf], value, floor=trajectory_floor("x64"))
                    assert error <= OPTIMIZER_RTOL["x64"], f"{what} {module}.{leaf} off by {error:.3g}"


def test_every_optim_name_is_mapped_or_refused():
    from transformers.training_args import OptimizerNames

    names = {member.value for member in OptimizerNames}
    assert set(recipes_hf.OPTIMIZERS) | set(recipes_hf.REFUSED) == names
    assert not set(recipes_hf.OPTIMIZERS) & set(recipes_hf.REFUSED)


def test_defaults_are_the_pinned_transformers():
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir="unused", report_to="none")
    for key, value in recipes_hf.DEFAULTS.items():
        assert getattr(getattr(args, key), "value", getattr(args, key)) == value, key
    fields = {field.name for field in __import__("dataclasses").fields(TrainingArguments) if field.init}
    assert fields <= recipes_hf.IGNORED | set(recipes_hf.DEFAULTS)


PARAMS = {"dense": {"kernel": jnp.zeros((3, 4)), "bias": jnp.zeros(4)}}


BAD = {
    "optim-refused": (dict(optim="adamw_8bit"), ValueError, "'adamw_8bit'", "bitsandbytes", "lion_32bit"),
    "optim-misspelled": (dict(optim="adamw_torch_fusd"), ValueError, "'adamw_torch_fusd'", "adamw_torch_fused"),
    "key-misspelled": (dict(learning_rat=1e-3), ValueError, "'learning_rat'", "learning_rate"),
    "warmup-ratio": (dict(warmup_ratio=1.5, max_steps=10), ValueError, "warmup_ratio", "1.5"),
    "warmup-steps-negative": (dict(warmup_steps=-1, max_steps=10), ValueError, "warmup_steps", "-1"),
    "schedule-free-warmup-fraction": (
        dict(optim="schedule_free_adamw", warmup_steps=0.1, max_steps=10),
        ValueError,
        "warmup_steps=0.1",
        "whole number",
    ),
    "torchao-flag": (
        dict(optim="adamw_torch_8bit", optim_args="bf16_stochastic_round=maybe", max_steps=10),
        ValueError,
        "bf16_stochastic_round='maybe'",
    ),
    "scheduler-misspelled": (
        dict(lr_scheduler_type="cosine_with_restart", max_steps=10),
        ValueError,
        "'cosine_with_restart'",
        "cosine_with_restarts",
    ),
    "scheduler-plateau": (
        dict(lr_scheduler_type="reduce_lr_on_plateau", max_steps=10),
        ValueError,
        "'reduce_lr_on_plateau'",
        "metric",
    ),
    "scheduler-kwarg": (
        dict(lr_scheduler_type="cosine", lr_scheduler_kwargs=dict(min_lr=1e-6), max_steps=10),
        ValueError,
        "'min_lr'",
        "num_cycles",
    ),
    "epochs-without-epoch-len": (dict(num_train_epochs=3), ValueError, "max_steps=-1", "epoch_len"),
    "accumulation-without-epoch-len": (
        dict(max_steps=10, gradient_accumulation_steps=2),
        ValueError,
        "gradient_accumulation_steps=2",
        "epoch_len",
    ),
    "optim-args": (dict(max_steps=10, optim_args="momentum"), ValueError, "optim_args", "'momentum'"),
    "scheduler-kwargs-json": (
        dict(max_steps=10, lr_scheduler_kwargs="{not json"),
        ValueError,
        "lr_scheduler_kwargs",
        "{not json",
    ),
    "learning-rate-negative": (dict(max_steps=10, learning_rate=-1e-3), ValueError, "hf.learning_rate", "-0.001"),
    "weight-decay-negative": (dict(max_steps=10, weight_decay=-0.1), ValueError, "hf.weight_decay", "-0.1"),
    "max-grad-norm-str": (dict(max_steps=10, max_grad_norm="1.0"), TypeError, "hf.max_grad_norm", "'1.0'"),
    "not-a-dict": ([("learning_rate", 1e-3)], TypeError, "hf", "learning_rate"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_input(name):
    """Refused before tracing, by purelr's own check, naming the key and the value."""
    args, exception, *needles = BAD[name]
    assert_purelr_rejects(lambda: purelr.build(dict(hf=args), PARAMS), exception, *needles)


def test_ignored_keys():
    args = RECIPES["run_mae"][1]
    assert "base_learning_rate" in recipes_hf.ignored_keys(args) and "learning_rate" not in recipes_hf.ignored_keys(
        args
    )


def test_training_args_json_file(tmp_path):
    """An ``hf`` entry may be the path of a run's ``training_args.json`` (``args.to_dict()``)."""
    import json

    from transformers import TrainingArguments

    arguments = TrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        learning_rate=3e-4,
        max_steps=20,
        warmup_steps=0.25,
        lr_scheduler_type="cosine",
        weight_decay=0.1,
    )
    path = tmp_path / "training_args.json"
    path.write_text(json.dumps(arguments.to_dict()))
    args = recipes_hf.training_arguments(str(path))
    assert args["learning_rate"] == 3e-4 and args["optim"] == "adamw_torch_fused" and args["warmup_steps"] == 0.25
    transform = purelr.build(dict(hf=str(path)), PARAMS)
    assert transform.init(PARAMS) is not None
    expected = reference.lr_curve(arguments.to_dict(), epoch_len=1)
    with jax.enable_x64(True):
        actual = jax.vmap(recipes_hf.lr_schedule(args, None)(3e-4))(jnp.arange(20))
        assert_schedule_matches(
            np.asarray(actual), np.asarray(expected), "x64", floor=rounding_floor(SCHEDULE_RTOL["x64"], 8)
        )
