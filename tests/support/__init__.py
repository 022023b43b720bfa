"""What several tests share: real-drawing fixtures, the GCS emulator, tiny models and runs,
servers, bad lines, offline subprocesses, Dockerfile readers."""
