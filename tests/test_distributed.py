"""GumbelSoftmax and TemperatureAnnealing under data-parallel training.

Each scenario trains in a fresh subprocess (`tests/_distributed_worker.py`),
because logical devices and `XLA_FLAGS` must be set before the backend starts.
The worker feeds identical examples to two replicas, starts the layer at
temperature 5 and anneals it from 2 to 0.5 over four steps, and records inside
the compiled train step what every replica read and drew. The classic bugs this
guards against: a temperature assigned on one replica only (or not reaching the
compiled step at all), and every replica drawing the same noise.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

WORKER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_distributed_worker.py"
)
# Generous, far above a worker's run time, as the machine may be shared.
TIMEOUT = 300
REPLICAS = 2
STEPS = 4
INITIAL_TEMPERATURE = 5.0


def _environment(backend, **extra):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update(
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(
            [os.path.dirname(os.path.dirname(WORKER)), env.get("PYTHONPATH", "")]
        ),
        **extra,
    )
    return env


def _result(process, stdout, stderr):
    assert process.returncode == 0, f"worker failed:\n{stderr[-4000:]}"
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"worker printed no result:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def _run(scenario, env):
    process = subprocess.Popen(
        [sys.executable, WORKER, scenario],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    return _result(process, stdout, stderr)


def _free_ports(count):
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _check_training(result, copies_per_process):
    """The checks every scenario must pass, on one process's report."""
    assert result["replicas"] == REPLICAS
    schedule = np.asarray(result["schedule"])
    records = result["records"]
    assert len(records) == STEPS
    # A new temperature at every step, none equal to the initial one, so a
    # missed assignment cannot go unnoticed.
    assert np.all(np.diff(schedule) < 0) and schedule[0] < INITIAL_TEMPERATURE
    for record, expected in zip(records, schedule, strict=True):
        # Every local copy of the variable holds the value the callback set ...
        np.testing.assert_allclose(
            record["assigned"], [expected] * copies_per_process, rtol=1e-6
        )
        # ... and every replica read that value inside the compiled step.
        np.testing.assert_allclose(record["seen"], [expected] * REPLICAS, rtol=1e-6)
        np.testing.assert_allclose(record["logged"], expected, rtol=1e-6)
        samples = np.asarray(record["samples"])
        assert samples.shape[0] == REPLICAS
        assert np.all(samples > 0)
        np.testing.assert_allclose(samples.sum(axis=-1), 1.0, rtol=1e-5)
        # The inputs, hence the logits, are identical on both replicas: only
        # independent noise makes their samples differ. Identical noise would
        # give bit-identical samples; independent draws differ by ~0.1.
        assert np.max(np.abs(samples[0] - samples[1])) > 1e-3, (
            f"step {record['step']}: both replicas drew the same noise"
        )
    # Fresh noise at every step on each replica as well.
    for before, after in zip(records[:-1], records[1:], strict=True):
        assert not np.allclose(before["samples"], after["samples"])


tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute scenario: runs in the TensorFlow test process",
)


@tensorflow_only
def test_mirrored_strategy_two_logical_cpus():
    result = _run("mirrored", _environment("tensorflow"))
    assert result["backend"] == "tensorflow"
    _check_training(result, copies_per_process=REPLICAS)


@tensorflow_only
def test_multi_worker_mirrored_strategy_two_processes_on_localhost():
    ports = _free_ports(REPLICAS)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(REPLICAS):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        env = _environment("tensorflow", TF_CONFIG=json.dumps(tf_config))
        processes.append(
            subprocess.Popen(
                [sys.executable, WORKER, "multi_worker"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [process.communicate(timeout=TIMEOUT) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    results = [
        _result(process, stdout, stderr)
        for process, (stdout, stderr) in zip(processes, outputs, strict=True)
    ]
    for result in results:
        # One replica per worker process: each holds one copy of the variable.
        _check_training(result, copies_per_process=1)
    # The probe's rows are all-reduced, so both workers saw the whole picture.
    assert results[0]["records"] == results[1]["records"]


@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="keras.distribution.DataParallel scenario: runs in the JAX test process",
)
def test_jax_data_parallel_two_host_devices():
    env = _environment(
        "jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_PLATFORMS="cpu",
    )
    result = _run("jax_data_parallel", env)
    assert result["backend"] == "jax"
    _check_training(result, copies_per_process=REPLICAS)
