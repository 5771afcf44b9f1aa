"""Trains a GumbelSoftmax model under one distribution scenario and reports.

Run as a subprocess by `tests/test_distributed.py`: logical devices (and
`XLA_FLAGS` on JAX) must be configured before the backend initialises, which a
fresh process guarantees. Usage:

    python tests/_distributed_worker.py mirrored
    python tests/_distributed_worker.py multi_worker      # TF_CONFIG set by caller
    python tests/_distributed_worker.py jax_data_parallel # KERAS_BACKEND=jax,
                                                          # XLA_FLAGS=...count=2

Every example of the data set is the same, so every replica gets identical
logits and any difference between the replicas' samples comes from the noise. A
probe layer after the GumbelSoftmax layer records, inside the compiled train
step, the temperature each replica read and the sample each replica drew; after
every step the script writes them, the value `TemperatureAnnealing` assigned and
the value held by each replica's copy of the temperature variable. The last line
of stdout is `RESULT <json>`.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPLICAS = 2
GLOBAL_BATCH = 8
CATEGORIES = 4
FEATURES = 3
EXAMPLES = 16
EPOCHS = 2
# Four steps: the temperature falls from 2 to 0.5 geometrically, a new value at
# every step.
SCHEDULE = {"start": 2.0, "end": 0.5, "steps": 4}


def _init_backend(scenario):
    """Creates the strategy (TensorFlow) or distribution (JAX) before any op."""
    if scenario == "jax_data_parallel":
        import jax
        import keras

        devices = jax.devices()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices)
        )
        return None
    import tensorflow as tf

    if scenario == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS
        )
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if scenario == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown scenario: {scenario}")


def _probe_class(scenario):
    import keras

    if scenario == "jax_data_parallel":

        class Probe(keras.layers.Layer):
            """Records the (global, batch-sharded) sample and the temperature."""

            def __init__(self, gumbel, **kwargs):
                super().__init__(**kwargs)
                self.gumbel = gumbel
                self.seen_temperature = self.add_weight(
                    shape=(REPLICAS,), initializer="zeros", trainable=False
                )
                self.seen_sample = self.add_weight(
                    shape=(REPLICAS, GLOBAL_BATCH // REPLICAS, CATEGORIES),
                    initializer="zeros",
                    trainable=False,
                )

            def call(self, sample, training=None):
                if training:
                    # DataParallel shards the batch axis over the devices in
                    # order: rows [r * b, (r + 1) * b) are device r's share.
                    self.seen_sample.assign(
                        keras.ops.reshape(sample, self.seen_sample.shape)
                    )
                    self.seen_temperature.assign(
                        keras.ops.ones((REPLICAS,)) * self.gumbel.temperature
                    )
                return sample

        return Probe

    import tensorflow as tf

    class Probe(keras.layers.Layer):
        """Each replica writes its own row; SUM aggregation gathers the rows."""

        def __init__(self, gumbel, **kwargs):
            super().__init__(**kwargs)
            self.gumbel = gumbel
            self.seen_temperature = self.add_weight(
                shape=(REPLICAS,),
                initializer="zeros",
                trainable=False,
                aggregation="sum",
            )
            self.seen_sample = self.add_weight(
                shape=(REPLICAS, GLOBAL_BATCH // REPLICAS, CATEGORIES),
                initializer="zeros",
                trainable=False,
                aggregation="sum",
            )

        def call(self, sample, training=None):
            if training:
                context = tf.distribute.get_replica_context()
                row = tf.one_hot(context.replica_id_in_sync_group, REPLICAS)
                self.seen_temperature.assign(row * self.gumbel.temperature)
                self.seen_sample.assign(row[:, None, None] * sample[None])
            return sample

    return Probe


def _replica_temperatures(strategy, variable):
    """The value held by every local copy of the temperature variable."""
    if strategy is None:
        return [float(shard.data) for shard in variable.value.addressable_shards]
    return [
        float(copy.numpy())
        for copy in strategy.experimental_local_results(variable.value)
    ]


def _MultiWorkerModel():
    import keras

    class MultiWorkerModel(keras.Model):
        """Works around Keras 3 `fit` under MultiWorkerMirroredStrategy.

        `fit` reduces every log across workers with `strategy.reduce("MEAN", v,
        axis=0)`, which fails for the scalar loss (keras-team/keras#20585);
        giving each log a leading axis of one makes that reduction valid.
        """

        def train_step(self, data):
            logs = super().train_step(data)
            return {
                name: keras.ops.reshape(value, (1,)) for name, value in logs.items()
            }

    return MultiWorkerModel


def main(scenario):
    strategy = _init_backend(scenario)

    import keras
    import numpy as np

    import keras_gumbel

    def build():
        inputs = keras.Input((FEATURES,))
        logits = keras.layers.Dense(CATEGORIES)(inputs)
        gumbel = keras_gumbel.GumbelSoftmax(temperature=5.0, seed=7, name="gumbel")
        probe = _probe_class(scenario)(gumbel, name="probe")
        model_class = _MultiWorkerModel() if scenario == "multi_worker" else keras.Model
        model = model_class(inputs, probe(gumbel(logits)))
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        return model

    if strategy is None:
        model = build()
    else:
        with strategy.scope():
            model = build()

    records = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            gumbel = self.model.get_layer("gumbel")
            self.assigned = _replica_temperatures(strategy, gumbel.temperature)

        def on_train_batch_end(self, batch, logs=None):
            probe = self.model.get_layer("probe")
            records.append(
                {
                    "step": len(records),
                    "assigned": self.assigned,
                    "seen": keras.ops.convert_to_numpy(
                        probe.seen_temperature.value
                    ).tolist(),
                    "samples": keras.ops.convert_to_numpy(
                        probe.seen_sample.value
                    ).tolist(),
                    "logged": float(logs["temperature"]),
                }
            )

    schedule = keras_gumbel.schedules.GeometricDecay(**SCHEDULE)
    x = np.ones((EXAMPLES, FEATURES), dtype="float32")
    y = np.eye(CATEGORIES, dtype="float32")[np.zeros(EXAMPLES, dtype=int)]
    if scenario == "multi_worker":
        # Keras 3's `fit` fails under MultiWorkerMirroredStrategy: its symbolic
        # build reduces a per-replica batch, which that strategy rejects
        # (keras-team/keras#20585). Build from a host batch instead; the
        # training step itself is unaffected.
        with strategy.scope():
            model._symbolic_build(data_batch=(x[:GLOBAL_BATCH], y[:GLOBAL_BATCH]))
        model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    # Record comes after TemperatureAnnealing, so it sees the value just assigned.
    model.fit(
        x,
        y,
        batch_size=GLOBAL_BATCH,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=[keras_gumbel.TemperatureAnnealing(schedule), Record()],
    )
    result = {
        "backend": keras.backend.backend(),
        "replicas": (
            len(model.get_layer("gumbel").temperature.value.sharding.device_set)
            if strategy is None
            else strategy.num_replicas_in_sync
        ),
        "schedule": [float(schedule(step)) for step in range(len(records))],
        "records": records,
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
