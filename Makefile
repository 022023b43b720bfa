# Quick, Draw! sketch classifier. `make help` lists the targets and the variables they read.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Written by `make install` once pip has succeeded: every target that runs the package's code
# checks it first, so that a fresh clone says what to do rather than print a traceback.
INSTALLED = $(VENV)/.installed
NEEDS_INSTALL = @test -f "$(INSTALLED)" || { echo "make $@: $(VENV) is not set up: run make install first"; exit 2; }; test "$(INSTALLED)" -nt setup.py || { echo "make $@: setup.py changed since the last make install: run make install again"; exit 2; }

# Data: the public bucket by default; offline, point INPUT at local ndjson files.
INPUT ?= gs://quickdraw_dataset/full/simplified/*.ndjson
# A small subset by default, so `make all` runs in minutes; CATEGORIES= (empty) takes all.
CATEGORIES ?= bear,beard,bird,bowtie,circle,cookie,crab,dog,dragon,ear,eye,eyeglasses,face,hat,headphones,hot dog,monkey,moustache,mouth,necklace,nose,sandwich,sock,wine bottle,wine glass,zigzag
TRAIN_PER_CLASS ?= 120
EVAL_PER_CLASS ?= 30
DATA_DIR ?= data
PIPELINE_ARGS ?=

# Training: the laptop recipe by default (TRAIN_PRESET=tutorial for the tutorial's).
MODEL_DIR ?= model
TRAIN_PRESET ?= local
TRAIN_ARGS ?=
# Default: 2 drawings of each class that `make data` never used (pipeline.sample: the ones
# right after its quotas, read from INPUT, local or gs://).
PREDICT_SAMPLE = $(DATA_DIR)/predict_sample.ndjson
PREDICT_FILES ?= $(PREDICT_SAMPLE)

# Cloud.
PROJECT ?= $(shell gcloud config get-value project 2>/dev/null)
REGION ?= us-central1
BUCKET ?=
REPO ?= quickdraw
TAG ?= latest
IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(REPO)/trainer:$(TAG)
ARGS ?=
DATAFLOW_ARGS ?= --machine_type=n2-standard-4 --max_num_workers=32 --num_shards=1000
SUBMIT_ARGS ?=
# Serving: the server's flags, the serving image, and trainer.deploy's own flags.
SERVE_ARGS ?=
SERVE_IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(REPO)/server:$(TAG)
DEPLOY_ARGS ?=
FLEX_IMAGE ?= $(REGION)-docker.pkg.dev/$(PROJECT)/$(REPO)/pipeline-launcher:$(TAG)
FLEX_LAUNCHER_TAG ?= 20230622_RC00
FLEX_TEMPLATE ?= gs://$(BUCKET)/templates/quickdraw-tfrecords.json

CATEGORY_FLAG = $(if $(strip $(CATEGORIES)),--categories "$(CATEGORIES)")

.DEFAULT_GOAL := help
.PHONY: help install all data train report predict serve test lint bench image push \
	serve-image push-serve dataflow dataflow-template dataflow-flex-template submit deploy clean

help: ## List the targets and the variables they read.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "} {printf "  make %-23s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY) ## Create .venv and install the package with every extra (PYTHON).
	$(PY) -m pip install --quiet -e ".[dev]"
	touch "$(INSTALLED)"

all: data train predict ## Local end to end: data, train, evaluate, predict (INPUT, CATEGORIES, DATA_DIR, MODEL_DIR).

data: ## Run the Beam pipeline locally (INPUT, CATEGORIES, TRAIN_PER_CLASS, EVAL_PER_CLASS, DATA_DIR, PIPELINE_ARGS).
	$(NEEDS_INSTALL)
	$(PY) -m pipeline --input "$(INPUT)" --output_dir "$(DATA_DIR)" $(CATEGORY_FLAG) \
		--train_per_class $(TRAIN_PER_CLASS) --eval_per_class $(EVAL_PER_CLASS) \
		--overwrite $(PIPELINE_ARGS)

train: ## Train, evaluate, export and write the report locally (DATA_DIR, MODEL_DIR, TRAIN_PRESET, TRAIN_ARGS).
	$(NEEDS_INSTALL)
	$(PY) -m trainer --preset $(TRAIN_PRESET) \
		--training_data "$(DATA_DIR)/training.tfrecord-?????-of-?????" \
		--eval_data "$(DATA_DIR)/eval.tfrecord-?????-of-?????" \
		--classes_file "$(DATA_DIR)/training.tfrecord.classes" \
		--model_dir "$(MODEL_DIR)" $(TRAIN_ARGS)

report: ## Rebuild MODEL_DIR/report/index.html, the training report (MODEL_DIR, DATA_DIR); make train writes it too.
	$(NEEDS_INSTALL)
	$(PY) -m trainer.report --model_dir "$(MODEL_DIR)" --data_dir "$(DATA_DIR)"

predict: ## Classify drawings with the exported model (MODEL_DIR, PREDICT_FILES; by default a sample of INPUT).
	$(NEEDS_INSTALL)
	$(if $(filter $(PREDICT_SAMPLE),$(PREDICT_FILES)),$(PY) -m pipeline.sample --input "$(INPUT)" \
		--classes_file "$(MODEL_DIR)/export/classes.txt" --train_per_class $(TRAIN_PER_CLASS) \
		--eval_per_class $(EVAL_PER_CLASS) --output "$(PREDICT_SAMPLE)")
	$(PY) -m trainer.predict --model_dir "$(MODEL_DIR)" --top_k 3 $(PREDICT_FILES)

