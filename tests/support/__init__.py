"""Test infrastructure shared by every area: real receivers and validators, no mocks.

Import as ``from support.otlp_receiver import OtlpReceiver`` (``tests/`` is on ``sys.path`` through
``tests/conftest.py``).
"""
