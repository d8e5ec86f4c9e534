"""Experiment configs, one per file, each with `get_config()` returning an
`ml_collections.ConfigDict`: `cyclegan` (the reference project's defaults), `transfer` (the
paper's Algorithm 1 on top of it) and `study` (the 18-model study on top of that). Variants
build on their base by plain import; `jaxcycle train --config configs/FILE.py` loads one
by path, and `--config.a.b=value` overrides its fields."""
