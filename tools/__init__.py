"""Developer and operator tools: host emulation, deploy, model building, benchmarks."""
