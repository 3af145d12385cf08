"""pqike: a post-quantum IKEv2 research toolkit.

``run_handshake`` runs a whole handshake between two in-memory peers and returns the
trace, the events of each side and the negotiated parameters; ``IkeSa`` is the sans-IO
protocol core for driving peers yourself: ``make_pair`` builds an initiator and a
responder from proposal strings, ``drive_pair`` runs them in simulated time, and
``make_config`` builds one side's configuration.
"""

from .handshake import HandshakeResult, drive_pair, make_config, make_pair, run_handshake
from .ike.sa import IkeSa

__version__ = "0.1.0"

__all__ = [
    "HandshakeResult",
    "IkeSa",
    "__version__",
    "drive_pair",
    "make_config",
    "make_pair",
    "run_handshake",
]
