"""custseg: single customer view, behavioural segments, CLV and insights on Spark."""

__version__ = "0.1.0"
