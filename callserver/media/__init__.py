"""Our own RTP media: pyVoIP does SIP only, everything after the SDP happens here.

g711 (codecs), rtp (packets), dtmf (RFC 4733 events), jitterbuffer, ports (the RTP port range),
session (one call's endpoint) and clock (the shared 20 ms send tick).
"""
