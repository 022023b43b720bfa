"""Deploys the exported model to a Vertex AI endpoint, or prints what it would deploy.

    python -m trainer.deploy --project P --region R --image IMAGE --model_dir gs://BUCKET/model \
        [--endpoint quickdraw] [--machine_type n1-standard-2] [--min_replicas 1 --max_replicas 2] \
        [--signature single_view] [--display_name NAME] [--dry_run]

Uploads a Vertex AI Model whose custom container is the serving image (`serve.Dockerfile`:
`python -m trainer.serve`), with its port, health and predict routes, and `artifact_uri` the
SavedModel's folder (`--model_dir/export`), which Vertex AI hands the container as
AIP_STORAGE_URI. Then deploys it to the endpoint named `--endpoint` (created when no endpoint
of that display name exists in the region), all traffic to the new model, on dedicated
machines that scale between `--min_replicas` and `--max_replicas`.

`--dry_run` prints {"model": ..., "endpoint": ..., "deployedModel": ...} as the JSON of the
Vertex AI REST API (the bodies of its upload, create and deploy requests) and makes no
network call. The endpoint then answers the same request body as the local server:
`{"instances": [{"drawing": ...}], "parameters": {"top_k": 3}}` (see docs/serving.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys

from google.cloud import aiplatform_v1

from quickdraw import cli
from trainer import serve, vertex

PORT = 8080
PREDICT_ROUTE = "/predict"
HEALTH_ROUTE = "/health"


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    """One model upload and its deployment to an endpoint."""

    project: str
    region: str
    image: str
    model_dir: str  # gs://BUCKET/path holding export/ (or the export itself)
    endpoint: str = "quickdraw"  # the endpoint's display name
    display_name: str = "quickdraw-classifier"  # the model's
    machine_type: str = "n1-standard-2"
    min_replicas: int = 1
    max_replicas: int = 2
    signature: str = "single_view"

    def __post_init__(self):
        required = ("project", "region", "image", "machine_type", "endpoint", "display_name")
        copy = " (copy a local model there: gcloud storage cp -r model gs://...)"
        vertex.check_location(self, required, "model_dir", copy)
        if self.min_replicas < 1:
            raise ValueError(f"--min_replicas must be at least 1, got {self.min_replicas}")
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"--max_replicas ({self.max_replicas}) must be at least --min_replicas "
                f"({self.min_replicas})"
            )
        if self.signature not in serve.SIGNATURES:
            raise ValueError(f"--signature must be one of {', '.join(serve.SIGNATURES)}")
        for flag in ("endpoint", "display_name"):
            vertex.check_display_name(flag, getattr(self, flag))

    @property
    def artifact_uri(self) -> str:
        """The SavedModel's folder: `--model_dir/export`, or `--model_dir` if it is that."""
        folder = self.model_dir.rstrip("/")
        return folder if folder.endswith("/export") else f"{folder}/export"


def build_model(config: DeployConfig) -> aiplatform_v1.Model:
    # The image's ENTRYPOINT is the server; only a choice other than its default needs args.
    args = [] if config.signature == "single_view" else ["--signature", config.signature]
    container = aiplatform_v1.ModelContainerSpec(
        image_uri=config.image,
        args=args,
        ports=[aiplatform_v1.Port(container_port=PORT)],
        predict_route=PREDICT_ROUTE,
        health_route=HEALTH_ROUTE,
    )
    return aiplatform_v1.Model(
        display_name=config.display_name,
        artifact_uri=config.artifact_uri,
        container_spec=container,
    )


def build_endpoint(config: DeployConfig) -> aiplatform_v1.Endpoint:
    return aiplatform_v1.Endpoint(display_name=config.endpoint)


def build_deployed_model(config: DeployConfig, model_name: str = "") -> aiplatform_v1.DeployedModel:
    """The deployment of the uploaded model (`model_name`, known once it is uploaded)."""
    return aiplatform_v1.DeployedModel(
        model=model_name,
        display_name=config.display_name,
        dedicated_resources=aiplatform_v1.DedicatedResources(
            machine_spec=aiplatform_v1.MachineSpec(machine_type=config.machine_type),
            min_replica_count=config.min_replicas,
            max_replica_count=config.max_replicas,
        ),
    )


