"""Register and deploy one joblib model into a fresh mlpilot home, using the public SDK (run in mlpilot's venv).

Usage: python mlpilot_setup.py HOME NAME MODEL_PATH SAMPLE_NPY [--batching]
"""

from __future__ import annotations

import sys

import numpy as np

from mlpilot import BatchingOptions, Client, RuntimeOptions


def main(argv: list[str]) -> None:
    home, name, model_path, sample_path = argv[:4]
    batching = "--batching" in argv[4:]
    sample = np.load(sample_path)
    with Client(home=home) as client:
        version = client.register_model(name, model_path, sample=sample)
        if batching:
            runtime = RuntimeOptions(batching=BatchingOptions(max_batch_size=32))
            client.deploy(name, version.ref, runtime=runtime)
        else:
            client.deploy(name, version.ref)
        print(f"deployed {version.ref} as {name!r} (batching={batching})")


if __name__ == "__main__":
    main(sys.argv[1:])
