"""`python -m pipeline.flex_template`: stage the pipeline as a Dataflow Flex template.

    python -m pipeline.flex_template --image LAUNCHER_IMAGE \\
        --template_file gs://BUCKET/templates/quickdraw-tfrecords.json

A Flex template is a launcher image (`Dockerfile.flex`: Google's Python launcher with
this package installed) and a spec file that names it. Dataflow starts the image with the
template's parameters as flags (`--input=... --output_dir=...`) and its own Beam options, and
the image runs `python -m pipeline` on them: every run is a new conversion, where a classic
template (`make dataflow-template`) fixes input, output and options when it is staged.

The spec is Dataflow's `ContainerSpec` as JSON, the file `gcloud dataflow flex-template
build` writes. Its parameters are generated from the pipeline's own parser, one per flag,
with the flag's help, whether it is required, and its choices: a flag added to the pipeline
is a parameter of the next staged template, and the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys

from apache_beam.io.filesystems import FileSystems

from pipeline.config import build_parser
from quickdraw import cli

NAME = "Quick, Draw! ndjson to TFRecords"
DESCRIPTION = (
    "Quick, Draw! drawings (ndjson, local to the job or gs://) to shuffled, sharded "
    "TFRecords of tf.train.Example, with stats.json and the bad lines in errors/. "
    "Each parameter is the flag of the same name of `python -m pipeline`."
)


def _pipeline_flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.option_strings and action.dest != "help"]


def parameters(parser: argparse.ArgumentParser) -> list[dict]:
    """One template parameter per flag of `parser`, in the order `--help` lists them."""
    formatter = parser._get_formatter()
    result = []
    for action in _pipeline_flags(parser):
        name = action.option_strings[0].removeprefix("--")
        parameter = {
            "name": name,
            "label": name.replace("_", " ").capitalize(),
            # argparse's own expansion of %(default)s and the like, as --help shows it.
            "helpText": formatter._expand_help(action) if action.help else name,
            "isOptional": not action.required,
        }
        if action.choices:
            choices = "|".join(re.escape(str(choice)) for choice in action.choices)
            parameter["regexes"] = [f"^({choices})$"]
        elif action.type is cli.boolean:
            parameter["regexes"] = ["^(true|false)$"]
        result.append(parameter)
    return result


def template_spec(image: str) -> dict:
    """The spec file's content: the launcher image, the SDK, the parameters."""
    return {
        "image": image,
        "sdkInfo": {"language": "PYTHON"},
        "metadata": {
            "name": NAME,
            "description": DESCRIPTION,
            "parameters": parameters(build_parser()),
        },
    }


def make_parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m pipeline.flex_template",
        description="Write the pipeline's Dataflow Flex template spec, local or gs://.",
    )
    parser.add_argument(
        "--image",
        required=True,
        help="the launcher image built from Dockerfile.flex, as pushed",
    )
    parser.add_argument(
        "--template_file",
        required=True,
        help="where to write the spec: the --template-file-gcs-location of "
        "`gcloud dataflow flex-template run`",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = make_parser()
    args = parser.parse_args(argv)
    if any(character.isspace() for character in args.image) or not args.image.strip():
        parser.error(f"--image {args.image!r} is not an image name")
    spec = json.dumps(template_spec(args.image), indent=2) + "\n"
    try:
        with FileSystems.create(args.template_file) as handle:
            handle.write(spec.encode())
    except Exception as error:  # noqa: BLE001 - Beam raises many kinds for a bad location
        parser.error(f"cannot write --template_file {args.template_file}: {error}")
    logging.info("Flex template spec written to %s (image %s)", args.template_file, args.image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
