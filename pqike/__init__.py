"""pqike: a post-quantum IKEv2 research toolkit.

``run_handshake`` runs a whole handshake between two in-memory peers and returns the
trace, the events of each side and the negotiated parameters; ``IkeSa`` is the sans-IO
protocol core for driving peers yourself.
"""

from .handshake import HandshakeResult, run_handshake
from .ike.sa import IkeSa

__version__ = "0.1.0"

__all__ = ["HandshakeResult", "IkeSa", "__version__", "run_handshake"]
