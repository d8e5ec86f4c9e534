"""PyTorch checkpoints <-> jaxcycle Flax params.

`converters.pth` reads and writes `.pth` files without PyTorch and without running any code
stored in them; `converters.tables` maps the reference project's state_dict names onto Flax
parameter paths; `converters.convert` ties both to the networks in `jaxcycle.nets`.
"""
