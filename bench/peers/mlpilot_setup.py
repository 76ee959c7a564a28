"""Register and deploy one joblib model into a fresh mlpilot home, using the public SDK (run in mlpilot's venv).

Usage: python mlpilot_setup.py HOME NAME MODEL_PATH SAMPLE_NPY [--batching | --no-batching]
"""

from __future__ import annotations

import json
import sys

import numpy as np

from mlpilot import BatchingOptions, Client, RuntimeOptions


def main(argv: list[str]) -> None:
    home, name, model_path, sample_path = argv[:4]
    batching = "--batching" in argv[4:]
    no_batching = "--no-batching" in argv[4:]
    sample = np.load(sample_path)
    with Client(home=home) as client:
        version = client.register_model(name, model_path, sample=sample, trust_pickle=True)  # the harness's own file
        if no_batching:
            deployment = client.deploy(name, version.ref, runtime=RuntimeOptions(batching=None))
        elif batching:
            runtime = RuntimeOptions(batching=BatchingOptions(max_batch_size=32))
            deployment = client.deploy(name, version.ref, runtime=runtime)
        else:
            deployment = client.deploy(name, version.ref)
        # The last line is what the benchmark records: the runtime options the deployment really got.
        effective = deployment.spec.variants[0].runtime.model_dump(mode="json")
        print(json.dumps({"model": version.ref, "flavor": version.flavor, "runtime": effective}))


if __name__ == "__main__":
    main(sys.argv[1:])
