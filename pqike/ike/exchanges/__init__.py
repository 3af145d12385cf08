"""One module per IKEv2 exchange, each with the handlers ``pqike.ike.machine`` names.

Handlers take ``(sa, inbound, now)``, return an ``Outcome`` and raise ``ProtocolError``
for anything wrong; they build payloads and call the ``IkeSa`` toolkit methods to send.
"""
