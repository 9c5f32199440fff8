"""Methods and baselines behind one contract (:class:`Method`) and one registry (:func:`load_method`)."""

from .base import Method, MethodInfo, list_methods, load_method, method_class, method_info, register_method
from .saving import load_fitted

__all__ = ["Method", "MethodInfo", "list_methods", "load_fitted", "load_method", "method_class", "method_info",
           "register_method"]
