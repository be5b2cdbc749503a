"""SASL authentication for rawsmtp: credentials, shared OAuth2 tokens, mechanisms, selection.

Mechanisms are sans-I/O exchanges (decoded challenge in, raw response out) that the client state
machine drives; see :class:`rawsmtp.protocol.SASLMechanism`.

- ``_credentials``: the Credentials object and the ``auth=`` forms
- ``_base``: what all mechanisms share
- ``_password``: PLAIN, LOGIN, CRAM-MD5
- ``_scram``: SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS variants
- ``_saslprep``: SASLprep (RFC 4013) of SCRAM user names and passwords
- ``_channel_binding``: tls-server-end-point channel binding data from a server certificate
- ``_oauth``: XOAUTH2, OAUTHBEARER
- ``_oauth2_client``: OAuth2 credentials: the token endpoint's request and reply (no I/O)
- ``_select``: the mechanism preference order, the fallbacks and the cleartext rule
"""

from ._channel_binding import ChannelBinding, tls_server_end_point
from ._credentials import Credentials, TokenProvider, credentials_from
from ._oauth import OAuthBearer, XOAuth2
from ._oauth2_client import OAuth2
from ._password import CramMD5, Login, Plain
from ._saslprep import saslprep
from ._scram import MAX_ITERATIONS, Scram
from ._select import (
    KNOWN_MECHANISMS,
    check_auth_transport,
    is_loopback,
    select_mechanisms,
)

__all__ = [
    "KNOWN_MECHANISMS",
    "MAX_ITERATIONS",
    "ChannelBinding",
    "CramMD5",
    "Credentials",
    "Login",
    "OAuth2",
    "OAuthBearer",
    "Plain",
    "Scram",
    "TokenProvider",
    "XOAuth2",
    "check_auth_transport",
    "credentials_from",
    "is_loopback",
    "saslprep",
    "select_mechanisms",
    "tls_server_end_point",
]
