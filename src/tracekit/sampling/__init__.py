"""Sampling rules as code: the rule model, validation, plan/apply against X-Ray, a local X-Ray
sampling control plane, and an X-Ray compatible OpenTelemetry sampler.

Submodules are imported on demand; importing this package costs nothing.
"""
