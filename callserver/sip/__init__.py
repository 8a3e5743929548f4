"""SIP signalling: pyVoIP's parser and socket, wrapped so that nothing else sees pyVoIP.

- pyvoip_compat.py: the only module that imports pyVoIP; every `DEFECT n` patch
- sanity.py: the request grammar check that keeps malformed INVITEs from ringing
- sdp.py: offers we understand and the answers we give
- digest.py: digest authentication for REGISTER and outbound INVITE
- messages.py: the one request builder
- engine.py: transactions, dialogs, registration: the SipEngine the server uses
"""
