"""Flags: the tutorial's names and defaults, presets, validation on entry, Vertex paths."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from quickdraw import schema
from tests.support.trainer_fixtures import REPO, TINY_FLAGS, data_flags, trainer_env
from trainer import config as config_lib

REQUIRED = [
    "--training_data=data/training.tfrecord-*",
    "--eval_data=data/eval.tfrecord-*",
    "--classes_file=data/training.tfrecord.classes",
    "--model_dir=out",
]


@pytest.fixture(autouse=True)
def no_vertex_environment(monkeypatch):
    for name in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_tutorials():
    config = config_lib.parse_flags(REQUIRED)
    assert (config.num_layers, config.num_nodes) == (3, 128)
    assert (config.num_conv, config.conv_len) == ((48, 64, 96), (5, 5, 3))
    assert (config.cell_type, config.batch_norm, config.dropout) == ("lstm", False, 0.3)
    assert (config.learning_rate, config.gradient_clipping_norm) == (0.0001, 9.0)
    assert (config.batch_size, config.steps) == (8, 100000)
    assert (config.lr_schedule, config.warmup_steps, config.augment) == ("constant", 0, False)
    # The tutorial's model reads the ink alone, so its own records suffice.
    assert (config.positions, config.aspect_ratio, config.directions) == (False, False, False)
    assert config.test_time_views == 1  # each drawing alone, as the tutorial predicted
    assert config.checkpoint_dir == "out/checkpoints"
    assert config.log_dir == "out/logs"


def test_tutorial_command_line_with_spaces_and_equals():
    config = config_lib.parse_flags(
        REQUIRED
        + ["--num_layers", "2", "--num_conv=16,32", "--conv_len", "7,3", "--cell_type=gru"]
        + ["--batch_norm", "--dropout=0", "--steps", "5"]
    )
    assert config.num_layers == 2
    assert config.num_conv == (16, 32) and config.conv_len == (7, 3)
    assert config.cell_type == "gru" and config.batch_norm is True and config.dropout == 0.0
    assert config_lib.parse_flags(REQUIRED + ["--batch_norm=false"]).batch_norm is False


def test_local_preset_and_explicit_flags_win():
    local = config_lib.parse_flags(REQUIRED + ["--preset=local"])
    assert local.preset == "local"
    for name, value in config_lib.LOCAL.items():
        assert getattr(local, name) == value
    assert local.batch_size != config_lib.TUTORIAL["batch_size"]
    overridden = config_lib.parse_flags(REQUIRED + ["--preset", "local", "--batch_size=8"])
    assert overridden.batch_size == 8
    assert overridden.learning_rate == config_lib.LOCAL["learning_rate"]


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--num_conv=48,x,96", "--num_conv: must be comma-separated positive integers"),
        ("--num_conv=48,,96", "--num_conv: must be comma-separated positive integers"),
        ("--conv_len=5,0,3", "--conv_len: every item must be >= 1"),
        ("--learning_rate=-0.1", "--learning_rate: must be a number > 0"),
        ("--learning_rate=nan", "--learning_rate: must be a finite number"),
        ("--dropout=1.5", "--dropout: must be in [0, 1)"),
        ("--cell_type=rnn", "--cell_type: invalid choice: 'rnn'"),
        ("--batch_size=0", "--batch_size: must be a positive integer"),
        ("--test_time_views=0", "--test_time_views: must be a positive integer"),
        ("--steps=ten", "--steps: must be an integer"),
        ("--batch_norm=maybe", "--batch_norm: must be true or false"),
        ("--gradient_clipping_norm=-1", "--gradient_clipping_norm: must be a number >= 0"),
        (
            "--num_conv=16,32",
            "--num_conv (16,32) has 2 items but --conv_len (5,5,3, from --preset tutorial) has 3",
        ),
        (
            "--warmup_steps=100000",
            "--warmup_steps (100000) must be less than --steps (100000, from --preset tutorial)",
        ),
        ("--unknown_flag=1", "unknown flag --unknown_flag (see --help)"),
        ("--step=10", "unknown flag --step (did you mean --steps?)"),
        # Abbreviations are refused: `--learning` could one day name two flags.
        ("--learning=0.1", "unknown flag --learning (did you mean --learning_rate?)"),
    ],
)
def test_bad_flag_is_one_line_and_exit_2(flag, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        config_lib.parse_flags(REQUIRED + [flag])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith("python -m trainer: error: ") and message in error, error


def test_a_value_from_the_preset_is_named_as_such_with_what_to_do(capsys):
    """`--steps 40` alone under the local preset: the 50 warmup steps are the preset's."""
    with pytest.raises(SystemExit) as exit_info:
        config_lib.parse_flags(REQUIRED + ["--preset", "local", "--steps", "40"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "python -m trainer: error: --warmup_steps (50, from --preset local) must be less than "
        "--steps (40): pass --warmup_steps below 40 (0 for none), or a larger --steps\n"
    )
    config = config_lib.parse_flags(REQUIRED + ["--preset", "local", "--steps", "40"] + [
        "--warmup_steps", "10"
    ])  # fmt: skip
    assert (config.steps, config.warmup_steps) == (40, 10)


def test_model_dir_is_required_without_vertex(capsys):
    with pytest.raises(SystemExit) as exit_info:
        config_lib.parse_flags(REQUIRED[:3])
    assert exit_info.value.code == 2
    assert "--model_dir is required (or set AIP_MODEL_DIR)" in capsys.readouterr().err


def test_vertex_output_directories(monkeypatch):
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://bucket/run/model")
    monkeypatch.setenv("AIP_CHECKPOINT_DIR", "gs://bucket/run/checkpoints")
    monkeypatch.setenv("AIP_TENSORBOARD_LOG_DIR", "gs://bucket/run/logs")
    config = config_lib.parse_flags(REQUIRED[:3])
    assert config.model_dir == "gs://bucket/run/model"
    assert config.checkpoint_dir == "gs://bucket/run/checkpoints"
    assert config.log_dir == "gs://bucket/run/logs"


def test_gcs_paths_go_through_the_mount_only_when_it_holds_the_bucket(tmp_path):
    (tmp_path / "mounted-bucket").mkdir()
    resolve = config_lib.resolve_path
    assert resolve("gs://mounted-bucket/data/x-*", mount=str(tmp_path)) == (
        f"{tmp_path}/mounted-bucket/data/x-*"
    )
    assert resolve("gs://other-bucket/x", mount=str(tmp_path)) == "gs://other-bucket/x"
    assert resolve("/local/path", mount=str(tmp_path)) == "/local/path"


def test_config_round_trips_through_json():
    config = config_lib.parse_flags(REQUIRED + ["--preset=local"])
    assert config_lib.Config.from_json(config.to_json()) == config
    # config.json of a model exported before --test_time_views: one view.
    older = json.loads(config.to_json())
    del older["test_time_views"]
    assert config_lib.Config.from_json(json.dumps(older)).test_time_views == 1


def test_changes_name_each_setting_as_a_flag_value():
    before = config_lib.parse_flags(REQUIRED + ["--num_conv=48,64", "--conv_len=5,3"])
    after = config_lib.parse_flags(
        REQUIRED + ["--num_conv=48,96", "--conv_len=5,3", "--batch_norm", "--steps=200"]
    )
    assert config_lib.changes(before, after) == [
        "num_conv 48,64 -> 48,96",
        "batch_norm false -> true",
        "steps 100000 -> 200",
    ]
    assert config_lib.changes(after, after) == []


def run_trainer(flags, timeout=120) -> subprocess.CompletedProcess:
    """`python -m trainer FLAGS` as a real process, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "trainer", *flags],
        cwd=REPO,
        env=trainer_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bad_flag_in_a_real_process_exits_2_with_one_line():
    result = run_trainer([*REQUIRED, "--cell_type=transformer"], timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "python -m trainer: error: argument --cell_type: invalid choice: 'transformer'"
    )


def test_missing_data_in_a_real_process_exits_2_with_one_line(tmp_path):
    flags = [
        f"--training_data={tmp_path}/training.tfrecord-*",
        f"--eval_data={tmp_path}/eval.tfrecord-*",
        f"--classes_file={tmp_path}/classes",
        f"--model_dir={tmp_path}/model",
    ]
    (tmp_path / "classes").write_text("cat\ndog\n")
    result = run_trainer(flags)
    assert result.returncode == 2
    # TensorFlow's own start-up lines may come first; ours is the last and only one.
    ours = [line for line in result.stderr.splitlines() if "python -m trainer" in line]
    assert ours == [f"python -m trainer: error: no files match '{tmp_path}/training.tfrecord-*'"]
    assert result.stderr.rstrip().endswith(ours[0])
    assert not (tmp_path / "model").exists()


def write_one_drawing_records(directory, train_class=0, eval_class=0):
    """One hand-written drawing per split, of the given class_index, without log_aspect (as
    the tutorial's records), and a classes file that lists one class."""
    ink = np.tile(np.array([[0.1, 0.2, 0.0], [0.3, -0.1, 1.0]], np.float32), (3, 1))
    for split, class_index in (("train", train_class), ("eval", eval_class)):
        record = schema.encode_example(ink, class_index, b"k")
        (directory / schema.shard_name(split, 0, 1)).write_bytes(schema.frame_record(record))
    (directory / schema.classes_file_name("train")).write_text("cat\n")


def test_aspect_ratio_on_records_without_it_exits_2_before_training(tmp_path):
    """The tutorial's records (and an older pipeline's) carry no log_aspect feature."""
    write_one_drawing_records(tmp_path)
    result = run_trainer([*data_flags(tmp_path, tmp_path / "model"), "--preset=local"])
    assert result.returncode == 2
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("python -m trainer: error: --aspect_ratio reads the 'log_aspect'")
    assert "--aspect_ratio=false" in last
    assert not (tmp_path / "model").exists()


def test_checkpoints_of_another_model_exit_2_naming_the_changed_flags(tmp_path):
    """Training into a --model_dir that holds another model's checkpoints is refused, and
    the run's config.json keeps the flags those checkpoints were trained with."""
    write_one_drawing_records(tmp_path)
    model_dir = tmp_path / "model"
    flags = [*data_flags(tmp_path, model_dir), *TINY_FLAGS, "--eval_every=0"]
    first = run_trainer([*flags, "--steps=2"])
    assert first.returncode == 0, first.stderr[-3000:]

    result = run_trainer([*flags, "--steps=4", "--num_nodes=32"])
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.rstrip().splitlines()[-1]
    assert last == (
        f"python -m trainer: error: the checkpoints in {model_dir}/checkpoints are of another "
        "model than these flags give (num_nodes 16 -> 32, steps 2 -> 4): resume with the flags "
        f"in {model_dir}/config.json, or train into a new --model_dir"
    )
    assert config_lib.Config.from_json((model_dir / "config.json").read_text()).num_nodes == 16
    # Without config.json to compare with, the checkpoint's own variables tell.
    (model_dir / "config.json").rename(tmp_path / "config.json")
    result = run_trainer([*flags, "--steps=4", "--num_nodes=32"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.rstrip().splitlines()[-1] == (
        f"python -m trainer: error: the checkpoints in {model_dir}/checkpoints are of another "
        "model (variables of other shapes than these flags make): resume with the flags they "
        "were trained with, or train into a new --model_dir"
    )
    (tmp_path / "config.json").rename(model_dir / "config.json")

    # Flags that leave the model as it was only show in the log: the run goes on.
    longer = run_trainer([*flags, "--steps=4"])
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "resuming with flags other than before: steps 2 -> 4" in longer.stderr
    assert "resuming from step 2 " in longer.stderr
    assert config_lib.Config.from_json((model_dir / "config.json").read_text()).steps == 4


@pytest.mark.parametrize("split", ["train", "eval"])
def test_class_index_beyond_the_classes_file_exits_2(split, tmp_path):
    """One-hot labels and the confusion matrix would drop such a drawing without a word."""
    write_one_drawing_records(tmp_path, **{f"{split}_class": 1})
    result = run_trainer([*data_flags(tmp_path, tmp_path / "model"), *TINY_FLAGS, "--steps=2"])
    assert result.returncode == 2, result.stderr[-3000:]
    classes_file = tmp_path / schema.classes_file_name("train")
    assert result.stderr.rstrip().splitlines()[-1] == (
        "python -m trainer: error: the records hold a class_index of 1 or more, beyond the "
        f"classes of --classes_file {classes_file} (indices 0 to 0): give the classes file "
        "that was written with these records"
    )


@pytest.mark.parametrize("split, damage", [("train", "truncated"), ("eval", "corrupted")])
def test_damaged_records_exit_2(split, damage, tmp_path):
    """The first records are whole, so the damage shows only once the steps read on."""
    write_one_drawing_records(tmp_path)
    shard = tmp_path / schema.shard_name(split, 0, 1)
    record = bytearray(shard.read_bytes())
    if damage == "truncated":
        last = record[: len(record) // 2]
    else:
        last = record.copy()
        last[len(last) // 2] ^= 0xFF  # the record's checksum no longer holds
    shard.write_bytes(bytes(record * 3 + last))
    result = run_trainer([*data_flags(tmp_path, tmp_path / "model"), *TINY_FLAGS, "--steps=2"])
    assert result.returncode == 2, result.stderr[-3000:]
    pattern = data_flags(tmp_path, tmp_path)[0 if split == "train" else 1].split("=", 1)[1]
    # TensorFlow names the offset of the record, or for a bad checksum that of its data,
    # past the 12 bytes of its length and the length's checksum.
    offset = 3 * len(record) + (12 if damage == "corrupted" else 0)
    assert result.stderr.rstrip().splitlines()[-1] == (
        f"python -m trainer: error: a file matching '{pattern}' is damaged ({damage} record at "
        f"{offset}): write the records again with `python -m pipeline`"
    )


def test_a_model_dir_that_cannot_be_created_exits_2_before_training(tmp_path):
    write_one_drawing_records(tmp_path)
    (tmp_path / "a_file").write_text("")
    flags = [*data_flags(tmp_path, tmp_path / "a_file" / "model"), *TINY_FLAGS, "--steps=2"]
    result = run_trainer(flags)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.rstrip().splitlines()[-1] == (
        f"python -m trainer: error: cannot create --model_dir {tmp_path}/a_file/model: "
        f"{tmp_path}/a_file is not a directory"
    )
