# The trainer on Vertex AI GPUs: Vertex AI passes the trainer's flags as container args.
#
# A slim Python with TensorFlow's own `and-cuda` extra, rather than tensorflow/tensorflow:*-gpu:
# pip brings the CUDA and cuDNN wheels that TensorFlow 2.21 declares, the Python is the one of
# the development .venv (3.11), and the host needs only the NVIDIA driver, which Vertex AI's
# GPU machines have.
FROM python:3.11-slim

WORKDIR /app
COPY setup.py pyproject.toml ./
COPY quickdraw/ quickdraw/
COPY pipeline/ pipeline/
COPY trainer/ trainer/
# Tuning trials write their metric to CLOUD_ML_HP_METRIC_FILE under /var/hypertune, which an
# unprivileged user could not create.
RUN pip install --no-cache-dir "tensorflow[and-cuda]==2.21.*" "./[trainer]" \
    && useradd --create-home --uid 1000 trainer \
    && install -d -o trainer -g trainer /var/hypertune
USER 1000:1000
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["python", "-m", "trainer"]