def dry_run_json(config: DeployConfig) -> str:
    return json.dumps(
        {
            "model": vertex.to_dict(build_model(config)),
            "endpoint": vertex.to_dict(build_endpoint(config)),
            "deployedModel": vertex.to_dict(build_deployed_model(config)),
        },
        indent=2,
    )


def find_or_create_endpoint(client, parent: str, config: DeployConfig) -> str:
    """The resource name of the region's endpoint of that display name, created if missing."""
    wanted = f'display_name="{config.endpoint}"'
    for endpoint in client.list_endpoints(request={"parent": parent, "filter": wanted}):
        logging.info("Endpoint %s (%s) exists", endpoint.name, config.endpoint)
        return endpoint.name
    operation = client.create_endpoint(parent=parent, endpoint=build_endpoint(config))
    endpoint = operation.result()
    logging.info("Created endpoint %s (%s)", endpoint.name, config.endpoint)
    return endpoint.name


def deploy(config: DeployConfig) -> int:
    """Uploads the model, finds or creates the endpoint, deploys; returns the exit code."""

    def upload_and_deploy() -> int:
        options = vertex.client_options(config.region)
        parent = vertex.parent(config.project, config.region)
        models = aiplatform_v1.ModelServiceClient(client_options=options)
        endpoints = aiplatform_v1.EndpointServiceClient(client_options=options)
        logging.info("Uploading %s from %s", config.display_name, config.artifact_uri)
        upload = models.upload_model(parent=parent, model=build_model(config))
        model_name = upload.result().model
        logging.info("Uploaded %s", model_name)
        endpoint_name = find_or_create_endpoint(endpoints, parent, config)
        logging.info("Deploying to %s (this takes 10 to 20 minutes)", endpoint_name)
        deployment = endpoints.deploy_model(
            endpoint=endpoint_name,
            deployed_model=build_deployed_model(config, model_name),
            traffic_split={"0": 100},  # "0": the model this request deploys
        )
        deployed = deployment.result().deployed_model
        logging.info("Deployed model %s to %s", deployed.id, endpoint_name)
        logging.info(
            'Ask it: curl -X POST -H "Authorization: Bearer $(gcloud auth print-access-token)" '
            '-H "Content-Type: application/json" '
            "https://%s-aiplatform.googleapis.com/v1/%s:predict -d @request.json  (endpoint %s)",
            config.region,
            endpoint_name,
            endpoint_name.rsplit("/", 1)[-1],
        )
        return 0

    return vertex.reported(upload_and_deploy)


def build_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m trainer.deploy",
        description="Deploy model_dir/export/ to a Vertex AI endpoint (serving image).",
    )
    vertex.add_location_flags(
        parser, "serving", "model_dir", "gs://BUCKET/path holding export/ (or the export)"
    )
    parser.add_argument(
        "--endpoint", default=DeployConfig.endpoint, help="endpoint display name (found or made)"
    )
    parser.add_argument("--display_name", default=DeployConfig.display_name, help="the model's")
    parser.add_argument("--machine_type", default=DeployConfig.machine_type)
    parser.add_argument("--min_replicas", type=int, default=DeployConfig.min_replicas)
    parser.add_argument("--max_replicas", type=int, default=DeployConfig.max_replicas)
    parser.add_argument(
        "--signature",
        default=DeployConfig.signature,
        help=f"the server's --signature: {' or '.join(serve.SIGNATURES)}",
    )
    parser.add_argument("--dry_run", action="store_true", help="print the deployment as JSON only")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config = vertex.config_from_flags(DeployConfig, args, parser)
    if args.dry_run:
        sys.stdout.write(dry_run_json(config) + "\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return deploy(config)


if __name__ == "__main__":
    sys.exit(main())
