"""Tests of serving: the server, its page in Chromium, its container, deployment."""
