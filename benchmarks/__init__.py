"""fer-bench: what a user reads before choosing a model for a device.

Latency (p50/p90/p99, throughput, peak memory, size) per model and thread count, accuracy and the loss
against a reference model, whole-pipeline FPS with its stage split, and one Markdown report with plots.
The latency and accuracy commands need only the edge extra (numpy, LiteRT), so they run on a Pi;
plots need Matplotlib and a .keras reference needs TensorFlow, both imported only when used.
"""
