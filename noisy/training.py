"""Compile and fit with the schedules we offer, resumable after a kill at any moment.

Why not Keras' `BackupAndRestore` + `CSVLogger` + `ModelCheckpoint`: BackupAndRestore
overwrites one checkpoint in place (a kill during the write loses it), CSVLogger appends
a row per epoch, so a resumed run repeats the interrupted epoch's row, and the best-model
checkpoint forgets its best score on resume. `EpochCheckpoint` below keeps one folder per
finished epoch (model with optimizer state + history up to that epoch), points to it with
an atomically replaced `latest.json`, and keeps the best epoch's folder too. A restarted
run loads the latest folder, continues with the next epoch, and rewrites
`resume/history.csv` from the checkpoint, so each epoch appears exactly once; the stage's
`history.csv` is that file, moved into place when the stage finishes.

The weight average (`average` > 0) is part of the model trained (noisy/averaging.py), so
its values and update count are in each checkpoint's `model.keras`. A `.keras` file does not keep the states of the model's random-number generators (the
masks of dropout and stochastic depth, the on-device input noise), so a model loaded to
resume would draw its first epochs' masks again and the run would differ from one that
was never stopped. Each checkpoint saves them beside the model (`random_state.npz`) and a
resumed run puts them back: it draws what an unbroken run draws.
"""
import csv
import io
import json
import math
import os
import shutil
import sys

import keras

from noisy.arrays import fits, load_arrays, save_arrays
from noisy.files import save_json, save_model, save_text
from noisy.averaging import Averaged, SwapInAverage, require_average, with_average
from noisy.errors import UserError, interrupted

RANDOM_STATE_FILE = "random_state.npz"  # its random-number generators' states (module docstring)


def labeled_per_batch(batch_size, unlabeled_ratio, pseudo_labeled):
    """Labeled images per batch for UNLABELED_RATIO = k: batch / (k + 1), at least one of
    each kind per batch; 0 (one shuffled stream) when k = 0."""
    if not unlabeled_ratio:
        return 0
    k = round(batch_size / (unlabeled_ratio + 1))
    if not 1 <= k < batch_size <= pseudo_labeled + k:
        raise UserError(f"--unlabeled_ratio={unlabeled_ratio} with batch {batch_size}: {k} labeled images per "
                        f"batch, {pseudo_labeled} pseudo-labeled in all; expected at least one of each per batch")
    return k


def check_student_size(model, name, teacher):
    """A student (`model`, preset `name`) is equal to or larger than its teacher, in parameters."""
    if model.count_params() < teacher["parameters"]:
        raise UserError(f"--model={name} has {model.count_params():,} parameters, fewer than the teacher's "
                        f"{teacher['model']} ({teacher['parameters']:,}); a student must be equal or larger")


def make_optimizer(name, lr, schedule, total_steps, warmup_steps):
    """SGD (Nesterov momentum 0.9) or Adam, with a cosine (linear warmup), constant or
    plateau schedule. 'plateau' is a constant rate that `callbacks` later lowers. (The
    weight average is `fit`'s `average`, not Keras' `use_ema`: see noisy/averaging.py.)"""
    if schedule == "cosine":
        warmup_steps = min(warmup_steps, total_steps // 2)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else lr, warmup_target=lr if warmup_steps else None,
            warmup_steps=warmup_steps, decay_steps=max(total_steps - warmup_steps, 1))
    if name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(lr)


def compile_model(model, optimizer, jit_compile="auto", label_smoothing=0.0, steps_per_execution=1):
    """Soft targets (teacher probabilities) and one-hot labels use the same loss, cross
    entropy; `label_smoothing` s trains on (1 - s) * target + s / classes, so it also pulls
    soft pseudo-labels toward uniform. jit_compile: 'auto' (Keras decides), 'true' (XLA)
    or 'false'. `steps_per_execution`: train steps per call of the compiled function
    (Keras' TensorFlow loop reads the step's logs back to the host after every call)."""
    if str(jit_compile).lower() not in ("auto", "true", "false"):
        raise UserError(f"--jit_compile={jit_compile!r}: expected 'auto', 'true' or 'false'")
    jit = {"auto": "auto", "true": True, "false": False}[str(jit_compile).lower()]
    # A weighted accuracy: the padded validation batches of data parallelism weigh their
    # padding 0 (noisy/streams.py ValidationBatches); training batches carry no weights.
    model.compile(optimizer=optimizer, weighted_metrics=["accuracy"], jit_compile=jit,
                  steps_per_execution=steps_per_execution, loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing))


