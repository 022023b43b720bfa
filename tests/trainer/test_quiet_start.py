"""TensorFlow's start-up lines on a machine without a GPU are dropped; every other line,
and a CUDA failure where a GPU is expected, is kept."""

from __future__ import annotations

from trainer import quiet_start

STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796616384.057451   22336 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.
I0000 00:00:1796616384.060483   22336 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
E0000 00:00:1796616391.625620   22336 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
W0000 00:00:1796616391.700000   22336 some_op.cc:10] a real warning
Traceback (most recent call last):
"""  # noqa: E501


def test_the_start_up_lines_go_and_the_rest_stays():
    assert quiet_start.kept_lines(STARTUP, expect_gpu=False) == (
        "W0000 00:00:1796616391.700000   22336 some_op.cc:10] a real warning\n"
        "Traceback (most recent call last):\n"
    )


def test_a_cuda_failure_stays_where_a_gpu_is_expected():
    kept = quiet_start.kept_lines(STARTUP, expect_gpu=True).splitlines()
    assert len(kept) == 3 and "failed call to cuInit" in kept[0]


def test_a_gpu_is_expected_with_a_driver_unless_cuda_hides_every_device(tmp_path):
    driver = tmp_path / "version"
    assert not quiet_start.gpu_expected({}, str(driver))
    driver.write_text("NVRM version: 570")
    assert quiet_start.gpu_expected({}, str(driver))
    assert quiet_start.gpu_expected({"CUDA_VISIBLE_DEVICES": "0"}, str(driver))
    assert not quiet_start.gpu_expected({"CUDA_VISIBLE_DEVICES": ""}, str(driver))
    assert not quiet_start.gpu_expected({"CUDA_VISIBLE_DEVICES": "-1"}, str(driver))
