"""Evaluators: generation, teacher-forced scoring, text metrics, MIA, and the benchmark metric suites."""
