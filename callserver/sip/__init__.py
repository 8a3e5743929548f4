"""SIP signalling: pyVoIP's parser and socket, wrapped so that nothing else sees pyVoIP.

- pyvoip_compat.py: the only module that imports pyVoIP; every `DEFECT n` patch to it
  (the defects are listed in docs/pyvoip-defects.md)
- sanity.py: the request grammar check that keeps malformed INVITEs from ringing
- sdp.py: offers we understand and the answers we give
- digest.py: digest authentication for REGISTER and outbound INVITE
- messages.py: the one request builder (and the response builder)
- engine.py: transactions, dialogs, registration: the SipEngine the server uses
"""
