"""Channel rules, one module per op family. Importing this package registers them all."""

from . import attention, conv, elementwise, linear, normalization, pooling, reshape  # noqa: F401
