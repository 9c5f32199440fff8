"""Methods and baselines behind one contract (:class:`Method`) and one registry (:func:`load_method`)."""

from .base import Method, list_methods, load_method, method_class, register_method

__all__ = ["Method", "list_methods", "load_method", "method_class", "register_method"]
