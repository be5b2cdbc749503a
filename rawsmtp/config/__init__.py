"""Pool configuration: the option table, ``smtp://`` URLs, well-known services, TLS options."""

from ._options import Options, make_options
from ._typing import EnvelopeDict, PoolOptions
from ._url import create_transport, options_from_url

__all__ = [
    "EnvelopeDict",
    "Options",
    "PoolOptions",
    "create_transport",
    "make_options",
    "options_from_url",
]
