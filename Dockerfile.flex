# The pipeline's Dataflow Flex template launcher (`make dataflow-flex-template`).
#
# Google's Python 3.11 launcher image with this package and Beam installed. When a template
# runs, Dataflow starts this image on a launcher VM, which runs FLEX_TEMPLATE_PYTHON_PY_FILE
# (the very entry point of `python -m pipeline`) with the template's parameters as
# `--name=value` flags and Dataflow's own options (runner, project, region, staging); the
# pipeline checks them, builds the job and hands it to Dataflow. FLEX_TEMPLATE_PYTHON_SETUP_FILE
# has the job's workers install this package from setup.py, as `make dataflow` does.
#
# A dated tag rather than `latest`: Google's page "Flex Templates base images" lists newer
# ones (`make dataflow-flex-template FLEX_LAUNCHER_TAG=...`).
ARG LAUNCHER_TAG=20230622_RC00
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:${LAUNCHER_TAG}

WORKDIR /template
COPY setup.py pyproject.toml ./
COPY quickdraw/ quickdraw/
COPY pipeline/ pipeline/
RUN pip install --no-cache-dir "./[pipeline]"
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipeline/__main__.py \
    FLEX_TEMPLATE_PYTHON_SETUP_FILE=/template/setup.py \
    PYTHONUNBUFFERED=1
