"""PyTorch's side of the weights: the `.pth` file format and the reference project's names.

`converters.pth` reads and writes `.pth` files without PyTorch and without running any code
stored in them; `converters.tables` maps the reference project's state_dict names onto Flax
parameter paths. Neither imports jaxcycle; `jaxcycle.weights` applies them to its networks.
"""
