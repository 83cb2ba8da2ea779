"""Experiments: one module per paper experiment, used by the numbered notebooks."""
