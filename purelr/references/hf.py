"""Drives transformers 5.24.0's ``Trainer`` from ``TrainingArguments`` fields (an ``hf=dict(...)``
recipe): the lr of each optimizer update (:func:`lr_curve`: the Trainer's own step count, warmup
and scheduler, ``create_optimizer_and_scheduler``), and a real ``Trainer.train`` run recording the
params and the lr of each update (:func:`train`).

Runs on the CPU, in the order of the dataset (``train_sampling_strategy='sequential'``), with
everything that is not optimization switched off (saving, evaluation, logging, mixed precision,
activation checkpointing: :data:`QUIET`). A 4.x ``warmup_ratio`` is passed as 5.x's fractional
``warmup_steps``; fields ``TrainingArguments`` does not have (script arguments) are dropped.
"""

from __future__ import annotations

import dataclasses
import tempfile

import torch

from purelr.references.shims import lend_torchvision

lend_torchvision()

import transformers  # noqa: E402

QUIET = dict(
    report_to="none",
    use_cpu=True,
    save_strategy="no",
    eval_strategy="no",
    do_eval=False,
    logging_strategy="no",
    disable_tqdm=True,
    push_to_hub=False,
    bf16=False,
    fp16=False,
    load_best_model_at_end=False,
    activation_checkpointing=False,
    train_sampling_strategy="sequential",
    dataloader_drop_last=False,
    torch_compile=False,
    use_liger_kernel=False,
    seed=0,
    data_seed=None,
    per_device_train_batch_size=1,
)


def training_arguments(args: dict, output_dir: str, **overrides) -> transformers.TrainingArguments:
    """``TrainingArguments`` of the fields in ``args`` it has, ``QUIET`` and ``overrides`` on top."""
    fields = {field.name for field in dataclasses.fields(transformers.TrainingArguments) if field.init}
    dropped = ("output_dir", "gradient_checkpointing")  # 5.x's activation_checkpointing, off in QUIET
    kwargs = {key: value for key, value in args.items() if key in fields and key not in dropped}
    if args.get("warmup_ratio") and not kwargs.get("warmup_steps"):
        kwargs["warmup_steps"] = args["warmup_ratio"]
    return transformers.TrainingArguments(output_dir=output_dir, **{**kwargs, **QUIET, **overrides})


class _OneParameter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return {"loss": (self.weight * x).sum()}


def lr_curve(args: dict, epoch_len: int, updates: int | None = None) -> list[float]:
    """The lr of each optimizer update of the Trainer (``updates`` of them, default the run's
    ``max_steps``) for ``epoch_len`` batches an epoch: its ``set_initial_training_values`` and
    ``create_optimizer_and_scheduler`` on a one-parameter model, its scheduler stepped once per update."""
    with tempfile.TemporaryDirectory() as output_dir:
        trainer = transformers.Trainer(
            model=_OneParameter(),
            args=training_arguments(args, output_dir),
            train_dataset=[{"x": torch.ones(1)}] * epoch_len,
        )
        max_steps = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[-1]
        trainer.create_optimizer_and_scheduler(num_training_steps=max_steps)
        optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
        assert optimizer is not None and scheduler is not None
        values = []
        for _ in range(max_steps if updates is None else updates):
            values.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return values


class _Recorder(transformers.TrainerCallback):
    def __init__(self, model, updates):
        self.model, self.updates, self.params, self.lrs = model, updates, [], []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append([group["lr"] for group in optimizer.param_groups])

    def on_step_end(self, args, state, control, **kwargs):
        self.params.append({name: p.detach().clone() for name, p in self.model.named_parameters()})
        if self.updates is not None and len(self.params) >= self.updates:
            control.should_training_stop = True


def train(args: dict, model: torch.nn.Module, dataset, *, batch_size: int = 1, updates: int | None = None):
    """``Trainer(model, TrainingArguments(**args), train_dataset=dataset).train()``, stopped after
    ``updates`` optimizer updates (the schedule stays the recipe's whole run): ``(params, lrs)``, the
    ``named_parameters`` after each update and the lr of each param group at each update."""
    with tempfile.TemporaryDirectory() as output_dir:
        arguments = training_arguments(args, output_dir, per_device_train_batch_size=batch_size)
        recorder = _Recorder(model, updates)
        trainer = transformers.Trainer(model=model, args=arguments, train_dataset=dataset, callbacks=[recorder])
        trainer.train()
        return recorder.params, recorder.lrs
