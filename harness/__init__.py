"""The reference harness for LLM unlearning: run methods side by side, score them, write leaderboards."""

__version__ = "0.1.0"
