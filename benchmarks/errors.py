"""The one error the benchmarks report to their user."""


class BenchError(Exception):
    """A problem with the user's input (a model, the data, an option), reported as one `error:` line."""
