"""What `trainer.submit` and `trainer.deploy` share about Vertex AI: the checks on a project,
region, image and Cloud Storage path, the regional API's address, the REST API's JSON of a
request, and one logged line for each way a call can fail."""

from __future__ import annotations

import dataclasses
import logging
import re

from google.protobuf import json_format

_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
_GCS_PATH = re.compile(r"gs://[a-z0-9][a-z0-9._-]*[a-z0-9](/\S*)?")
DISPLAY_NAME_MAX = 128  # characters of a Vertex AI resource's display name
LOGIN = "run `gcloud auth application-default login`"


def check_location(config, required: tuple[str, ...], gcs_flag: str, gcs_hint: str = "") -> None:
    """ValueError naming the flag unless each `required` field of `config` is set, its region
    is a Vertex AI region, its `gcs_flag` field is a gs:// path and its image has no space."""
    for flag in required:
        if not getattr(config, flag).strip():
            raise ValueError(f"--{flag} is missing or empty")
    if not _REGION.fullmatch(config.region):
        raise ValueError(f"--region {config.region!r} is not a Vertex AI region like us-central1")
    path = getattr(config, gcs_flag)
    if not _GCS_PATH.fullmatch(path):
        raise ValueError(
            f"--{gcs_flag} must be a Cloud Storage path gs://BUCKET/..., got {path!r}{gcs_hint}"
        )
    if any(character.isspace() for character in config.image):
        raise ValueError(f"--image {config.image!r} contains whitespace")


def add_location_flags(parser, image: str, path_flag: str, path_help: str) -> None:
    """The flags every Vertex AI command starts with: --project, --region, --image (`image`
    names the container) and its Cloud Storage folder, `path_flag`."""
    parser.add_argument("--project", required=True, help="GCP project id")
    parser.add_argument("--region", required=True, help="Vertex AI region, e.g. us-central1")
    parser.add_argument("--image", required=True, help=f"the {image} container's image URI")
    parser.add_argument(f"--{path_flag}", required=True, help=path_help)


def check_display_name(flag: str, name: str) -> None:
    if len(name) > DISPLAY_NAME_MAX:
        raise ValueError(f"--{flag} is longer than {DISPLAY_NAME_MAX} characters")


def parent(project: str, region: str) -> str:
    return f"projects/{project}/locations/{region}"


def client_options(region: str) -> dict:
    """The region's own API address, where Vertex AI keeps that region's resources."""
    return {"api_endpoint": f"{region}-aiplatform.googleapis.com"}


def to_dict(message) -> dict:
    """The REST API's JSON of a request's message: camelCase field names, enum names, no
    field left at its default."""
    return json_format.MessageToDict(type(message).pb(message))


def reported(call) -> int:
    """`call()`'s exit code, or 1 after one logged line when it fails for want of credentials
    or with an error from Vertex AI."""
    import google.auth.exceptions
    from google.api_core import exceptions as api_exceptions

    try:
        return call()
    except google.auth.exceptions.DefaultCredentialsError:
        logging.error("no Google Cloud credentials: %s", LOGIN)
    except google.auth.exceptions.GoogleAuthError as error:
        logging.error("authentication failed (%s): %s", error, LOGIN)
    except api_exceptions.GoogleAPIError as error:
        logging.error("Vertex AI: %s", str(error).replace("\n", " "))
    return 1


def config_from_flags(config_class, args, parser, **values):
    """`config_class` (a dataclass) from the parsed flags named like its fields, and `values`;
    a ValueError from its checks becomes the parser's one-line error, exit status 2."""
    flags = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(config_class)
        if hasattr(args, field.name)
    }
    try:
        return config_class(**{**flags, **values})
    except ValueError as error:
        parser.error(str(error))
