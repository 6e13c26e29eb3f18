"""Developer tools: synthetic deliveries, benchmarks and their baselines, the demo."""
