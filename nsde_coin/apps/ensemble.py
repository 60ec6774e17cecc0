"""Former home of the stacking utility, now :mod:`nsde_coin.stacked` (re-exported here for old imports)."""

from nsde_coin.stacked import forward_copies, init_copies, load_copy, module_fn, stack_parameters

__all__ = ["forward_copies", "init_copies", "load_copy", "module_fn", "stack_parameters"]
