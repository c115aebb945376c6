"""Benchmarks run by ``tps-diffusion bench NAME``; each writes a JSON of measured figures."""