serve: ## Serve MODEL_DIR's export and the page to draw on at http://127.0.0.1:8080/ (MODEL_DIR, SERVE_ARGS).
	$(NEEDS_INSTALL)
	$(PY) -m trainer.serve --model_dir "$(MODEL_DIR)" $(SERVE_ARGS)

test: ## Run the test suite (offline; real drawings from ../shared/quickdraw when present).
	$(NEEDS_INSTALL)
	$(PY) -m pytest

lint: ## ruff on the Python code, hadolint on the Dockerfiles.
	$(NEEDS_INSTALL)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/hadolint Dockerfile serve.Dockerfile Dockerfile.flex

bench: ## Measure the simplification, the pipeline, the trainer and the server against their baselines (prints tables).
	$(NEEDS_INSTALL)
	$(PY) -m bench

image: ## Build the training container for Vertex AI's linux/amd64 machines (IMAGE; needs a Docker engine).
	docker build --platform linux/amd64 -t "$(IMAGE)" .

push: image ## Push the training container to Artifact Registry (IMAGE).
	docker push "$(IMAGE)"

serve-image: ## Build the serving container (serve.Dockerfile, CPU) for Vertex AI (SERVE_IMAGE; needs a Docker engine).
	docker build --platform linux/amd64 -f serve.Dockerfile -t "$(SERVE_IMAGE)" .

push-serve: serve-image ## Push the serving container to Artifact Registry (SERVE_IMAGE).
	docker push "$(SERVE_IMAGE)"

dataflow: ## Convert the whole public bucket on Dataflow into gs://BUCKET/data (PROJECT, REGION, BUCKET, DATAFLOW_ARGS).
	$(NEEDS_INSTALL)
	@test -n "$(PROJECT)" -a -n "$(BUCKET)" || { echo "make dataflow needs PROJECT= and BUCKET="; exit 2; }
	$(PY) -m pipeline --input "$(INPUT)" --output_dir "gs://$(BUCKET)/data" --split hash \
		--runner DataflowRunner --project "$(PROJECT)" --region "$(REGION)" \
		--temp_location "gs://$(BUCKET)/tmp" --staging_location "gs://$(BUCKET)/staging" \
		--setup_file ./setup.py --experiments use_runner_v2 $(DATAFLOW_ARGS) $(PIPELINE_ARGS)

dataflow-template: ## Stage the whole-bucket job as a classic template, its options fixed (PROJECT, REGION, BUCKET).
	$(NEEDS_INSTALL)
	@test -n "$(PROJECT)" -a -n "$(BUCKET)" || { echo "make dataflow-template needs PROJECT= and BUCKET="; exit 2; }
	$(PY) -m pipeline --input "$(INPUT)" --output_dir "gs://$(BUCKET)/data" --split hash \
		--runner DataflowRunner --project "$(PROJECT)" --region "$(REGION)" \
		--temp_location "gs://$(BUCKET)/tmp" --staging_location "gs://$(BUCKET)/staging" \
		--template_location "gs://$(BUCKET)/templates/quickdraw-tfrecords" \
		--setup_file ./setup.py --experiments use_runner_v2 $(DATAFLOW_ARGS) $(PIPELINE_ARGS)

dataflow-flex-template: ## Build and push the pipeline's Flex template launcher and stage its spec (PROJECT, REGION, BUCKET, FLEX_IMAGE, FLEX_TEMPLATE).
	$(NEEDS_INSTALL)
	@test -n "$(PROJECT)" -a -n "$(BUCKET)" || { echo "make dataflow-flex-template needs PROJECT= and BUCKET="; exit 2; }
	docker build --platform linux/amd64 -f Dockerfile.flex \
		--build-arg LAUNCHER_TAG=$(FLEX_LAUNCHER_TAG) -t "$(FLEX_IMAGE)" .
	docker push "$(FLEX_IMAGE)"
	$(PY) -m pipeline.flex_template --image "$(FLEX_IMAGE)" --template_file "$(FLEX_TEMPLATE)"

submit: ## Submit a Vertex AI training job (PROJECT, REGION, IMAGE, BUCKET; SUBMIT_ARGS e.g. --dry_run, --workers 2, --hyperparameter_tuning; ARGS: trainer flags).
	$(NEEDS_INSTALL)
	@test -n "$(PROJECT)" -a -n "$(BUCKET)" || { echo "make submit needs PROJECT= and BUCKET="; exit 2; }
	$(PY) -m trainer.submit --project "$(PROJECT)" --region "$(REGION)" --image "$(IMAGE)" \
		--output_dir "gs://$(BUCKET)/runs/$$(date +%Y%m%d-%H%M%S)" $(SUBMIT_ARGS) -- \
		--training_data "/gcs/$(BUCKET)/data/training.tfrecord-?????-of-?????" \
		--eval_data "/gcs/$(BUCKET)/data/eval.tfrecord-?????-of-?????" \
		--classes_file "/gcs/$(BUCKET)/data/training.tfrecord.classes" $(ARGS)

deploy: ## Deploy MODEL_DIR (gs://) to a Vertex AI endpoint with the serving image (PROJECT, REGION, SERVE_IMAGE, MODEL_DIR; DEPLOY_ARGS e.g. --dry_run, --endpoint NAME).
	$(NEEDS_INSTALL)
	@test -n "$(PROJECT)" || { echo "make deploy needs PROJECT="; exit 2; }
	$(PY) -m trainer.deploy --project "$(PROJECT)" --region "$(REGION)" --image "$(SERVE_IMAGE)" \
		--model_dir "$(MODEL_DIR)" $(DEPLOY_ARGS)

clean: ## Remove local outputs (DATA_DIR, MODEL_DIR) and caches; keeps .venv.
	rm -rf "$(DATA_DIR)" "$(MODEL_DIR)" bench_output .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
