"""The staff web UI: where clinic staff handle tickets and callbacks.

One module per concern, named so the file can be guessed from the concept:

- app.py: assembly (routes, session cookie, security headers, error pages).
- auth.py: login/logout/password pages and the middleware that keeps everything behind them.
- accounts.py: the Viewer, which clinics they see, login and password checks.
- access_log.py: the one writer of the patient-data access log.
- context.py: what every page needs (app keys, the viewer, path ids, CSRF, Swedish rendering).
- ticket_queries.py / ticket_views.py: reading and deciding tickets / their HTML pages.
- callback_queries.py / callback_views.py: reading and changing callbacks / their HTML pages.
- reasons.py: callback reason codes worded in Swedish or English.
- api.py: the same data as JSON, with the same scoping and logging.

Queries never import views and ticket modules never import callback modules: each room is
reached through context.py and accounts.py only. The UI reads callbacks' rules (states,
reasons, booking) and storage; it never imports callserver, which runs it.
"""
