"""Trains a tiny GumbelSoftmax model with BackupAndRestore and records every step.

Run as a subprocess by `tests/test_resume.py`, because the test needs a process
that dies by SIGKILL and a fresh one that resumes from the backup it left.
Usage:

    python tests/_resume_worker.py BACKUP_DIR RECORDS_FILE [KILL_AFTER]

`KILL_AFTER` makes the process SIGKILL itself once the optimizer has taken that
many steps (after `BackupAndRestore` has had its say on that step). Every step
appends one JSON line to `RECORDS_FILE`: the epoch and batch index, the
optimizer's iteration count before the step, the temperature the step used, a
sample of the GumbelSoftmax layer in training mode on fixed probe logits and
the model's weights after the step. A run that completes appends a last line
`{"finished": true, ...}`.
"""

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_gumbel  # noqa: E402

FEATURES = 3
CATEGORIES = 4
BATCH_SIZE = 4
STEPS_PER_EPOCH = 4
EPOCHS = 3
# The layer starts at 5 and the schedule sets a new, smaller value at every
# step, so a temperature taken from the wrong step cannot go unnoticed.
INITIAL_TEMPERATURE = 5.0
SCHEDULE = {"start": 2.0, "end": 0.5, "steps": STEPS_PER_EPOCH * EPOCHS}
SAVE_FREQ = 3
SEED = 7


class Recorder(keras.callbacks.Callback):
    """Writes one line per step to `path`; SIGKILLs the process after `kill_after`."""

    def __init__(self, path, gumbel, probe_logits, kill_after):
        super().__init__()
        self.path = path
        self.gumbel = gumbel
        self.probe_logits = probe_logits
        self.kill_after = kill_after

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        # Reading `self.model` first syncs the JAX training state into the
        # variables, and makes the next step read the seed state the probe
        # advances. Runs after TemperatureAnnealing, so it sees this step's value.
        iterations = keras.ops.copy(self.model.optimizer.iterations)
        sample = self.gumbel(self.probe_logits, training=True)
        self.record = {
            "epoch": self.epoch,
            "batch": batch,
            "iteration": int(_numpy(iterations)),
            "temperature": float(_numpy(self.gumbel.temperature)),
            "sample": _numpy(sample).tolist(),
        }

    def on_train_batch_end(self, batch, logs=None):
        weights = [weight.ravel() for weight in self.model.get_weights()]
        self.record["weights"] = np.concatenate(weights).tolist()
        _append(self.path, self.record)
        if self.record["iteration"] + 1 == self.kill_after:
            # A real crash: no exception, no `on_train_end`, no cleanup.
            os.kill(os.getpid(), signal.SIGKILL)


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def _append(path, record):
    # Flushed line by line so that the lines written before SIGKILL survive it.
    with open(path, "a") as file:
        file.write(json.dumps(record) + "\n")


def main(backup_dir, records_path, kill_after=None):
    # Every random draw is seeded explicitly, which spares
    # `keras.utils.set_random_seed` and the TensorFlow import it costs on the
    # other backends.
    rng = np.random.default_rng(SEED)
    examples = BATCH_SIZE * STEPS_PER_EPOCH
    x = rng.normal(size=(examples, FEATURES)).astype("float32")
    y = np.eye(CATEGORIES, dtype="float32")[np.arange(examples) % CATEGORIES]
    probe_logits = rng.normal(size=(2, CATEGORIES)).astype("float32")

    inputs = keras.Input((FEATURES,))
    logits = keras.layers.Dense(
        CATEGORIES, kernel_initializer=keras.initializers.GlorotUniform(seed=SEED)
    )(inputs)
    gumbel = keras_gumbel.GumbelSoftmax(
        temperature=INITIAL_TEMPERATURE, seed=SEED, name="gumbel"
    )
    model = keras.Model(inputs, gumbel(logits))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="categorical_crossentropy")
    callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir, save_freq=SAVE_FREQ),
        keras_gumbel.TemperatureAnnealing(
            keras_gumbel.schedules.GeometricDecay(**SCHEDULE)
        ),
        Recorder(records_path, gumbel, probe_logits, kill_after),
    ]
    # No shuffling: the order of the batches must not depend on the process.
    history = model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=EPOCHS,
        shuffle=False,
        callbacks=callbacks,
        verbose=0,
    )
    _append(
        records_path,
        {
            "finished": True,
            "backend": keras.backend.backend(),
            "epochs": history.epoch,
            "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
        },
    )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(*arguments[:2], *(int(value) for value in arguments[2:]))
