"""A real SMTP/LMTP server for tests, with scripted fault injection.

>>> from rawsmtp.testing import Fault, SMTPTestServer
>>> faults = [Fault(on="RCPT", match="bad@", reply="550 5.1.1 No such user")]
>>> with SMTPTestServer(faults=faults) as server:  # doctest: +SKIP
...     ...  # send to server.host, server.port; then look at server.messages

The pytest plugin (``rawsmtp.testing.pytest_plugin``, registered as an entry point) provides
the ``smtp_server`` and ``smtp_server_factory`` fixtures. :func:`probe` reports what a server
under test does with each SMTP rule (``rawsmtp probe URL`` on the command line).
"""

from ._config import CA_FILE, CERT_FILE, KEY_FILE
from ._faults import Fault, FaultContext, FaultPolicy
from ._probe import Check, ProbeReport, probe
from ._records import CommandRecord, ReceivedMessage
from ._server import SMTPTestServer

__all__ = [
    "CA_FILE",
    "CERT_FILE",
    "KEY_FILE",
    "Check",
    "CommandRecord",
    "Fault",
    "FaultContext",
    "FaultPolicy",
    "ProbeReport",
    "ReceivedMessage",
    "SMTPTestServer",
    "probe",
]
