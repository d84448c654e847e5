"""Unlearning methods. Each module registers one method; importing this package registers them all."""

from methods import fo_graddiff, simu, so_graddiff  # noqa: F401
