"""The strongSwan 6 interop lab: network namespaces, charon daemons, captures, benchmarks.

- :mod:`pqike.interop.lab`: two network namespaces, a charon in each, tcpdump captures
  (``Lab``, ``StrongSwanConfig``, ``ensure_strongswan``, ``read_pcap``);
- :mod:`pqike.interop.peer`: a pqike peer in a lab namespace and strongSwan's side in
  pqike's terms (suites, keys, log errors);
- :mod:`pqike.interop.bench`: ``pqike bench interop``, handshake time on the wire;
- ``python -m pqike.interop up|down|run``: the lab from the command line.

The strongSwan build itself comes from ``interop/install-strongswan.sh`` in the source
checkout; ``interop/README.md`` describes the lab. Nothing here is imported by
``import pqike``: the lab needs root, and the modules are imported where used.
"""
