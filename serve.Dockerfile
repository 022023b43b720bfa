# The prediction server for Vertex AI (or any machine that runs a container): CPU only.
#
# The same command as `make serve`, python -m trainer.serve, on all interfaces: Vertex AI sets
# AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE and AIP_STORAGE_URI (the model's gs://
# folder, read by TensorFlow directly), so the container needs no arguments. tensorflow-cpu
# loads the SavedModel (it brings Keras, which the trainer's modules import); the `serve`
# extra is the web stack. The build context is the one .dockerignore gives the trainer's image.
FROM python:3.11-slim

WORKDIR /app
COPY setup.py pyproject.toml ./
COPY quickdraw/ quickdraw/
COPY pipeline/ pipeline/
COPY trainer/ trainer/
RUN pip install --no-cache-dir "tensorflow-cpu==2.21.*" "./[serve]" \
    && useradd --create-home --uid 1000 server
USER 1000:1000
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["python", "-m", "trainer.serve", "--host", "0.0.0.0"]