class StopOnNaN(keras.callbacks.Callback):
    """Stop with a clear error when the loss or a weight turns NaN or infinite (Keras'
    TerminateOnNaN stops quietly and the run would look finished). Read once per epoch,
    before that epoch is checkpointed: a check per batch would make every step wait for the
    device. The weights are checked too, in one reduction on the device: XLA's max(x, 0)
    can turn NaN into 0, and a JAX run at lr 1e30 kept a finite loss while its convolutions
    were NaN (a teacher that predicts one class, saved as finished)."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            problem = f"training loss became {loss}"
        elif not bool(keras.ops.all(keras.ops.stack(
                [keras.ops.all(keras.ops.isfinite(v)) for v in self.model.trainable_variables]))):
            problem = "the weights became NaN or infinite" + ("" if loss is None else f" (training loss {float(loss):.4g})")
        else:
            return
        kept = interrupted.resume_epoch  # the last checkpointed epoch, counted from 0
        raise UserError(f"{problem} in epoch {epoch + 1}; lower --lr or check the data "
                        + ("(no epoch was checkpointed)" if kept is None else
                           f"(epoch {kept + 1}'s checkpoint is kept for resume)"))


class AfterEpoch(keras.callbacks.Callback):
    """Run `callback` only from epoch `start` on (the article's flat phase, then the
    ReduceLROnPlateau + EarlyStopping phase)."""

    def __init__(self, start, callback):
        super().__init__()
        self.start, self.callback = start, callback

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(model)

    def on_train_begin(self, logs=None):
        self.callback.on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if epoch >= self.start:
            self.callback.on_epoch_end(epoch, logs)


class EpochCheckpoint(keras.callbacks.Callback):
    """After every `every`-th epoch, the last, and each new best on the validation split:
    save `resume/epoch-NNNN/model.keras` with its history, point `resume/latest.json` at
    it, keep only that folder and the best epoch's, and rewrite `resume/history.csv` (the
    stage's own history.csv is replaced only when the stage finishes, so a retrain leaves
    the finished stage whole). See the module docstring."""

    def __init__(self, stage_dir, monitor, history, epochs, every=1):
        super().__init__()
        self.stage_dir = stage_dir
        self.resume_dir = os.path.join(stage_dir, "resume")
        self.monitor = monitor  # 'val_accuracy' to keep the best epoch, or None for the last
        self.history = history
        self.epochs, self.every = epochs, every
        best = [row for row in history if monitor and monitor in row]
        self.best = max(best, key=lambda row: row[monitor]) if best else None
        self.saved = history[-1]["epoch"] if history else None  # the epoch latest.json points at

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.history.append(row)
        best = self.monitor and (self.best is None or row[self.monitor] > self.best[self.monitor])
        if best:
            self.best = row
        if best or (epoch + 1) % self.every == 0 or epoch + 1 == self.epochs:
            self.save(epoch)

    def on_train_end(self, logs=None):  # EarlyStopping may end the run between checkpoints
        if self.history and self.saved != self.history[-1]["epoch"]:
            self.save(self.history[-1]["epoch"])

    def save(self, epoch):
        folder = os.path.join(self.resume_dir, f"epoch-{epoch:04d}")
        os.makedirs(folder, exist_ok=True)
        save_model(os.path.join(folder, "model.keras"), self.model)
        states = [keras.ops.convert_to_numpy(v) for v in random_states(self.model)]
        save_arrays(os.path.join(folder, RANDOM_STATE_FILE), states)
        save_json(os.path.join(folder, "history.json"), self.history)
        best_epoch = self.best["epoch"] if self.best else epoch
        save_json(os.path.join(self.resume_dir, "latest.json"), {"epoch": epoch, "best_epoch": best_epoch})
        self.saved = interrupted.resume_epoch = epoch  # what an interrupted run would resume after
        self.tidy(epoch)

    def tidy(self, epoch):
        """After `epoch`'s checkpoint: drop the other epochs' folders but the best's, and
        write resume/history.csv from the history. Also what a run resumed after its last
        epoch does (a kill may have landed between latest.json and this)."""
        best_epoch = self.best["epoch"] if self.best else epoch
        for name in os.listdir(self.resume_dir):
            if name.startswith("epoch-") and name not in (f"epoch-{epoch:04d}", f"epoch-{best_epoch:04d}"):
                shutil.rmtree(os.path.join(self.resume_dir, name), ignore_errors=True)
        write_history(os.path.join(self.resume_dir, "history.csv"), self.history)


def write_history(path, rows):
    # A fixed order (epoch, then by name): rows restored from resume/*.json come back with
    # sorted keys, and a resumed run must keep the header of the run it continues.
    columns = sorted({k for row in rows for k in row}, key=lambda k: (k != "epoch", k))
    text = io.StringIO()
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows(rows)
    save_text(path, text.getvalue())


def random_states(model):
    """The model's random-number generators' states (Keras' seed generators, one per
    Dropout or noise layer)."""
    return [v for v in model.variables if v.name == "seed_generator_state"]


def load_resume_point(stage_dir):
    """(model, next_epoch, history) from the last checkpointed epoch, or None."""
    latest = os.path.join(stage_dir, "resume", "latest.json")
    if not os.path.isfile(latest):
        return None
    start_over = f"delete {os.path.join(stage_dir, 'resume')} or pass --retrain=True to start this stage over"
    try:
        with open(latest) as f:
            state = json.load(f)
        folder = os.path.join(stage_dir, "resume", f"epoch-{int(state['epoch']):04d}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{latest} is damaged ({type(e).__name__}: {e}); {start_over}") from None
    try:
        model = keras.models.load_model(os.path.join(folder, "model.keras"))
        states = random_states(model)
        saved = load_arrays(os.path.join(folder, RANDOM_STATE_FILE)) if states else []
        if not fits(saved, states):
            raise ValueError(f"its {RANDOM_STATE_FILE} does not fit the model's random-number generators")
        for variable, value in zip(states, saved):
            variable.assign(value)
        with open(os.path.join(folder, "history.json")) as f:
            history = json.load(f)
    except Exception as e:  # a checkpoint we cannot read is reported, not trained over
        raise UserError(f"cannot resume from {folder} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        f"{start_over}") from None
    return model, state["epoch"] + 1, history


def fit(model, stream, validation, stage_dir, epochs, schedule="cosine", flat_epochs=0,
        patience=10, average=0.0, verbose=None, callbacks=(), checkpoint_every=1):
    """Train `model` (compiled) on `stream` for `epochs`, resuming from `stage_dir/resume`
    when a previous run was killed. Returns the model to keep: the best epoch on the
    validation split when one is given, else the last epoch; with `average` (a decay) > 0
    that epoch's weight average (noisy/averaging.py), which is also what is validated.
    `verbose`: Keras' progress bar (1) on a terminal, one line per epoch (2) in a log,
    unless given. `callbacks`: more Keras callbacks, run after this function's own.
    `checkpoint_every`: save a resume point every k epochs (and the last and best ones).
    No callback of ours runs per batch, so Keras dispatches the steps without waiting."""
    verbose = progress_verbosity() if verbose is None else verbose
    resumed = load_resume_point(stage_dir)
    history, initial_epoch = [], 0
    if resumed:
        compiled, (model, initial_epoch, history) = model, resumed
        require_average(model, stage_dir, average)
        # How fast, not what: the checkpoint's compile settings give way to this run's.
        model.jit_compile, model.steps_per_execution = compiled.jit_compile, compiled.steps_per_execution
        interrupted.resume_epoch = initial_epoch - 1
        # Messages count epochs from 1, as Keras' "Epoch 3/36" lines do; files count from 0.
        print(f"resuming {stage_dir} after epoch {initial_epoch} of {epochs} "
              f"(from {os.path.join(stage_dir, 'resume')})", flush=True)
    elif average:
        model = with_average(model, average)
    monitor = "val_accuracy" if validation is not None else None
    checkpoint = EpochCheckpoint(stage_dir, monitor, history, epochs, checkpoint_every)
    callbacks = [StopOnNaN(), *([SwapInAverage()] if average else []), checkpoint, *callbacks]
    if schedule == "plateau":
        watch = "val_loss" if validation is not None else "loss"
        callbacks += [
            AfterEpoch(flat_epochs, keras.callbacks.ReduceLROnPlateau(monitor=watch, factor=0.1,
                                                                      patience=3, verbose=1)),
            AfterEpoch(flat_epochs, keras.callbacks.EarlyStopping(monitor=watch, patience=patience,
                                                                  verbose=1))]
    if initial_epoch < epochs:
        stream.set_epoch(initial_epoch)
        # Without a distribution strategy Keras' TensorFlow trainer creates the optimizer's and
        # metrics' variables inside the first trace of the train step, and TensorFlow then
        # traces the step a second time (a second XLA compile on a GPU; 5 s of a tiny CPU
        # teacher's 15). Build them first, as Keras does itself under a strategy and under JAX.
        if keras.backend.backend() == "tensorflow" and model._distribute_strategy is None:
            model._symbolic_build(data_batch=stream[0])
        # shuffle=False: the stream shuffles itself by (seed, epoch); Keras' own shuffle of
        # the batch order restarts from the global seed, so a resumed run would differ.
        model.fit(stream, validation_data=validation, epochs=epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=verbose, shuffle=False)
    elif checkpoint.history:  # resumed after the last epoch: nothing to train, its files to finish
        checkpoint.tidy(checkpoint.history[-1]["epoch"])
    if not checkpoint.history:
        raise UserError(f"{stage_dir}: no epoch was trained (--epochs={epochs})")
    kept = checkpoint.history[-1]["epoch"]
    if checkpoint.best is not None and checkpoint.best["epoch"] != kept:
        kept = checkpoint.best["epoch"]
        print(f"keeping epoch {kept + 1} ({monitor} {checkpoint.best[monitor]:.4f}), the best on the validation split",
              flush=True)
        model = keras.models.load_model(os.path.join(stage_dir, "resume", f"epoch-{kept:04d}", "model.keras"))
    return (model.averaged_model() if isinstance(model, Averaged) else model), checkpoint


def progress_verbosity():
    """Keras' `verbose` for a script's output: the progress bar (1) on a terminal, one line
    per epoch (2) when the output goes to a file or a pipe, where a bar's redraws pile up."""
    return 1 if sys.stdout.isatty() else 2
